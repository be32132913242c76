"""File readers and the robust base Dataset shared by every depth dataset."""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Optional

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from clip_depth_ros.errors import ClipDepthError
from clip_depth_ros.geometry import Intrinsics

logger = logging.getLogger(__name__)

Sample = dict[str, Any]


class SampleReadError(OSError):
    """A sample file is missing, unreadable or not in the expected format."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DataNotFoundError(ClipDepthError, FileNotFoundError):
    """A dataset folder or file the data config names does not exist (a user's mistake)."""


def require_dir(path: str, what: str) -> str:
    """Return path if it is a directory, else raise DataNotFoundError naming it."""
    if not os.path.isdir(path):
        raise DataNotFoundError(f"{what} not found: {path}")
    return path


def require_file(path: str, what: str) -> str:
    """Return path if it is a file, else raise DataNotFoundError naming it."""
    if not os.path.isfile(path):
        raise DataNotFoundError(f"{what} not found: {path}")
    return path


def read_list_file(list_file: str) -> list[list[str]]:
    """Whitespace-split tokens of each non-empty, non-comment line of a split list file."""
    require_file(list_file, "split list file")
    with open(list_file, encoding="utf-8") as handle:
        lines = [line.split() for line in handle]
    return [tokens for tokens in lines if tokens and not tokens[0].startswith("#")]


def join_rel(root: str, rel_path: str) -> str:
    """root / rel_path, tolerating the leading '/' of BTS's NYU train list."""
    return os.path.join(root, rel_path.lstrip("/"))


def read_rgb(path: str) -> np.ndarray:
    """HxWx3 uint8 RGB from a jpg/png (OpenCV decodes BGR; converted here)."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        reason = "missing" if not os.path.exists(path) else "cannot be decoded"
        raise SampleReadError(path, f"RGB image {reason}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_depth_png(path: str, depth_scale: float) -> np.ndarray:
    """float32 metres from a single-channel 16-bit PNG: png / depth_scale (0 stays 0 = invalid)."""
    raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if raw is None:
        reason = "missing" if not os.path.exists(path) else "cannot be decoded"
        raise SampleReadError(path, f"depth PNG {reason}")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise SampleReadError(path, f"expected a single-channel 16-bit PNG, got {raw.dtype} "
                                    f"with shape {raw.shape}")
    return raw.astype(np.float32) / np.float32(depth_scale)


def make_sample(image: np.ndarray, depth_m: np.ndarray, intrinsics: Intrinsics, name: str,
                path: str = "") -> Sample:
    """Sample dict; non-finite or non-positive depth becomes 0 and is marked invalid."""
    if image.shape[:2] != depth_m.shape:
        raise SampleReadError(path or name, f"image {image.shape[:2]} and depth {depth_m.shape} "
                                            "sizes differ")
    depth = np.asarray(depth_m, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    return {"image": np.ascontiguousarray(image, dtype=np.uint8),
            "depth": np.where(valid, depth, np.float32(0)).astype(np.float32),
            "valid_mask": valid, "intrinsics": intrinsics, "name": name}


class DepthDataset(Dataset):
    """Base class: ``load(i)`` reads one sample; __getitem__ skips unreadable ones.

    A sample whose files are missing or corrupt does not stop training: __getitem__ logs the
    file once, adds one to ``skipped`` and returns the next readable sample (up to
    ``max_retries`` further indices, then RuntimeError).  With DataLoader workers each worker
    process has its own ``skipped`` counter; the log lines are the reliable record.
    ``transform(sample, rng)`` gets a numpy Generator seeded from torch's RNG, which the
    DataLoader seeds per worker and per epoch, so torch.manual_seed makes it reproducible.
    """

    def __init__(self, transform: Optional[Callable[..., Any]] = None,
                 max_retries: int = 10) -> None:
        self.transform = transform
        self.max_retries = int(max_retries)
        self.skipped = 0
        self._reported: set[str] = set()

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> Sample:
        """Read sample ``index`` or raise (SampleReadError / OSError / ValueError)."""
        raise NotImplementedError

    def _report(self, index: int, err: Exception) -> None:
        self.skipped += 1
        key = getattr(err, "path", None) or f"{type(self).__name__}[{index}]"
        if key not in self._reported:
            self._reported.add(key)
            logger.warning("skipping unreadable sample %d (%s): %s", index, key, err)

    def __getitem__(self, index: int) -> Any:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n
        for attempt in range(min(self.max_retries, n - 1) + 1):
            i = (index + attempt) % n
            try:
                sample = self.load(i)
            except (OSError, ValueError, KeyError, cv2.error) as err:
                self._report(i, err)
                continue
            if self.transform is not None:
                seed = int(torch.randint(0, 2 ** 62, ()).item())
                sample = self.transform(sample, np.random.default_rng(seed))
            return sample
        raise RuntimeError(f"{type(self).__name__}: no readable sample in {self.max_retries + 1} "
                           f"tries from index {index}; see the warnings above")
