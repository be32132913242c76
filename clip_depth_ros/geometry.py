"""Camera geometry in plain numpy: intrinsics, resizing, depth -> organized point clouds.

Conventions follow REP 103 / REP 118: optical frame (x right, y down, z forward),
depth in metres along z, NaN for invalid.  The projection is the one depth_image_proc's
``point_cloud_xyz`` uses, so our clouds match what a standard ROS pipeline would build
from our depth image and camera_info.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of an image of ``width`` x ``height`` pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def is_valid(self) -> bool:
        """True when focal lengths are finite and positive and the size is non-zero."""
        vals = (self.fx, self.fy, self.cx, self.cy)
        return (all(np.isfinite(v) for v in vals) and self.fx > 0 and self.fy > 0
                and self.width > 0 and self.height > 0)

    def scaled_to(self, width: int, height: int) -> "Intrinsics":
        """Intrinsics of the same camera after resizing (or binning) the image to width x height.

        Uses the pixel-centre convention of OpenCV's resize, which made the resized image: a
        pixel centre at u in the original maps to (u + 0.5) * s - 0.5 in the resized image
        (image_proc's resize scales cx plainly, cx * s: (s - 1) / 2 px apart).
        """
        if width == self.width and height == self.height:
            return self
        sx = width / float(self.width)
        sy = height / float(self.height)
        return replace(
            self,
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
            width=int(width),
            height=int(height),
        )

    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def _check_matches(intrinsics: Intrinsics, height: int, width: int) -> None:
    if intrinsics.width != width or intrinsics.height != height:
        raise ValueError(
            f"intrinsics describe a {intrinsics.width}x{intrinsics.height} image but the depth "
            f"image is {width}x{height}; scale them first with "
            f"Intrinsics.scaled_to({width}, {height})")
    if not intrinsics.is_valid():
        raise ValueError(f"invalid intrinsics: {intrinsics}")


@functools.lru_cache(maxsize=32)
def ray_grid(intrinsics: Intrinsics, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (u - cx) / fx as a (1, W') row and per-row (v - cy) / fy as an (H', 1) column.

    u, v are the original pixel coordinates 0, stride, 2 * stride, ...; the arrays are cached
    per (intrinsics, stride) and read-only, so callers broadcast them instead of copying.
    """
    u = np.arange(0, intrinsics.width, stride, dtype=np.float64)
    v = np.arange(0, intrinsics.height, stride, dtype=np.float64)
    x_over_z = ((u - intrinsics.cx) / intrinsics.fx).astype(np.float32)[None, :]
    y_over_z = ((v - intrinsics.cy) / intrinsics.fy).astype(np.float32)[:, None]
    x_over_z.flags.writeable = False
    y_over_z.flags.writeable = False
    return x_over_z, y_over_z


def depth_to_points(depth_m: np.ndarray, intrinsics: Intrinsics, stride: int = 1,
                    max_range: float = math.inf) -> np.ndarray:
    """Organized (ceil(H/stride), ceil(W/stride), 3) float32 optical-frame cloud, NaN = invalid.

    Same formula as depth_image_proc: x = (u - cx) z / fx, y = (v - cy) z / fy, z = depth(u, v),
    with (u, v) the original pixel of each kept sample.  Non-finite, non-positive and
    beyond-``max_range`` depths become NaN in all three coordinates.
    """
    x_over_z, y_over_z, z = _rays_and_depth(depth_m, intrinsics, stride, max_range)
    points = np.empty(z.shape + (3,), dtype=np.float32)
    np.multiply(x_over_z, z, out=points[..., 0])
    np.multiply(y_over_z, z, out=points[..., 1])
    points[..., 2] = z
    return points


def point_planes(depth_m: np.ndarray, intrinsics: Intrinsics, stride: int = 1,
                 max_range: float = math.inf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The x, y, z of :func:`depth_to_points` as three contiguous (H', W') float32 planes
    (NaN = invalid), for callers that interleave them themselves (the cloud body)."""
    x_over_z, y_over_z, z = _rays_and_depth(depth_m, intrinsics, stride, max_range)
    return x_over_z * z, y_over_z * z, z


def _rays_and_depth(depth_m: np.ndarray, intrinsics: Intrinsics, stride: int,
                    max_range: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ray grid and the kept depths (NaN = invalid) of depth_to_points / point_planes."""
    if depth_m.ndim != 2:
        raise ValueError(f"depth must be HxW, got shape {depth_m.shape}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    _check_matches(intrinsics, depth_m.shape[0], depth_m.shape[1])
    x_over_z, y_over_z = ray_grid(intrinsics, int(stride))
    z = np.asarray(depth_m[::stride, ::stride], dtype=np.float32)
    # One upper bound rejects +inf and NaN too (NaN compares false), saving an isfinite pass.
    upper = min(float(max_range), float(np.finfo(np.float32).max))
    valid = (z > 0) & (z <= upper)
    return x_over_z, y_over_z, np.where(valid, z, np.float32(np.nan))


def project_points(points_xyz: np.ndarray,
                   intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (u, v) of optical-frame points (..., 3); NaN points give NaN."""
    points = np.asarray(points_xyz, dtype=np.float64)
    if points.shape[-1] != 3:
        raise ValueError(f"points must have a last axis of 3, got shape {points.shape}")
    z = points[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intrinsics.fx * points[..., 0] / z + intrinsics.cx
        v = intrinsics.fy * points[..., 1] / z + intrinsics.cy
    return u, v


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxW float32 whose bits are 0x00RRGGBB (PCL / PointCloud2 rgb field)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    r = rgb[..., 0].astype(np.uint32)
    g = rgb[..., 1].astype(np.uint32)
    b = rgb[..., 2].astype(np.uint32)
    return ((r << 16) | (g << 8) | b).view(np.float32)


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Inverse of pack_rgb: HxW float32 with 0x00RRGGBB bits -> HxWx3 uint8 RGB."""
    bits = np.ascontiguousarray(packed, dtype=np.float32).view(np.uint32)
    channels = [(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF]
    return np.stack(channels, axis=-1).astype(np.uint8)


def resize_depth(depth_m: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a depth map (metres) to width x height without inventing depth at hole edges.

    All-valid maps use bilinear interpolation (smooth, values stay within the input range).
    Maps with invalid pixels (NaN, +-inf, <= 0) use a normalised bilinear average over valid
    neighbours only, and each output pixel whose nearest source pixel is invalid keeps that
    source value (so NaN / -inf / +inf of REP 117 survive); invalid pixels are never blended
    into their neighbours' depth.  Both paths share OpenCV's pixel-centre alignment, which is
    the one ``Intrinsics.scaled_to`` assumes.
    """
    if depth_m.ndim != 2:
        raise ValueError(f"depth must be HxW, got shape {depth_m.shape}")
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    import cv2  # only this function needs OpenCV; the rest of the module is numpy-only

    depth = np.asarray(depth_m, dtype=np.float32)
    if depth.shape == (height, width):
        return depth.copy()
    size = (int(width), int(height))
    valid = np.isfinite(depth) & (depth > 0)
    if valid.all():
        return cv2.resize(depth, size, interpolation=cv2.INTER_LINEAR)
    weight = valid.astype(np.float32)
    weighted_sum = cv2.resize(np.where(valid, depth, 0).astype(np.float32), size,
                              interpolation=cv2.INTER_LINEAR)
    weight_sum = cv2.resize(weight, size, interpolation=cv2.INTER_LINEAR)
    nearest = cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST_EXACT)
    nearest_valid = np.isfinite(nearest) & (nearest > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        blended = weighted_sum / weight_sum
    # A valid nearest pixel always has weight > 0 in its bilinear footprint, but guard anyway.
    blended = np.where(weight_sum > 1e-6, blended, np.float32(np.nan))
    return np.where(nearest_valid, blended, nearest).astype(np.float32)
