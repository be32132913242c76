"""The backend contract: one uint8 RGB frame (+ intrinsics, + a request) in, FrameOutputs out.

Every backend (torch, onnxruntime, tensorrt) answers :meth:`DepthBackend.infer_frame` with
depth in metres at the INPUT image's resolution (the model's camera contract applied inside
the network: ``DepthModel.infer`` and every exported graph take the focal length), and the
requested point-cloud body and colorized depth.  :class:`HostFrameBackend` is the numpy way
shared by torch-eager, onnxruntime and TensorRT: they only implement :meth:`predict`; the
torch device path overrides :meth:`infer_frame` as a whole.
"""
from __future__ import annotations

import time
from typing import Optional, Protocol, runtime_checkable

import numpy as np

from ..config import ModelConfig
from ..errors import ConfigError
from ..frame import FrameOutputs, FrameRequest, host_outputs
from ..geometry import Intrinsics
from ..preprocessing import (camera_inputs, check_image, preprocess,  # noqa: F401
                             resize_back)

DEFAULT_REQUEST = FrameRequest()


@runtime_checkable
class DepthBackend(Protocol):
    """What the pipeline and the node need from a backend."""

    name: str
    config: ModelConfig
    precisions: tuple[str, ...]  # what this backend can run, first = its default

    def infer_frame(self, image_rgb: np.ndarray, intrinsics: Optional[Intrinsics] = None,
                    request: FrameRequest = DEFAULT_REQUEST) -> FrameOutputs:
        """Depth (and what ``request`` asks for) for an (H, W, 3) uint8 RGB image; the
        intrinsics, when given, must describe the image."""

    def describe(self) -> dict[str, str]:
        """Backend, device, precision, model and input size, for logs and diagnostics."""

    def close(self) -> None:
        """Free the model / engine / device memory."""


def check_precision(backend: str, precision: str, precisions: tuple[str, ...]) -> None:
    """Refuse a precision the backend does not declare (one error type, one wording)."""
    if precision not in precisions:
        raise ConfigError(f"backend {backend} runs precision {', '.join(precisions)}, "
                          f"not '{precision}'")


def check_intrinsics(intrinsics: Optional[Intrinsics], width: int, height: int) -> None:
    """Intrinsics given with a frame must describe that frame (the pipeline scales them)."""
    if intrinsics is not None and (intrinsics.width, intrinsics.height) != (width, height):
        raise ValueError(f"intrinsics describe a {intrinsics.width}x{intrinsics.height} image "
                         f"but the image is {width}x{height}")


class HostFrameBackend:
    """The numpy frame path: preprocess, :meth:`predict`, resize back, points and colours.

    Subclasses set ``name``, ``precisions``, ``config``, ``device``, ``precision`` and
    implement :meth:`predict`, :meth:`describe` and :meth:`close`.
    """

    name = "host"
    precisions: tuple[str, ...] = ("fp32",)
    config: ModelConfig

    def predict(self, batch: np.ndarray, f_px: np.ndarray,
                image_width: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """(metric depth, the model's own confidence in [0, 1] or None), each (h, w) float32
        at the model input size, for a normalised (1, 3, h, w) batch and the
        :func:`camera_inputs` of its source image."""
        raise NotImplementedError

    def infer_frame(self, image_rgb: np.ndarray, intrinsics: Optional[Intrinsics] = None,
                    request: FrameRequest = DEFAULT_REQUEST) -> FrameOutputs:
        """Depth (and what ``request`` asks for) for an (H, W, 3) uint8 RGB image."""
        t0 = time.perf_counter()
        check_image(image_rgb)
        height, width = image_rgb.shape[:2]
        check_intrinsics(intrinsics, width, height)
        batch = preprocess(image_rgb, self.config)
        t1 = time.perf_counter()
        depth_small, confidence_small = self.predict(batch, *camera_inputs(intrinsics, width))
        t2 = time.perf_counter()
        depth = resize_back(depth_small, width, height)
        t3 = time.perf_counter()
        timings = {"preprocess": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3,
                   "postprocess": (t3 - t2) * 1e3}
        usable = intrinsics if intrinsics is not None and intrinsics.is_valid() else None
        outputs = host_outputs(depth, image_rgb, usable, request, timings)
        outputs.model_confidence = confidence_small  # resized by the confidence step if used
        return outputs

    def infer(self, image_rgb: np.ndarray,
              intrinsics: Optional[Intrinsics] = None) -> np.ndarray:
        """Depth (H, W) float32 metres alone (a convenience over :meth:`infer_frame`)."""
        return self.infer_frame(image_rgb, intrinsics).depth_m


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 in hardware (x86 AVX512-BF16 or AMX-BF16, from Linux's
    cpuinfo flags); without it oneDNN emulates bf16 and it is no faster than fp32."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return bool({"avx512_bf16", "amx_bf16"} & set(line.split(":", 1)[-1].split()))
    except OSError:
        pass
    return False
