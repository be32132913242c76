"""Samples from the varied synthetic worlds (``clip_depth_ros.synthetic.worlds``).

Sample i shows world ``seed * 100003 + i // poses_per_scene``; its family is drawn from
``families`` by that world's seed (``world_family``), the view (pose, lens, sensor) by (world
seed, i).  So the same index always gives the same image, and the training split (seed s)
and its validation stream (seed s + 7919) never share a world.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
from torch.utils.data import Dataset

from clip_depth_ros.synthetic.worlds import (FOCAL_AT_640, TRAIN_FAMILIES, WORLD_FAMILIES,
                                             random_world, world_family, world_view)

from .synthetic import scene_seed_of
from .transforms import transform_with_twin

Sample = dict[str, Any]


class SyntheticWorldDataset(Dataset):
    """Rendered-on-the-fly RGB-D views of random worlds of ``families``.

    ``size`` (height, width); ``focal_at_640`` the focal-length range in pixels at 640 px
    width (scaled to ``size``); ``max_depth``: depth beyond it (and the sky) is invalid.
    With ``sensor`` each image goes through a random camera's degradations.  Samples are dicts
    like ``SyntheticDepthDataset``'s plus ``family`` and ``camera_height_m`` (the camera's
    height above the floor, which the ground-plane anchor is told).
    """

    def __init__(self, n_samples: int, size: tuple[int, int] = (240, 320), seed: int = 0,
                 families: Optional[tuple[str, ...]] = None, poses_per_scene: int = 4,
                 max_depth: float = 80.0, sensor: bool = True,
                 focal_at_640: tuple[float, float] = FOCAL_AT_640,
                 transform: Optional[Callable[[Sample, np.random.Generator], Any]] = None):
        families = tuple(families or TRAIN_FAMILIES)
        unknown = [f for f in families if f not in WORLD_FAMILIES]
        if unknown:
            raise ValueError(f"unknown world families {unknown}; families: "
                             f"{', '.join(WORLD_FAMILIES)}")
        if n_samples < 0 or seed < 0 or poses_per_scene < 1:
            raise ValueError("need n_samples >= 0, seed >= 0 and poses_per_scene >= 1")
        if not 0 < focal_at_640[0] <= focal_at_640[1]:
            raise ValueError(f"focal range must be (lo, hi) with 0 < lo <= hi: {focal_at_640}")
        self.n_samples, self.seed = int(n_samples), int(seed)
        self.height, self.width = int(size[0]), int(size[1])
        self.families = families
        self.poses_per_scene = int(poses_per_scene)
        self.max_depth = float(max_depth)
        self.sensor = bool(sensor)
        self.focal_at_640 = (float(focal_at_640[0]), float(focal_at_640[1]))
        self.transform = transform
        self._cache: tuple[int, Any] | None = None

    def __len__(self) -> int:
        return self.n_samples

    def world_seed(self, index: int) -> int:
        """Seed of the world sample ``index`` shows."""
        return scene_seed_of(self.seed, index, self.poses_per_scene)

    def family(self, index: int) -> str:
        """World family of sample ``index``."""
        return world_family(self.world_seed(index), self.families)

    def _world(self, index: int) -> Any:
        seed = self.world_seed(index)
        if self._cache is None or self._cache[0] != seed:
            self._cache = (seed, random_world(world_family(seed, self.families), seed))
        return self._cache[1]

    def __getitem__(self, index: int) -> Any:
        if not -self.n_samples <= index < self.n_samples:
            raise IndexError(f"index {index} out of range for {self.n_samples} samples")
        index %= self.n_samples
        world = self._world(index)
        rgb, depth, intrinsics, pose = world_view(
            world.family, self.world_seed(index), index, self.width, self.height,
            sensor=self.sensor, world=world, focal_at_640=self.focal_at_640)
        valid = np.isfinite(depth) & (depth > 0) & (depth <= self.max_depth)
        sample = {"image": rgb, "depth": np.where(valid, depth, np.float32(0)),
                  "valid_mask": valid, "intrinsics": intrinsics,
                  "camera_height_m": float(pose.position[2]), "family": world.family,
                  "name": f"world_{world.family}_{self.seed}_{index:06d}"}
        if self.transform is not None:
            sample = transform_with_twin(self.transform, sample, (self.seed, index, 1))
        return sample


def focal_at_640(focal_range: Optional[list[float]], width: int) -> tuple[float, float]:
    """A focal range given in pixels at ``width`` as the range at 640 px (None: the worlds')."""
    if focal_range is None:
        return FOCAL_AT_640
    return (focal_range[0] * 640.0 / width, focal_range[1] * 640.0 / width)

