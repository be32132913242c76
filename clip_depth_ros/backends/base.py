"""The backend contract: uint8 RGB image (+ intrinsics) in, float32 metric depth out.

Every backend (torch, onnxruntime, tensorrt) returns depth in metres at the INPUT image's
resolution, clamped to the model's range, with the camera-aware scale applied when the model
asks for it and intrinsics are given.  Shared numpy pre/post-processing lives here so the
backends differ only in how they run the network.
"""
from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable

import cv2
import numpy as np

from ..config import ModelConfig
from ..geometry import Intrinsics


@runtime_checkable
class DepthBackend(Protocol):
    """What the pipeline and the node need from a backend."""

    name: str
    config: ModelConfig

    def infer(self, image_rgb: np.ndarray,
              intrinsics: Optional[Intrinsics] = None) -> np.ndarray:
        """Depth (H, W) float32 metres for an (H, W, 3) uint8 RGB image."""

    def describe(self) -> dict[str, str]:
        """Backend, device, precision, model and input size, for logs and diagnostics."""

    def close(self) -> None:
        """Free the model / engine / device memory."""


def check_image(image_rgb: np.ndarray) -> None:
    """Reject anything but a non-empty (H, W, 3) uint8 array, with a clear message."""
    if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8 \
            or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        shape = getattr(image_rgb, "shape", None)
        dtype = getattr(image_rgb, "dtype", type(image_rgb).__name__)
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {shape} {dtype}")
    if image_rgb.shape[0] == 0 or image_rgb.shape[1] == 0:
        raise ValueError(f"empty image of shape {image_rgb.shape}")


def resize_to_input(image_rgb: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Resize to the model input size (area filter when shrinking, bilinear when growing)."""
    height, width = config.input_hw
    if image_rgb.shape[:2] == (height, width):
        return image_rgb
    shrink = image_rgb.shape[0] > height or image_rgb.shape[1] > width
    return cv2.resize(image_rgb, (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def normalize_nchw(image_rgb: np.ndarray, config: ModelConfig) -> np.ndarray:
    """uint8 HWC RGB -> normalised float32 1x3xHxW."""
    scale = (1.0 / (255.0 * np.asarray(config.std, np.float32)))
    offset = -np.asarray(config.mean, np.float32) / np.asarray(config.std, np.float32)
    chw = image_rgb.transpose(2, 0, 1).astype(np.float32)
    return (chw * scale[:, None, None] + offset[:, None, None])[None]


def preprocess(image_rgb: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Check, resize and normalise an image into the model's input tensor (numpy)."""
    check_image(image_rgb)
    return normalize_nchw(resize_to_input(image_rgb, config), config)


def model_focal_px(intrinsics: Optional[Intrinsics], config: ModelConfig) -> Optional[float]:
    """The camera's focal length at the model input size, or None when unknown/invalid."""
    if intrinsics is None or not intrinsics.is_valid():
        return None
    height, width = config.input_hw
    return float(intrinsics.scaled_to(width, height).fx)


def resize_back(depth_m: np.ndarray, width: int, height: int) -> np.ndarray:
    """Model-resolution depth -> the input image's resolution (bilinear; depth is smooth here)."""
    depth_m = np.ascontiguousarray(depth_m, dtype=np.float32)
    if depth_m.shape == (height, width):
        return depth_m
    return cv2.resize(depth_m, (width, height), interpolation=cv2.INTER_LINEAR)
