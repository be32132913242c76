"""The frame pipeline's pre/post-processing as torch ops, for running it all on the GPU.

Each function mirrors a numpy/OpenCV one (``preprocessing.preprocess``, ``geometry.depth_to_points``,
``geometry.pack_rgb``, ``colorize.colorize_depth``) with the same conventions, so a CUDA
backend can keep the frame on the device from the uint8 upload to the final message bytes:
the host then only copies out the depth image, the point-cloud body (already in the
PointCloud2 layout) and the colour image.  They run on any device; the tests check them on the
CPU against the numpy versions.
"""
from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..colorize import COLORMAPS
from ..geometry import Intrinsics, ray_grid


def preprocess_uint8(image_hwc: torch.Tensor, input_hw: tuple[int, int], scale: torch.Tensor,
                     offset: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 (H, W, 3) RGB on the device -> normalised (1, 3, h, w) in ``dtype``.

    Resizes with antialiased bilinear when shrinking (the GPU counterpart of OpenCV's area
    filter) and plain bilinear when growing.  ``scale`` / ``offset`` are (1, 3, 1, 1) float32
    from ``ModelConfig.uint8_normalization`` (normalised = uint8 * scale + offset).
    """
    height, width = input_hw
    x = image_hwc.permute(2, 0, 1).unsqueeze(0).float()
    if x.shape[-2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False,
                          antialias=x.shape[-2] > height or x.shape[-1] > width)
    return (x * scale + offset).to(dtype)


def resize_depth_back(depth: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(1, 1, h, w) model-resolution depth -> (H, W) float32 at the image resolution."""
    depth = depth.float()
    if depth.shape[-2:] != (height, width):
        depth = F.interpolate(depth, size=(height, width), mode="bilinear", align_corners=False)
    return depth[0, 0]


def ray_grid_torch(intrinsics: Intrinsics, stride: int,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``geometry.ray_grid`` ((1, W') (u - cx) / fx and (H', 1) (v - cy) / fy) on ``device``."""
    x_over_z, y_over_z = ray_grid(intrinsics, int(stride))
    return (torch.tensor(x_over_z, device=device), torch.tensor(y_over_z, device=device))


def pack_rgb_torch(rgb_hwc: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (H, W) float32 whose bits are 0x00RRGGBB (``geometry.pack_rgb``)."""
    channels = rgb_hwc.to(torch.int32)
    bits = (channels[..., 0] << 16) | (channels[..., 1] << 8) | channels[..., 2]
    return bits.view(torch.float32)


def cloud_body_torch(depth_hw: torch.Tensor, rays: tuple[torch.Tensor, torch.Tensor],
                     stride: int = 1, max_range: float = math.inf,
                     rgb_hwc: torch.Tensor | None = None) -> torch.Tensor:
    """The body of an organized PointCloud2: (H', W', 3) x, y, z or (H', W', 4) with packed rgb.

    Same formula and invalid handling as ``geometry.depth_to_points`` (non-finite, non-positive
    and beyond-``max_range`` depths give NaN in x, y and z); the rgb channel keeps the
    pixel's colour even where the point is invalid, as the numpy path does.
    """
    x_over_z, y_over_z = rays
    z = depth_hw[::stride, ::stride].float()
    upper = min(float(max_range), float(np.finfo(np.float32).max))
    valid = (z > 0) & (z <= upper)
    z = torch.where(valid, z, torch.full_like(z, math.nan))
    parts = [x_over_z * z, y_over_z * z, z]
    if rgb_hwc is not None:
        parts.append(pack_rgb_torch(rgb_hwc[::stride, ::stride]))
    return torch.stack(parts, dim=-1)


@functools.lru_cache(maxsize=16)
def _lut_bgr(colormap: str) -> np.ndarray:
    if colormap not in COLORMAPS:
        valid_names = ", ".join(sorted(COLORMAPS))
        raise ValueError(f"unknown colormap {colormap!r}; valid names: {valid_names}")
    levels = np.arange(256, dtype=np.uint8).reshape(256, 1)
    cv_map = COLORMAPS[colormap]
    if cv_map is None:
        return np.repeat(levels, 3, axis=1)
    return cv2.applyColorMap(levels, cv_map).reshape(256, 3)


def colormap_lut(colormap: str, device: torch.device) -> torch.Tensor:
    """(256, 3) uint8 BGR table of an OpenCV colormap (or gray), on ``device``."""
    return torch.from_numpy(_lut_bgr(colormap)).to(device)


def colorize_torch(depth_hw: torch.Tensor, min_depth: float, max_depth: float,
                   lut: torch.Tensor, invert: bool = True) -> torch.Tensor:
    """(H, W) depth -> (H, W, 3) uint8 BGR through ``lut``; invalid pixels black.

    The quantisation is ``colorize.depth_to_levels``'s, step for step in float32.
    """
    if not (math.isfinite(min_depth) and math.isfinite(max_depth)) or min_depth >= max_depth:
        raise ValueError(f"need finite min_depth < max_depth, got {min_depth} and {max_depth}")
    depth = depth_hw.float()
    scale = 255.0 / (max_depth - min_depth)
    alpha, beta = (-scale, max_depth * scale) if invert else (scale, -min_depth * scale)
    valid = (depth > 0) & (depth <= float(np.finfo(np.float32).max))
    levels = depth * np.float32(alpha)
    levels = levels + np.float32(beta + 0.5)
    levels = levels.clamp_(0.0, 255.0).nan_to_num_(0.0)
    index = torch.where(valid, levels.to(torch.uint8).long(), torch.zeros_like(levels,
                                                                               dtype=torch.long))
    bgr = lut[index]
    return bgr * valid.unsqueeze(-1).to(torch.uint8)
