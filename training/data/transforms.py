"""Augmentations on sample dicts that keep image, depth, valid_mask and intrinsics consistent.

A sample is {"image": uint8 HxWx3 RGB, "depth": float32 HxW metres (0 = invalid),
"valid_mask": bool HxW, "intrinsics": Intrinsics, "name": str}.  Every transform is called as
``transform(sample, rng)`` with a ``numpy.random.Generator`` and returns a new dict (the input
is not modified).  Intrinsics use the pixel-centre convention of ``Intrinsics.scaled_to``.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable, Optional, Sequence

import cv2
import numpy as np
import torch

from clip_depth_ros.config import uint8_normalization
from clip_depth_ros.geometry import Intrinsics

Sample = dict[str, Any]
Transform = Callable[[Sample, np.random.Generator], Sample]


def crop_sample(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    """Crop all arrays to rows top:top+height, cols left:left+width and shift cx, cy to match."""
    h, w = sample["depth"].shape
    if top < 0 or left < 0 or top + height > h or left + width > w:
        raise ValueError(f"crop {height}x{width} at ({top}, {left}) does not fit a {h}x{w} sample")
    rows, cols = slice(top, top + height), slice(left, left + width)
    out = dict(sample)
    for key in ("image", "depth", "valid_mask"):
        out[key] = np.ascontiguousarray(sample[key][rows, cols])
    k: Intrinsics = sample["intrinsics"]
    out["intrinsics"] = replace(k, cx=k.cx - left, cy=k.cy - top, width=int(width),
                                height=int(height))
    return out


class RandomCrop:
    """Crop a random height x width window (same window for every array)."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = int(height), int(width)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Crop at a uniformly drawn top-left corner."""
        h, w = sample["depth"].shape
        if self.height > h or self.width > w:
            raise ValueError(f"crop {self.height}x{self.width} larger than sample {h}x{w}")
        top = int(rng.integers(0, h - self.height + 1))
        left = int(rng.integers(0, w - self.width + 1))
        return crop_sample(sample, top, left, self.height, self.width)


class RandomHorizontalFlip:
    """Mirror left-right with probability p; the principal point moves to cx' = W - 1 - cx."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = float(p)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Flip image, depth and mask together (or return the sample unchanged)."""
        if rng.random() >= self.p:
            return sample
        out = dict(sample)
        for key in ("image", "depth", "valid_mask"):
            out[key] = np.ascontiguousarray(sample[key][:, ::-1])
        k: Intrinsics = sample["intrinsics"]
        out["intrinsics"] = replace(k, cx=k.width - 1 - k.cx)
        return out


