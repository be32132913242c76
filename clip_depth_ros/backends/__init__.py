"""Inference backends behind one small protocol, looked up by name.

Backends are imported lazily so that choosing ``torch`` never imports onnxruntime or
TensorRT, and a missing optional package gives an error that says what to install.  Each
entry declares its precisions here, so callers (the node's parameter choices, the CLI) know
them without importing the backend; the first one is the backend's default.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, MissingDependencyError
from .base import DepthBackend


@dataclass(frozen=True)
class BackendEntry:
    """Where a backend lives, what it needs and which precisions it runs."""

    module: str
    cls: str
    requires: str
    precisions: tuple[str, ...]


_BACKENDS: dict[str, BackendEntry] = {
    "torch": BackendEntry("clip_depth_ros.backends.torch_backend", "TorchBackend", "torch",
                          ("fp32", "bf16", "fp16")),
    "onnxruntime": BackendEntry("clip_depth_ros.backends.onnxruntime_backend",
                                "OnnxRuntimeBackend", "onnxruntime", ("fp32", "fp16")),
    "tensorrt": BackendEntry("clip_depth_ros.backends.tensorrt_backend", "TensorRTBackend",
                             "tensorrt", ("fp16", "fp32", "int8")),
}


def register_backend(name: str, module: str, cls: str, requires: str,
                     precisions: tuple[str, ...] = ("fp32",)) -> None:
    """Register a backend class by import path (imported only when chosen)."""
    _BACKENDS[name] = BackendEntry(module, cls, requires, tuple(precisions))


def available_backends() -> list[str]:
    """Names of the registered backends."""
    return sorted(_BACKENDS)


def backend_precisions(name: str) -> tuple[str, ...]:
    """The precisions backend ``name`` declares (first = its default)."""
    return _entry(name).precisions


def all_precisions() -> tuple[str, ...]:
    """Every precision some registered backend runs, in a stable order."""
    seen: dict[str, None] = {}
    for entry in _BACKENDS.values():
        seen.update(dict.fromkeys(entry.precisions))
    return tuple(seen)


def _entry(name: str) -> BackendEntry:
    if name not in _BACKENDS:
        raise ConfigError(f"unknown backend '{name}'; available: "
                          f"{', '.join(available_backends())}")
    return _BACKENDS[name]


def resolve_precision(name: str, precision: str) -> str:
    """'auto' -> the backend's default precision; anything else checked against its list."""
    precisions = backend_precisions(name)
    if precision in ("", "auto"):
        return precisions[0]
    if precision not in precisions:
        raise ConfigError(f"backend {name} runs precision {', '.join(precisions)}, not "
                          f"'{precision}'")
    return precision


def create_backend(name: str, **kwargs: Any) -> DepthBackend:
    """Instantiate backend ``name`` with keyword arguments (model, weights, device, ...).

    precision 'auto' is the backend's choice for the device (a class with
    ``auto_precision(device)``: torch picks bf16 on a CPU that computes it natively), else its
    default."""
    entry = _entry(name)
    if kwargs.get("precision") not in (None, "", "auto"):
        kwargs["precision"] = resolve_precision(name, kwargs["precision"])
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise MissingDependencyError(f"backend '{name}' needs the '{entry.requires}' package "
                                     f"({exc}); install it, or choose another backend") from None
    cls = getattr(module, entry.cls)
    if kwargs.get("precision") in ("", "auto"):
        chooser = getattr(cls, "auto_precision", None)
        kwargs["precision"] = resolve_precision(
            name, chooser(kwargs.get("device", "auto")) if chooser else "auto")
    return cls(**kwargs)


__all__ = ["DepthBackend", "all_precisions", "available_backends", "backend_precisions",
           "create_backend", "register_backend", "resolve_precision"]
