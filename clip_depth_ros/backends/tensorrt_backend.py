"""TensorRT backend: builds (once, cached) and runs an engine for the exported ONNX graph.

Written against the TensorRT 10 and 11 Python APIs (name-based I/O, ``execute_async_v3``);
the builder for each line lives in :mod:`.trt_compat` (10: fp32 graph + FP16/INT8 flags; 11:
strongly typed, fp16 from a reduced-precision graph, int8 refused).  The device buffers are
torch CUDA tensors, so no pycuda is needed.  Importing this module needs TensorRT: the backend
registry turns the ImportError into "backend needs tensorrt"; the build logic is importable
(and tested) without it.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Optional, Union

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import BackendError, ConfigError
from ..export_onnx import graph_outputs, read_onnx_config
from .base import check_precision
from .engine_cache import DEFAULT_CACHE_DIR, calibration_set_sha256, load_or_build
from .exported import ExportedGraphBackend, graph_feed, resolve_onnx
from .trt_compat import (EngineBuildError, check_engine_io, check_line_precision,
                         network_typing)
from .trt_toolchain import TensorRTToolchain

try:
    import tensorrt as trt
except ImportError as exc:  # the registry turns this into "backend needs tensorrt"
    raise ImportError(f"the tensorrt backend needs TensorRT's Python package: install tensorrt "
                      f"(JetPack on Jetson, or `pip install tensorrt` from NVIDIA's index "
                      f"https://pypi.nvidia.com) ({exc})") from None

log = logging.getLogger("clip_depth_ros")
_TRT_LOGGER = trt.Logger(trt.Logger.WARNING)


def torch_dtype(dtype: Any) -> torch.dtype:
    """The torch type of an engine I/O tensor (float32 / float16)."""
    table = {trt.float32: torch.float32, trt.float16: torch.float16}
    if dtype not in table:
        raise EngineBuildError(f"unsupported engine I/O type {dtype}; expected float32/float16")
    return table[dtype]


class TensorRTBackend(ExportedGraphBackend):
    """Runs a cached TensorRT engine on a CUDA stream with torch tensors as device buffers."""

    name = "tensorrt"
    precisions = ("fp16", "fp32", "int8")

    def __init__(self, onnx_path: Optional[str] = None, model: Union[str, ModelConfig, None] = None,
                 weights: Optional[str] = None, backbone_weights: Optional[str] = None,
                 device: str = "cuda:0", precision: str = "fp16",
                 cache_dir: str = DEFAULT_CACHE_DIR, calibration_images_dir: Optional[str] = None,
                 workspace_gb: float = 4.0):
        check_precision(self.name, precision, self.precisions)
        if precision == "int8" and not calibration_images_dir:
            raise ConfigError("tensorrt int8 needs calibration_images_dir (a folder of "
                              "representative images)")
        self.torch_device = self._resolve_device(device)
        self.device, self.precision = str(self.torch_device), precision
        self._toolchain = self._make_toolchain(calibration_images_dir, cache_dir, workspace_gb)
        check_line_precision(self._toolchain.line, precision)  # before any export or build
        self.onnx_path = resolve_onnx(onnx_path, model, weights, backbone_weights, cache_dir)
        self.config = read_onnx_config(self.onnx_path)
        calibration = (calibration_set_sha256(calibration_images_dir)
                       if precision == "int8" else None)
        cached = load_or_build(self.onnx_path, precision, cache_dir, toolchain=self._toolchain,
                               input_shape=(1, 3, *self.config.input_hw),
                               calibration_sha256=calibration)
        self.engine_path, self.gpu_name = cached.path, self._toolchain.gpu()[0]
        self.network_typing = network_typing(self._toolchain.line)
        self._attach(cached.engine)
        log.info("TensorRT %s engine %s on %s (%s, %s-typed)", trt.__version__, self.engine_path,
                 self.gpu_name, precision, self.network_typing)

    @staticmethod
    def _resolve_device(device: str) -> torch.device:
        """The CUDA device to run on (an index always), or BackendError without one."""
        resolved = torch.device("cuda" if device in ("", "auto") else device)
        if resolved.type != "cuda" or not torch.cuda.is_available():
            raise BackendError(f"the tensorrt backend needs a CUDA GPU (device '{device}', "
                               f"CUDA available: {torch.cuda.is_available()})")
        if resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
        return resolved

    def _make_toolchain(self, calibration_images_dir: Optional[str], cache_dir: str,
                        workspace_gb: float) -> TensorRTToolchain:
        """TensorRT (the installed line) on this backend's device."""
        return TensorRTToolchain(trt, self.torch_device, calibration_images_dir, cache_dir,
                                 workspace_gb, _TRT_LOGGER)

    def _attach(self, engine: Any) -> None:
        """Check the engine's I/O, then make its context, stream and bound buffers."""
        check_engine_io(trt, engine, self.config, self.engine_path)
        self._engine = engine
        with self._device_scope():
            self._context = engine.create_execution_context()
            self._stream = self._new_stream()
            self._buffers = self._allocate()

    def _device_scope(self) -> contextlib.AbstractContextManager:
        """The CUDA device the engine lives on, for every call into it."""
        return torch.cuda.device(self.torch_device)

    def _new_stream(self) -> Any:
        """The CUDA stream this backend's copies and engine run on."""
        return torch.cuda.Stream(self.torch_device)

    @contextlib.contextmanager
    def _stream_scope(self) -> Iterator[None]:
        """The device and stream one inference runs on (copies and the engine alike)."""
        with self._device_scope(), torch.cuda.stream(self._stream):
            yield

    def _allocate(self) -> dict[str, torch.Tensor]:
        """One torch CUDA tensor per engine I/O tensor, bound by name to the context."""
        buffers = {}
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            shape = tuple(self._engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise EngineBuildError(f"engine tensor '{name}' has a dynamic shape {shape}; "
                                       "export the graph with a fixed input shape")
            buffers[name] = torch.empty(shape, dtype=torch_dtype(
                self._engine.get_tensor_dtype(name)), device=self.torch_device)
            self._context.set_tensor_address(name, buffers[name].data_ptr())
        return buffers

    def predict(self, batch: np.ndarray, f_px: np.ndarray,
                image_width: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """(metric depth, the model's confidence or None), (h, w) float32 at the model input
        size (the engine runs ``infer``)."""
        if self._context is None:
            raise BackendError("the tensorrt backend was closed")
        feed = graph_feed(self.config, batch, f_px, image_width)
        with self._stream_scope():
            for name, array in feed.items():  # every engine input, bound by name
                host = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
                self._buffers[name].copy_(host.reshape(self._buffers[name].shape),
                                          non_blocking=True)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise BackendError("TensorRT execute_async_v3 failed")
            # copies: the output buffers are overwritten by the next frame
            maps = [self._buffers[name].to("cpu", torch.float32, copy=True)
                    for name in graph_outputs(self.config)]
        self._stream.synchronize()
        return maps[0].numpy()[0, 0], (maps[1].numpy()[0, 0] if len(maps) > 1 else None)

    def describe(self) -> dict[str, str]:
        """The common fields plus the TensorRT version and typing, GPU and engine file."""
        return {**super().describe(), "runtime": f"tensorrt {trt.__version__}",
                "typing": self.network_typing, "gpu": self.gpu_name,
                "engine": str(self.engine_path)}

    def close(self) -> None:
        """Free the context, the engine and the device buffers."""
        self._context = self._engine = None
        self._buffers = {}
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