class RandomRotate:
    """Rotate by a uniform angle in [-max_deg, max_deg] about the principal point.

    Depth and mask use nearest-neighbour sampling; pixels rotated in from outside the image
    get depth 0, mask False (and a black image).  Intrinsics are kept: a rotation about the
    optical axis maps the image by exactly this rotation about (cx, cy) when fx == fy, with
    unchanged z-depth; for fx != fy it is an approximation, fine for a few degrees.
    """

    def __init__(self, max_deg: float = 2.5) -> None:
        self.max_deg = float(max_deg)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Rotate image (bilinear), depth and mask (nearest) by one drawn angle."""
        angle = float(rng.uniform(-self.max_deg, self.max_deg))
        return rotate_sample(sample, angle)


def rotate_sample(sample: Sample, angle_deg: float) -> Sample:
    """Rotate a sample counter-clockwise by angle_deg about (cx, cy); see RandomRotate."""
    k: Intrinsics = sample["intrinsics"]
    h, w = sample["depth"].shape
    matrix = cv2.getRotationMatrix2D((float(k.cx), float(k.cy)), float(angle_deg), 1.0)
    size = (w, h)
    out = dict(sample)
    out["image"] = cv2.warpAffine(sample["image"], matrix, size, flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    depth = cv2.warpAffine(sample["depth"].astype(np.float32), matrix, size,
                           flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = cv2.warpAffine(sample["valid_mask"].astype(np.uint8), matrix, size,
                          flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0).astype(bool)
    mask &= depth > 0
    out["depth"] = np.where(mask, depth, np.float32(0)).astype(np.float32)
    out["valid_mask"] = mask
    return out


class ColorJitter:
    """Random brightness, contrast and saturation factors in [1 - x, 1 + x]; image only."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2) -> None:
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Apply brightness, then contrast, then saturation (fixed order, unlike torchvision)."""
        img = sample["image"].astype(np.float32)
        b = rng.uniform(1 - self.brightness, 1 + self.brightness)
        c = rng.uniform(1 - self.contrast, 1 + self.contrast)
        s = rng.uniform(1 - self.saturation, 1 + self.saturation)
        img = np.clip(img * b, 0, 255)
        gray = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        img = np.clip(gray.mean() + c * (img - gray.mean()), 0, 255)
        gray = (img @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
        img = np.clip(gray + s * (img - gray), 0, 255)
        out = dict(sample)
        out["image"] = np.round(img).astype(np.uint8)
        return out


class Resize:
    """Resize to height x width: image bilinear (area when shrinking), depth and mask nearest."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = int(height), int(width)

    def __call__(self, sample: Sample, rng: Optional[np.random.Generator] = None) -> Sample:
        """Resize every array and scale the intrinsics with Intrinsics.scaled_to."""
        h, w = sample["depth"].shape
        if (h, w) == (self.height, self.width):
            return sample
        size = (self.width, self.height)
        shrink = self.height < h and self.width < w
        out = dict(sample)
        out["image"] = cv2.resize(sample["image"], size,
                                  interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        # NEAREST_EXACT samples the source pixel under each output centre (no half-pixel shift).
        out["depth"] = cv2.resize(sample["depth"].astype(np.float32), size,
                                  interpolation=cv2.INTER_NEAREST_EXACT)
        out["valid_mask"] = cv2.resize(sample["valid_mask"].astype(np.uint8), size,
                                       interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
        out["intrinsics"] = sample["intrinsics"].scaled_to(self.width, self.height)
        return out


def transform_with_twin(transform: Callable[[Sample, np.random.Generator], Sample],
                        sample: Sample, seed: Sequence[int]) -> Sample:
    """``transform`` of a sample and, by the same draws (same flip, jitter, ...), of the zoomed
    "twin" it may carry (``SyntheticDepthDataset(zoom_range=...)``); the twin stays under
    "twin" in the result."""
    twin = sample.get("twin")
    out = transform({k: v for k, v in sample.items() if k != "twin"},
                    np.random.default_rng(list(seed)))
    if twin is not None:
        out["twin"] = transform(twin, np.random.default_rng(list(seed)))
    return out


class Compose:
    """Apply transforms in order, all drawing from the same Generator."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Run each transform on the previous one's output."""
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


def to_tensors(sample: Sample, mean: Sequence[float], std: Sequence[float]) -> dict[str, Any]:
    """Tensors for a model: normalised float32 3xHxW image, 1xHxW depth and mask, focal_px (fx).

    image = (rgb / 255 - mean) / std per channel, by the runtime's one formula
    (``clip_depth_ros.config.uint8_normalization``, what ``ModelConfig.uint8_normalization``
    and so every inference path use).  "intrinsics" becomes a float32 tensor [fx, fy, cx, cy]
    so default_collate can batch it; "name" stays a string.
    """
    image = torch.from_numpy(np.ascontiguousarray(sample["image"])).permute(2, 0, 1).float()
    scale, offset = (torch.from_numpy(v).reshape(3, 1, 1)
                     for v in uint8_normalization(mean, std))
    k: Intrinsics = sample["intrinsics"]
    if not math.isfinite(k.fx):
        raise ValueError(f"sample {sample.get('name')!r} has no finite focal length")
    return {
        "image": image * scale + offset,
        "depth": torch.from_numpy(np.ascontiguousarray(sample["depth"], dtype=np.float32))[None],
        "valid_mask": torch.from_numpy(
            np.ascontiguousarray(sample["valid_mask"], dtype=bool))[None],
        "focal_px": torch.tensor(k.fx, dtype=torch.float32),
        "intrinsics": torch.tensor([k.fx, k.fy, k.cx, k.cy], dtype=torch.float32),
        "name": sample.get("name", ""),
    }


class ToTensors:
    """``to_tensors`` as a last Compose step: ToTensors(mean, std)(sample, rng)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, sample: Sample,
                 rng: Optional[np.random.Generator] = None) -> dict[str, Any]:
        """Convert the sample; rng is unused."""
        return to_tensors(sample, self.mean, self.std)
