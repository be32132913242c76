"""TensorRT backend: builds (once, cached) and runs an engine for the exported ONNX graph.

Written against the TensorRT 10 / 11 Python API (name-based I/O, ``execute_async_v3``).  The
device buffers are torch CUDA tensors, so no pycuda is needed.  FP16 is the default; FP32 and
INT8 (TensorRT 10 only: an entropy calibrator over a folder of images) are options.
TensorRT 11 removed the weak-typing precision flags: there, build fp32 or pass an ONNX graph
already converted to mixed precision (NVIDIA ModelOpt AutoCast) with precision fp32.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional, Union

import cv2
import numpy as np
import torch

from ..config import ModelConfig
from ..export_onnx import INPUT_NAME, OUTPUT_NAME, read_onnx_config
from .base import preprocess
from .engine_cache import (CALIBRATION_SUFFIXES, DEFAULT_CACHE_DIR, Platform, calibration_files,
                           calibration_set_sha256, load_or_build)
from .exported import ExportedGraphBackend, resolve_onnx

try:
    import tensorrt as trt
except ImportError as exc:  # the registry turns this into "backend needs tensorrt"
    raise ImportError(f"the tensorrt backend needs TensorRT's Python package: install tensorrt "
                      f"(JetPack on Jetson, or `pip install tensorrt` from NVIDIA's index "
                      f"https://pypi.nvidia.com) ({exc})") from None

log = logging.getLogger("clip_depth_ros")
_TRT_LOGGER = trt.Logger(trt.Logger.WARNING)
# Implicit INT8 calibration exists in TensorRT 10 (deprecated) and is gone in 11.
_CALIBRATOR_BASE = getattr(trt, "IInt8EntropyCalibrator2", object)


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the graph or build an engine."""


def _torch_dtype(dtype: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16}
    if dtype not in table:
        raise EngineBuildError(f"unsupported engine I/O type {dtype}; expected float32/float16")
    return table[dtype]


class EntropyCalibrator(_CALIBRATOR_BASE):
    """INT8 calibration over a folder of images, through the shared preprocessing."""

    def __init__(self, images_dir: Union[str, os.PathLike], config: ModelConfig,
                 cache_path: Union[str, os.PathLike], device: torch.device):
        _CALIBRATOR_BASE.__init__(self)
        self.files = calibration_files(images_dir)
        if not self.files:
            raise EngineBuildError(f"no calibration images ({', '.join(CALIBRATION_SUFFIXES)}) in "
                                   f"{images_dir}")
        self.config, self.cache_path, self.index = config, Path(cache_path), 0
        self.buffer = torch.empty((1, 3, *config.input_hw), dtype=torch.float32, device=device)

    def get_batch_size(self) -> int:
        """One image per batch (the engine's fixed batch)."""
        return 1

    def get_batch(self, names: list) -> Optional[list]:
        """Device pointer of the next preprocessed image, or None when done."""
        while self.index < len(self.files):
            path = self.files[self.index]
            self.index += 1
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                log.warning("skipping unreadable calibration image %s", path)
                continue
            batch = preprocess(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.config)
            self.buffer.copy_(torch.from_numpy(batch))
            torch.cuda.synchronize(self.buffer.device)
            return [int(self.buffer.data_ptr())]
        return None

    def read_calibration_cache(self) -> Optional[bytes]:
        """A previous calibration's scales, if any."""
        return self.cache_path.read_bytes() if self.cache_path.is_file() else None

    def write_calibration_cache(self, cache: Any) -> None:
        """Keep the scales for the next build."""
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        self.cache_path.write_bytes(bytes(cache))


def _set_precision(builder_config: Any, precision: str, calibrator: Any) -> None:
    if precision == "fp32":
        return
    flag = "FP16" if precision == "fp16" else "INT8"
    if not hasattr(trt.BuilderFlag, flag):
        raise EngineBuildError(
            f"TensorRT {trt.__version__} has no weak-typing {precision} flag (removed in 11): "
            "convert the ONNX graph to mixed precision with NVIDIA ModelOpt AutoCast (fp16) or "
            "Q/DQ quantisation (int8) and build it with precision fp32, or use TensorRT 10")
    if hasattr(trt.BuilderFlag, "FP16"):
        builder_config.set_flag(trt.BuilderFlag.FP16)  # also the INT8 fallback for other layers
    if precision == "int8":
        builder_config.set_flag(trt.BuilderFlag.INT8)
        builder_config.int8_calibrator = calibrator


