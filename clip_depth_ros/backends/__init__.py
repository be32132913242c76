"""Inference backends behind one small protocol, looked up by name.

Backends are imported lazily so that choosing ``torch`` never imports onnxruntime or
TensorRT, and a missing optional package gives an error that says what to install.  Each
entry declares its precisions here, so callers (the node's parameter choices, the CLI) know
them without importing the backend; the first one is the backend's default.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from ..errors import ClipDepthError, ConfigError, MissingDependencyError
from .base import DepthBackend

T = TypeVar("T")


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
    "openvino": BackendEntry("clip_depth_ros.backends.openvino_backend", "OpenVinoBackend",
                             "openvino", ("fp32", "bf16")),
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


def _cuda_requested(device: str) -> bool:
    """Whether ``device`` means a GPU here (auto: torch sees one)."""
    if device.startswith("cuda"):
        return True
    if device not in ("", "auto"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def auto_backends(device: str = "auto") -> list[str]:
    """What backend 'auto' tries, in order, for ``device``: torch on a GPU; on a CPU, OpenVINO
    first where it is installed (with onnx and onnxruntime for the export) and the CPU
    computes bf16 natively (the bundled model's network 22-24% faster there than in torch
    bf16, the same depth: BENCHMARKS.md), then torch."""
    if _cuda_requested(device):
        return ["torch"]
    candidates = []
    # the export at configure needs onnx, and its parity check onnxruntime
    if all(importlib.util.find_spec(name) is not None
           for name in ("openvino", "onnx", "onnxruntime")):
        try:
            from .openvino_backend import cpu_runs_bf16
            if cpu_runs_bf16():
                candidates.append("openvino")
        except ImportError:  # a broken install: torch serves
            pass
    return candidates + ["torch"]


def first_that_serves(candidates: list[str], start: Callable[[str], T],
                      skipped: Callable[[str, ClipDepthError], None]) -> T:
    """``start(name)`` for each candidate in turn; the first that returns wins.  A candidate
    that refuses (any :class:`ClipDepthError`: a missing package, a graph or precision it
    cannot run, a failed deployment check) is reported to ``skipped(message, error)``; the
    last one's error is raised.  A bug (any other exception) is raised at once."""
    for name, after in zip(candidates, list(candidates[1:]) + [None]):
        try:
            return start(name)
        except ClipDepthError as exc:
            if after is None:
                raise
            skipped(f"backend {name} cannot serve this model here ({type(exc).__name__}: "
                    f"{exc}); trying {after}", exc)
    raise ConfigError("no backend to try")


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


__all__ = ["DepthBackend", "all_precisions", "auto_backends", "available_backends",
           "backend_precisions", "create_backend", "first_that_serves", "register_backend",
           "resolve_precision"]
