"""Inference backends behind one small protocol, looked up by name.

Backends are imported lazily so that choosing ``torch`` never imports onnxruntime or
TensorRT, and a missing optional package gives an error that says what to install.
"""
from __future__ import annotations

import importlib
from typing import Any

from .base import DepthBackend

_BACKENDS = {
    "torch": ("clip_depth_ros.backends.torch_backend", "TorchBackend", "torch"),
    "onnxruntime": ("clip_depth_ros.backends.onnxruntime_backend", "OnnxRuntimeBackend",
                    "onnxruntime"),
    "tensorrt": ("clip_depth_ros.backends.tensorrt_backend", "TensorRTBackend", "tensorrt"),
}


def register_backend(name: str, module: str, cls: str, requires: str) -> None:
    """Register a backend class by import path (imported only when chosen)."""
    _BACKENDS[name] = (module, cls, requires)


def available_backends() -> list[str]:
    """Names of the registered backends."""
    return sorted(_BACKENDS)


def create_backend(name: str, **kwargs: Any) -> DepthBackend:
    """Instantiate backend ``name`` with keyword arguments (model, weights, device, ...)."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend '{name}'; available: {', '.join(available_backends())}")
    module_name, cls_name, requires = _BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"backend '{name}' needs the '{requires}' package ({exc}); "
                          f"install it, or choose another backend") from None
    return getattr(module, cls_name)(**kwargs)


__all__ = ["DepthBackend", "available_backends", "create_backend", "register_backend"]
