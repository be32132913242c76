"""Turning a uint8 RGB frame into the network's input, and its output back: one place.

The model's normalisation comes from its config (``ModelConfig.uint8_normalization``); the
camera half of the input (:func:`camera_inputs`) is the contract every exported graph and
``DepthModel.infer`` share.  numpy + OpenCV only; the torch device path mirrors these in
``backends/torch_ops.py``.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from .config import ModelConfig
from .geometry import Intrinsics
from .image_codec import ConversionError


def check_image(image_rgb: np.ndarray) -> None:
    """Reject anything but a non-empty (H, W, 3) uint8 array, with a clear message."""
    if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8 \
            or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        shape = getattr(image_rgb, "shape", None)
        dtype = getattr(image_rgb, "dtype", type(image_rgb).__name__)
        raise ConversionError(f"expected an (H, W, 3) uint8 RGB image, got shape {shape} "
                              f"{dtype}")
    if image_rgb.shape[0] == 0 or image_rgb.shape[1] == 0:
        raise ConversionError(f"empty image of shape {image_rgb.shape}")


def resize_to_input(image_rgb: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Resize to the model input size (area filter when shrinking, bilinear when growing)."""
    height, width = config.input_hw
    if image_rgb.shape[:2] == (height, width):
        return image_rgb
    shrink = image_rgb.shape[0] > height or image_rgb.shape[1] > width
    return cv2.resize(image_rgb, (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def normalize_nchw(image_rgb: np.ndarray, config: ModelConfig) -> np.ndarray:
    """uint8 HWC RGB -> normalised float32 1x3xHxW (the model's own normalisation)."""
    scale, offset = config.uint8_normalization()
    height, width = image_rgb.shape[:2]
    out = np.empty((1, 3, height, width), dtype=np.float32)
    for c in range(3):  # per channel in place: 5x faster than one broadcast, the same floats
        plane = out[0, c]
        np.multiply(image_rgb[:, :, c], scale[c], out=plane, dtype=np.float32)
        plane += offset[c]
    return out


def preprocess(image_rgb: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Check, resize and normalise an image into the model's input tensor (numpy)."""
    check_image(image_rgb)
    return normalize_nchw(resize_to_input(image_rgb, config), config)


def camera_inputs(intrinsics: Optional[Intrinsics], image_width: int) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """The camera half of every graph's input: (f_px, image_width) as float32 [1] arrays.

    f_px is the focal length at the image's own resolution, 0 when the lens is unknown (the
    model then assumes its canonical camera); the network converts it to its input size.
    """
    known = intrinsics is not None and intrinsics.is_valid()
    f_px = float(intrinsics.fx) if known else 0.0
    return (np.array([f_px], dtype=np.float32), np.array([float(image_width)], dtype=np.float32))


def resize_back(depth_m: np.ndarray, width: int, height: int) -> np.ndarray:
    """Model-resolution depth -> the input image's resolution (bilinear; depth is smooth here)."""
    depth_m = np.ascontiguousarray(depth_m, dtype=np.float32)
    if depth_m.shape == (height, width):
        return depth_m
    return cv2.resize(depth_m, (width, height), interpolation=cv2.INTER_LINEAR)
