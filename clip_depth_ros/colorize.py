"""Depth -> colour images for people to look at (the ``depth/colored`` bgr8 topic).

Metric depth is clipped to [min_depth, max_depth], quantised to 256 levels and mapped through
an OpenCV colormap; invalid pixels (NaN, +-inf, <= 0) are black so holes stand out.
"""
from __future__ import annotations

import cv2
import numpy as np

# None marks plain grayscale, which OpenCV has no COLORMAP_* constant for.
COLORMAPS: dict[str, int | None] = {
    "turbo": cv2.COLORMAP_TURBO,
    "jet": cv2.COLORMAP_JET,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "gray": None,
}


def depth_to_levels(depth_m: np.ndarray, min_depth: float, max_depth: float,
                    invert: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Quantise depth to uint8 colormap levels and return (levels, valid_mask).

    With ``invert`` near depths get level 255 (the warm / bright end of the map).
    """
    if not (np.isfinite(min_depth) and np.isfinite(max_depth)) or min_depth >= max_depth:
        raise ValueError(f"need finite min_depth < max_depth, got {min_depth} and {max_depth}")
    depth = np.asarray(depth_m, dtype=np.float32)
    scale = 255.0 / (max_depth - min_depth)
    if invert:
        alpha, beta = -scale, max_depth * scale
    else:
        alpha, beta = scale, -min_depth * scale
    # NaN and +-inf fail the upper bound test, so one pair of comparisons finds valid pixels.
    valid = (depth > 0) & (depth <= np.finfo(np.float32).max)
    levels = depth * np.float32(alpha)
    levels += np.float32(beta + 0.5)
    np.clip(levels, 0.0, 255.0, out=levels)
    levels[~valid] = 0.0
    return levels.astype(np.uint8), valid


def colorize_depth(depth_m: np.ndarray, min_depth: float, max_depth: float,
                   colormap: str = "turbo", invert: bool = True) -> np.ndarray:
    """HxW depth in metres -> HxWx3 uint8 BGR; invalid pixels black, near = warm when invert."""
    if colormap not in COLORMAPS:
        valid_names = ", ".join(sorted(COLORMAPS))
        raise ValueError(f"unknown colormap {colormap!r}; valid names: {valid_names}")
    if np.ndim(depth_m) != 2:
        raise ValueError(f"depth must be HxW, got shape {np.shape(depth_m)}")
    levels, valid = depth_to_levels(depth_m, min_depth, max_depth, invert)
    cv_map = COLORMAPS[colormap]
    if cv_map is None:
        bgr = cv2.cvtColor(levels, cv2.COLOR_GRAY2BGR)
    else:
        bgr = cv2.applyColorMap(levels, cv_map)
    # Masked copy into zeros: much faster than boolean-index assignment on a 3-channel image.
    return cv2.bitwise_and(bgr, bgr, dst=np.zeros_like(bgr), mask=valid.view(np.uint8))