def build_engine(onnx_path: Union[str, os.PathLike], precision: str = "fp16",
                 calibration_images_dir: Optional[str] = None,
                 timing_cache_path: Optional[Union[str, os.PathLike]] = None,
                 workspace_gb: float = 4.0, device: Union[str, torch.device] = "cuda:0") -> bytes:
    """Parse the ONNX graph and build a serialised engine (fp32 | fp16 | int8)."""
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"precision must be fp32, fp16 or int8, got '{precision}'")
    if precision == "int8" and not calibration_images_dir:
        raise ValueError("int8 needs calibration_images_dir (a folder of representative images)")
    if precision == "int8" and _CALIBRATOR_BASE is object:
        raise EngineBuildError(f"TensorRT {trt.__version__} has no INT8 calibrators (removed in "
                               "11): quantise the ONNX graph with Q/DQ nodes (NVIDIA ModelOpt) "
                               "and build it with precision fp32, or use TensorRT 10")
    onnx_path = Path(onnx_path)
    builder = trt.Builder(_TRT_LOGGER)
    # Explicit batch is the only mode from TensorRT 10 on (its flag is deprecated / gone).
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, _TRT_LOGGER)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}: {errors}")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    calibrator = None
    if precision == "int8":
        # the scales cache belongs to this graph and this calibration set
        calib_tag = calibration_set_sha256(calibration_images_dir)[:16]
        calibrator = EntropyCalibrator(calibration_images_dir, read_onnx_config(onnx_path),
                                       onnx_path.with_suffix(f".int8-{calib_tag}.calib"),
                                       torch.device(device))
    _set_precision(builder_config, precision, calibrator)
    timing = Path(timing_cache_path).expanduser() if timing_cache_path else None
    cache = builder_config.create_timing_cache(timing.read_bytes() if timing and timing.is_file()
                                               else b"")
    builder_config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build an engine for {onnx_path} "
                               f"({precision}); see the TensorRT log above")
    if timing is not None:
        timing.parent.mkdir(parents=True, exist_ok=True)
        timing.write_bytes(bytes(builder_config.get_timing_cache().serialize()))
    return bytes(serialized)


class TensorRTToolchain:
    """The real :class:`~.engine_cache.EngineToolchain`: TensorRT on one CUDA device."""

    def __init__(self, device: Union[str, torch.device] = "cuda:0",
                 calibration_images_dir: Optional[str] = None,
                 cache_dir: Union[str, os.PathLike] = DEFAULT_CACHE_DIR, workspace_gb: float = 4.0):
        self.device = torch.device(device)
        self.calibration_images_dir = calibration_images_dir
        self.cache_dir = Path(cache_dir).expanduser()
        self.workspace_gb = workspace_gb
        self.runtime = trt.Runtime(_TRT_LOGGER)

    def platform(self) -> Platform:
        """TensorRT version, GPU name and compute capability."""
        major, minor = torch.cuda.get_device_capability(self.device)
        return Platform(trt.__version__, torch.cuda.get_device_name(self.device),
                        f"{major}.{minor}")

    def build(self, onnx_path: Path, precision: str) -> bytes:
        """A serialised engine; the timing cache is per TensorRT version and GPU."""
        plat = self.platform()
        tag = f"{plat.trt_version}-{plat.gpu_name}-{plat.compute_capability}"
        safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in tag)
        timing = self.cache_dir / f"timing-{safe}.cache"
        with torch.cuda.device(self.device):
            return build_engine(onnx_path, precision, self.calibration_images_dir, timing,
                                self.workspace_gb, self.device)

    def deserialize(self, data: bytes) -> Any:
        """The engine, or an exception when TensorRT refuses the bytes."""
        with torch.cuda.device(self.device):
            engine = self.runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise EngineBuildError("TensorRT could not deserialise the engine (built by another "
                                   "TensorRT version or for another GPU?)")
        return engine


