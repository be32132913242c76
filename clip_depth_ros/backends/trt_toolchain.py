"""The real :class:`~.engine_cache.EngineToolchain`: TensorRT on one CUDA device.

The ``tensorrt`` module is passed in (the backend passes the installed one, tests a fake),
so this module imports without TensorRT.  INT8 calibration (TensorRT 10 only) reads a folder
of images through the shared preprocessing.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Optional, Union

import cv2
import torch

from ..atomic_io import file_sha256
from ..config import ModelConfig
from ..export_onnx import read_onnx_config
from ..preprocessing import preprocess
from .engine_cache import (CALIBRATION_SUFFIXES, DEFAULT_CACHE_DIR, Platform, calibration_files,
                           calibration_set_sha256)
from .trt_compat import (TRT11_INT8, EngineBuildError, build_serialized_engine, network_graph,
                         network_typing, trt_line)

log = logging.getLogger("clip_depth_ros")


class CalibrationImages:
    """What TensorRT 10's entropy calibrator asks for: preprocessed images on the device, one
    at a time, and a scales cache.  Mixed into the calibrator class of the installed trt."""

    def __init__(self, images_dir: Union[str, os.PathLike], config: ModelConfig,
                 cache_path: Union[str, os.PathLike], device: torch.device):
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
            if self.buffer.is_cuda:  # TensorRT reads the pointer on its own stream
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


def entropy_calibrator(trt: Any, images_dir: Union[str, os.PathLike], config: ModelConfig,
                       cache_path: Union[str, os.PathLike], device: torch.device) -> Any:
    """An ``IInt8EntropyCalibrator2`` of the installed TensorRT (10; 11 has none)."""
    base = getattr(trt, "IInt8EntropyCalibrator2", None)
    if base is None:
        raise EngineBuildError(TRT11_INT8)

    class EntropyCalibrator(CalibrationImages, base):
        def __init__(self) -> None:
            base.__init__(self)  # the binding's trampoline must be initialised first
            CalibrationImages.__init__(self, images_dir, config, cache_path, device)

    return EntropyCalibrator()


class TensorRTToolchain:
    """Builds and loads engines with the given ``tensorrt`` module on one device."""

    def __init__(self, trt: Any, device: Union[str, torch.device] = "cuda:0",
                 calibration_images_dir: Optional[str] = None,
                 cache_dir: Union[str, os.PathLike] = DEFAULT_CACHE_DIR, workspace_gb: float = 4.0,
                 logger: Any = None):
        self.trt, self.line = trt, trt_line(trt.__version__)
        self.device = torch.device(device)
        self.calibration_images_dir = calibration_images_dir
        self.cache_dir = Path(cache_dir).expanduser()
        self.workspace_gb = workspace_gb
        self.logger = logger if logger is not None else trt.Logger(trt.Logger.WARNING)
        self._runtime = None

    def gpu(self) -> tuple[str, str]:
        """(GPU name, compute capability "8.9") of the device."""
        major, minor = torch.cuda.get_device_capability(self.device)
        return torch.cuda.get_device_name(self.device), f"{major}.{minor}"

    def platform(self) -> Platform:
        """TensorRT version and typing, GPU name and compute capability."""
        name, capability = self.gpu()
        return Platform(self.trt.__version__, name, capability, network_typing(self.line))

    def network_graph(self, onnx_path: Path, precision: str) -> Path:
        """The graph to parse: the export itself, or its fp16 form on TensorRT 11."""
        return network_graph(onnx_path, precision, self.line, self.cache_dir)

    def _on_device(self) -> contextlib.AbstractContextManager:
        return torch.cuda.device(self.device) if self.device.type == "cuda" \
            else contextlib.nullcontext()

    def build(self, network_onnx: Path, precision: str) -> bytes:
        """A serialised engine; the timing cache is per TensorRT version and GPU."""
        name, capability = self.gpu()
        tag = f"{self.trt.__version__}-{name}-{capability}"
        safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in tag)
        calibrator = None
        if precision == "int8" and self.line == 10:
            if not self.calibration_images_dir:
                raise EngineBuildError("int8 needs calibration_images_dir (a folder of "
                                       "representative images)")
            # the scales belong to this graph and this calibration set
            graph_tag = file_sha256(network_onnx)[:16]
            calib_tag = calibration_set_sha256(self.calibration_images_dir)[:16]
            calibrator = entropy_calibrator(
                self.trt, self.calibration_images_dir, read_onnx_config(network_onnx),
                self.cache_dir / f"{network_onnx.stem}-{graph_tag}.int8-{calib_tag}.calib",
                self.device)
        with self._on_device():
            return build_serialized_engine(self.trt, self.logger, network_onnx, precision,
                                           calibrator, self.cache_dir / f"timing-{safe}.cache",
                                           self.workspace_gb)

    def deserialize(self, data: bytes) -> Any:
        """The engine, or an exception when TensorRT refuses the bytes."""
        with self._on_device():
            if self._runtime is None:
                self._runtime = self.trt.Runtime(self.logger)
            engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise EngineBuildError("TensorRT could not deserialise the engine (built by another "
                                   "TensorRT version or for another GPU?)")
        return engine
