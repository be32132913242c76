"""What a real camera does to a rendered image: a lens's distortion undone imperfectly,
vignetting, blur, noise and JPEG compression (pure numpy + OpenCV, deterministic by seed).

The depth is left as rendered (the ideal pinhole camera the rectified image stands for); only
the colour image degrades, as a real camera's does.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class SensorEffects:
    """One camera's degradations.

    ``distortion_k1``: the lens's radial distortion (normalised coordinates); the image is
    undistorted with ``calibration_error`` relative error in k1, so a little warp and the
    resampling softness remain.  ``vignetting``: brightness lost at the image corners (0-1).
    ``blur_sigma``: Gaussian blur in pixels (defocus, motion).  ``noise_std``: read noise in
    8-bit levels; ``shot_noise``: photon noise, std = shot_noise * sqrt(level).
    ``jpeg_quality``: re-encode as JPEG at this quality (None: no compression).
    """

    distortion_k1: float = 0.0
    calibration_error: float = 0.0
    vignetting: float = 0.0
    blur_sigma: float = 0.0
    noise_std: float = 0.0
    shot_noise: float = 0.0
    jpeg_quality: int | None = None


def random_sensor(rng: np.random.Generator) -> SensorEffects:
    """A random camera: k1 in -0.25..0.05 (held where the lens model does not fold over the
    image) undone with up to 5% error, vignetting up to 0.45,
    blur up to 1.2 px half the time, read noise up to 5 levels, shot noise up to 0.6, JPEG at
    quality 35-95 for two images in three."""
    return SensorEffects(
        distortion_k1=float(rng.uniform(-0.25, 0.05)),
        calibration_error=float(rng.uniform(-0.05, 0.05)),
        vignetting=float(rng.uniform(0, 0.45)),
        blur_sigma=float(rng.uniform(0.3, 1.2)) if rng.random() < 0.5 else 0.0,
        noise_std=float(rng.uniform(0, 5)),
        shot_noise=float(rng.uniform(0, 0.6)),
        jpeg_quality=int(rng.integers(35, 96)) if rng.random() < 2 / 3 else None)


def _residual_warp(rgb: np.ndarray, k1: float, k1_estimate: float,
                   focal_px: float) -> np.ndarray:
    """The pinhole image seen through a lens of distortion k1 and undistorted assuming
    k1_estimate: each output pixel samples the pinhole image where the true lens put the ray
    that the estimate assigns to it."""
    h, w = rgb.shape[:2]
    x = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / np.float32(focal_px)
    y = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / np.float32(focal_px)
    x, y = np.meshgrid(x, y)
    # a barrel lens r (1 + k1 r^2) folds back beyond r^2 = -1 / (3 k1): keep both k1 where
    # the model is monotonic over the image (a real calibration is, where it has pixels)
    r2_max = float((x * x + y * y).max())
    floor = -0.2 / max(r2_max, 1e-6)  # 3 |k1| r^2 <= 0.6 at the corners: far from the fold
    k1, k1_estimate = max(k1, floor), max(k1_estimate, floor)
    r2 = x * x + y * y
    distorted = np.float32(1 + k1_estimate * r2)  # where the estimate says the ray landed
    rd = np.sqrt(r2) * distorted
    # invert the true lens radially: r (1 + k1 r^2) = rd, by Newton from r = rd, kept on the
    # monotonic branch below the fold at r^2 = -1 / (3 k1)
    r_fold = np.float32(np.sqrt(-1 / (3 * k1)) if k1 < 0 else np.inf)
    r = rd.copy()
    for _ in range(6):
        r -= (r * (1 + np.float32(k1) * r * r) - rd) / (1 + np.float32(3 * k1) * r * r)
        np.clip(r, 0, r_fold * np.float32(0.999), out=r)
    ratio = np.where(rd > 0, r / np.maximum(rd, np.float32(1e-12)), np.float32(1))
    xt, yt = x * distorted * ratio, y * distorted * ratio
    map_x = xt * np.float32(focal_px) + np.float32((w - 1) / 2)
    map_y = yt * np.float32(focal_px) + np.float32((h - 1) / 2)
    return cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def apply_sensor(rgb: np.ndarray, effects: SensorEffects, focal_px: float,
                 rng: np.random.Generator) -> np.ndarray:
    """The HxWx3 uint8 RGB image as the camera of ``effects`` (focal length ``focal_px``)
    delivers it; noise is drawn from ``rng``."""
    out = rgb
    if effects.distortion_k1 != 0.0:
        estimate = effects.distortion_k1 * (1 + effects.calibration_error)
        out = _residual_warp(out, effects.distortion_k1, estimate, focal_px)
    img = out.astype(np.float32)
    if effects.vignetting > 0:
        h, w = img.shape[:2]
        yy, xx = np.ogrid[:h, :w]
        r2 = ((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / (((w - 1) / 2) ** 2
                                                                  + ((h - 1) / 2) ** 2)
        img *= (1 - effects.vignetting * r2.astype(np.float32) ** 1.5)[..., None]
    if effects.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), effects.blur_sigma)
    if effects.noise_std > 0 or effects.shot_noise > 0:
        std = np.sqrt(np.float32(effects.noise_std ** 2)
                      + np.float32(effects.shot_noise ** 2) * np.maximum(img, 0))
        img += rng.standard_normal(img.shape, dtype=np.float32) * std
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if effects.jpeg_quality is not None:
        ok, code = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY,
                                                         int(effects.jpeg_quality)])
        if ok:
            out = np.ascontiguousarray(cv2.imdecode(code, cv2.IMREAD_COLOR)[..., ::-1])
    return out