class TensorRTBackend(ExportedGraphBackend):
    """Runs a cached TensorRT engine on a CUDA stream with torch tensors as device buffers."""

    name = "tensorrt"

    def __init__(self, onnx_path: Optional[str] = None, model: Union[str, ModelConfig, None] = None,
                 weights: Optional[str] = None, backbone_weights: Optional[str] = None,
                 device: str = "cuda:0", precision: str = "fp16",
                 cache_dir: str = DEFAULT_CACHE_DIR, calibration_images_dir: Optional[str] = None,
                 workspace_gb: float = 4.0):
        if precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"tensorrt precision must be fp32, fp16 or int8, got '{precision}'")
        self.torch_device = torch.device(device)
        if self.torch_device.type != "cuda" or not torch.cuda.is_available():
            raise RuntimeError(f"the tensorrt backend needs a CUDA GPU (device '{device}', "
                               f"CUDA available: {torch.cuda.is_available()})")
        if self.torch_device.index is None:
            self.torch_device = torch.device("cuda", torch.cuda.current_device())
        self.device, self.precision = str(self.torch_device), precision
        self.onnx_path = resolve_onnx(onnx_path, model, weights, backbone_weights, cache_dir)
        self.config = read_onnx_config(self.onnx_path)
        toolchain = TensorRTToolchain(self.torch_device, calibration_images_dir, cache_dir,
                                      workspace_gb)
        calibration = (calibration_set_sha256(calibration_images_dir)
                       if precision == "int8" and calibration_images_dir else None)
        cached = load_or_build(self.onnx_path, precision, cache_dir,
                               input_shape=(1, 3, *self.config.input_hw), toolchain=toolchain,
                               calibration_sha256=calibration)
        self.engine_path, self.gpu_name = cached.path, toolchain.platform().gpu_name
        self._engine = cached.engine
        with torch.cuda.device(self.torch_device):
            self._context = self._engine.create_execution_context()
            self._stream = torch.cuda.Stream(self.torch_device)
            self._buffers = self._allocate()
        log.info("TensorRT %s engine %s on %s (%s)", trt.__version__, self.engine_path,
                 self.gpu_name, precision)

    def _allocate(self) -> dict[str, torch.Tensor]:
        """One torch CUDA tensor per I/O tensor, bound by name to the context."""
        buffers = {}
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            shape = tuple(self._engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise EngineBuildError(f"engine tensor '{name}' has a dynamic shape {shape}; "
                                       "export the graph with a fixed input shape")
            buffers[name] = torch.empty(shape, dtype=_torch_dtype(
                self._engine.get_tensor_dtype(name)), device=self.torch_device)
            self._context.set_tensor_address(name, buffers[name].data_ptr())
        if set(buffers) != {INPUT_NAME, OUTPUT_NAME}:
            raise EngineBuildError(f"engine I/O {sorted(buffers)} is not "
                                   f"['{OUTPUT_NAME}', '{INPUT_NAME}']")
        return buffers

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Canonical depth (1, 1, h, w) float32 for a normalised (1, 3, h, w) batch."""
        if self._context is None:
            raise RuntimeError("the tensorrt backend was closed")
        host = torch.from_numpy(np.ascontiguousarray(batch))
        with torch.cuda.device(self.torch_device), torch.cuda.stream(self._stream):
            self._buffers[INPUT_NAME].copy_(host, non_blocking=True)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            depth = self._buffers[OUTPUT_NAME].to("cpu", torch.float32)
        self._stream.synchronize()
        return depth.numpy()

    def describe(self) -> dict[str, str]:
        """The common fields plus the TensorRT version, GPU and engine file."""
        return {**super().describe(), "runtime": f"tensorrt {trt.__version__}",
                "gpu": self.gpu_name, "engine": str(self.engine_path)}

    def close(self) -> None:
        """Free the context, the engine and the device buffers."""
        self._context = self._engine = None
        self._buffers = {}
        torch.cuda.empty_cache()
