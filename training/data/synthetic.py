"""Synthetic depth data: an on-the-fly Dataset and writers of the NYU (BTS) and KITTI layouts.

Samples are ray-cast by ``clip_depth_ros.synthetic`` (exact metric z-depth, no sensor noise).
The folder writers produce the file formats the real-dataset readers expect, so a training or
evaluation pipeline can be exercised end to end without downloading anything:

    python -m training.data.synthetic --layout nyu --out /tmp/nyu_syn --train 64 --test 16
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import replace
from typing import Any, Callable, Iterable, Optional

import cv2
import numpy as np
from torch.utils.data import Dataset

from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.synthetic import SCENE_KINDS, random_pose, random_scene, render

from .transforms import transform_with_twin

# NYU v2 Kinect colour camera (fx = fy = the focal BTS lists carry) and KITTI cam 2 (P_rect_02
# of 2011_09_26), each at its native size.
NYU_FOCAL = 518.8579
NYU_CAMERA = Intrinsics(fx=NYU_FOCAL, fy=NYU_FOCAL, cx=325.5824, cy=253.7362,
                        width=640, height=480)
KITTI_FOCAL = 721.5377
KITTI_CAMERA = Intrinsics(fx=KITTI_FOCAL, fy=KITTI_FOCAL, cx=609.5593, cy=172.854,
                          width=1242, height=375)
KITTI_DATE = "2011_09_26"
CAMERAS = {"indoor": NYU_CAMERA, "street": KITTI_CAMERA}
# Depth beyond this is no ground truth (street: about a LiDAR's range; rooms are never reached).
MAX_DEPTH = {"indoor": math.inf, "street": 120.0}
SCENE_SEED_STRIDE = 100003  # scene seed = seed * stride + index // poses_per_scene


def scene_seed_of(seed: int, index: int, poses_per_scene: int) -> int:
    """Seed of the scene (or world) sample ``index`` of a synthetic split ``seed`` shows:
    splits of different seeds never share one (the stride exceeds any split's scenes)."""
    return seed * SCENE_SEED_STRIDE + index // poses_per_scene

Sample = dict[str, Any]


class SyntheticDepthDataset(Dataset):
    """Rendered-on-the-fly RGB-D samples of random indoor rooms or streets.

    Sample i shows scene ``seed * 100003 + i // poses_per_scene`` from a random valid pose drawn
    from a generator seeded by (seed, i), so the same index always gives the same sample.
    ``size`` is (height, width) and defaults to the kind's camera (NYU 480x640, KITTI
    375x1242); ``intrinsics`` default to that camera scaled to ``size``.  With
    ``focal_range=(lo, hi)`` each sample gets fx = fy drawn uniformly in [lo, hi] pixels
    (principal point unchanged); ``texture_scale_m`` gives every indoor surface pattern one
    physical scale (a metric cue, see ``random_indoor_scene``).  With ``zoom_range=(lo, hi)``
    each sample also carries a "twin": the same scene from the same pose through a lens z
    times longer (fx, fy times z, z uniform in [lo, hi], principal point kept), rendered
    (not upsampled, so no blur tells the twin apart), for zoom-consistency training.  Samples are dicts: image (HxWx3 uint8 RGB), depth (HxW float32
    metres, 0 where invalid: sky or beyond ``max_depth``), valid_mask (bool), intrinsics, name.
    ``transform(sample, rng)`` gets a generator seeded by the index, keeping determinism.
    """

    def __init__(self, kind: str = "indoor", n_samples: int = 1000,
                 size: Optional[tuple[int, int]] = None, seed: int = 0,
                 intrinsics: Optional[Intrinsics] = None,
                 focal_range: Optional[tuple[float, float]] = None, poses_per_scene: int = 8,
                 max_depth: Optional[float] = None,
                 transform: Optional[Callable[[Sample, np.random.Generator], Any]] = None,
                 texture_scale_m: Optional[float] = None,
                 zoom_range: Optional[tuple[float, float]] = None) -> None:
        if kind not in SCENE_KINDS:
            raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(SCENE_KINDS)}")
        if n_samples < 0 or seed < 0 or poses_per_scene < 1:
            raise ValueError("need n_samples >= 0, seed >= 0 and poses_per_scene >= 1")
        if focal_range is not None and not 0 < focal_range[0] <= focal_range[1]:
            raise ValueError(f"focal_range must be (lo, hi) with 0 < lo <= hi, got {focal_range}")
        if zoom_range is not None and not 1.0 <= zoom_range[0] <= zoom_range[1]:
            raise ValueError(f"zoom_range must be (lo, hi) with 1 <= lo <= hi, got {zoom_range}")
        base = intrinsics or CAMERAS[kind]
        height, width = size if size is not None else (base.height, base.width)
        self.kind = kind
        self.n_samples = int(n_samples)
        self.seed = int(seed)
        self.intrinsics = base.scaled_to(int(width), int(height))
        self.focal_range = focal_range
        self.poses_per_scene = int(poses_per_scene)
        self.max_depth = MAX_DEPTH[kind] if max_depth is None else float(max_depth)
        self.transform = transform
        self.texture_scale_m = texture_scale_m
        self.zoom_range = zoom_range
        self._scene_cache: tuple[int, Any] | None = None

    def __len__(self) -> int:
        return self.n_samples

    def scene_seed(self, index: int) -> int:
        """Seed of the scene that sample ``index`` shows."""
        return scene_seed_of(self.seed, index, self.poses_per_scene)

    def _scene(self, index: int) -> Any:
        scene_seed = self.scene_seed(index)
        if self._scene_cache is None or self._scene_cache[0] != scene_seed:
            self._scene_cache = (scene_seed, random_scene(self.kind, scene_seed,
                                                             self.texture_scale_m))
        return self._scene_cache[1]

    def _view(self, index: int) -> tuple[Any, Any, Intrinsics]:
        """(scene, pose, intrinsics) of sample ``index``."""
        rng = np.random.default_rng([self.seed, index])
        scene = self._scene(index)
        pose = random_pose(scene, rng)
        intrinsics = self.intrinsics
        if self.focal_range is not None:
            focal = float(rng.uniform(*self.focal_range))
            intrinsics = replace(intrinsics, fx=focal, fy=focal)
        return scene, pose, intrinsics

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray, Intrinsics]:
        """(rgb, raw depth with +inf for sky, intrinsics) of sample ``index``."""
        scene, pose, intrinsics = self._view(index)
        rgb, depth = render(scene, pose, intrinsics)
        return rgb, depth, intrinsics

    def _sample(self, index: int, rgb: np.ndarray, depth: np.ndarray,
                intrinsics: Intrinsics) -> Sample:
        valid = np.isfinite(depth) & (depth > 0) & (depth <= self.max_depth)
        return {"image": rgb, "depth": np.where(valid, depth, np.float32(0)),
                "valid_mask": valid, "intrinsics": intrinsics,
                "name": f"synthetic_{self.kind}_{self.seed}_{index:06d}"}

    def __getitem__(self, index: int) -> Any:
        if not -self.n_samples <= index < self.n_samples:
            raise IndexError(f"index {index} out of range for {self.n_samples} samples")
        index %= self.n_samples
        scene, pose, intrinsics = self._view(index)
        sample = self._sample(index, *render(scene, pose, intrinsics), intrinsics)
        if self.zoom_range is not None:
            zoom = float(np.random.default_rng([self.seed, index, 2]).uniform(*self.zoom_range))
            tele = replace(intrinsics, fx=intrinsics.fx * zoom, fy=intrinsics.fy * zoom)
            sample["twin"] = self._sample(index, *render(scene, pose, tele), tele)
        if self.transform is not None:
            sample = transform_with_twin(self.transform, sample, (self.seed, index, 1))
        return sample


def layout_dataset(layout: str, split: str, n_samples: int, seed: int) -> SyntheticDepthDataset:
    """The dataset a layout writer renders a split from (train: seed 2s, test: seed 2s + 1)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    kind = {"nyu": "indoor", "kitti": "street"}[layout]
    return SyntheticDepthDataset(kind, n_samples, seed=2 * seed + (split == "test"))


def lidar_scan_mask(intrinsics: Intrinsics) -> np.ndarray:
    """HxW bool mask of a 64-beam spinning LiDAR's returns (~5% of a KITTI image).

    Beams at elevations +2 .. -24.8 deg (HDL-64E), mounted with the camera; a beam of constant
    elevation projects to the curve (v - cy) / fy = -tan(elev) * sqrt(1 + ((u - cx) / fx)^2),
    sampled every second column (the azimuth step), alternating between neighbouring beams.
    """
    h, w = intrinsics.height, intrinsics.width
    u = np.arange(w)
    stretch = np.sqrt(1 + ((u - intrinsics.cx) / intrinsics.fx) ** 2)
    mask = np.zeros((h, w), dtype=bool)
    for k, elevation in enumerate(np.radians(np.linspace(2.0, -24.8, 64))):
        rows = np.rint(intrinsics.cy - intrinsics.fy * math.tan(elevation) * stretch)
        keep = (rows >= 0) & (rows < h) & ((u + k) % 2 == 0)
        mask[rows[keep].astype(np.int64), u[keep]] = True
    return mask


def _encode_depth(depth_m: np.ndarray, valid: np.ndarray, scale: float) -> np.ndarray:
    """uint16 round(depth * scale) in float64, 0 where invalid or not representable."""
    code = np.rint(np.where(valid, depth_m, 0).astype(np.float64) * scale)
    return np.where(valid & (code <= 65535), code, 0).astype(np.uint16)


def _write_image(path: str, image: np.ndarray, params: Iterable[int] = ()) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, image, list(params)):
        raise OSError(f"could not write {path}")


def _progress(items: range, enabled: bool, desc: str) -> Iterable[int]:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError as err:  # optional: only the CLI shows a progress bar
        raise ImportError("progress bars need tqdm: pip install tqdm") from err
    return tqdm(items, desc=desc, unit="img")


def write_nyu_layout(out_dir: str, n_train: int, n_test: int, seed: int = 0,
                     progress: bool = False) -> dict[str, str]:
    """Render indoor samples into the BTS / AdaBins NYU v2 layout at 640x480; returns list files.

    Files: ``{train,test}/room_KKKKK/rgb_IIIII.jpg`` and ``sync_depth_IIIII.png`` (16-bit,
    millimetres, 0 = invalid), with K the scene and I the sample index.  List files
    ``nyudepthv2_{train,test}_files_with_gt.txt`` hold "rgb depth 518.8579" lines whose paths
    are relative to ``out_dir`` (BTS's are relative to each split folder), so a reader takes
    ``out_dir`` as its root for both splits.
    """
    lists = {}
    for split, n in (("train", n_train), ("test", n_test)):
        dataset = layout_dataset("nyu", split, n, seed)
        lines = []
        for i in _progress(range(n), progress, f"nyu {split}"):
            sample = dataset[i]
            folder = f"{split}/room_{i // dataset.poses_per_scene:05d}"
            rgb_rel, depth_rel = f"{folder}/rgb_{i:05d}.jpg", f"{folder}/sync_depth_{i:05d}.png"
            bgr = cv2.cvtColor(sample["image"], cv2.COLOR_RGB2BGR)
            _write_image(os.path.join(out_dir, rgb_rel), bgr, (cv2.IMWRITE_JPEG_QUALITY, 95))
            _write_image(os.path.join(out_dir, depth_rel),
                       _encode_depth(sample["depth"], sample["valid_mask"], 1000.0))
            lines.append(f"{rgb_rel} {depth_rel} {NYU_FOCAL}\n")
        lists[split] = os.path.join(out_dir, f"nyudepthv2_{split}_files_with_gt.txt")
        with open(lists[split], "w", encoding="utf-8") as handle:
            handle.writelines(lines)
    return lists


def kitti_calib_text(intrinsics: Intrinsics) -> str:
    """calib_cam_to_cam.txt content (KITTI's %e format) with P_rect_00 / P_rect_02 of a camera."""
    def fmt(values: Iterable[float]) -> str:
        return " ".join(f"{v:e}" for v in values)

    p_rect = fmt([intrinsics.fx, 0, intrinsics.cx, 0, 0, intrinsics.fy, intrinsics.cy, 0,
                  0, 0, 1, 0])
    size = fmt([intrinsics.width, intrinsics.height])
    lines = ["calib_time: 09-Jan-2012 13:57:47", "corner_dist: 9.950000e-02"]
    for cam in ("00", "02"):
        lines += [f"S_rect_{cam}: {size}", f"R_rect_{cam}: {fmt(np.eye(3).ravel())}",
                  f"P_rect_{cam}: {p_rect}"]
    return "\n".join(lines) + "\n"


def write_kitti_layout(out_dir: str, n_train: int, n_test: int, seed: int = 0,
                       progress: bool = False) -> dict[str, str]:
    """Render street samples into the KITTI raw + annotated-depth layout (1242x375).

    Images: ``raw/2011_09_26/2011_09_26_drive_DDDD_sync/image_02/data/NNNNNNNNNN.png``; depth:
    ``depth/<drive>/proj_depth/groundtruth/image_02/NNNNNNNNNN.png`` (uint16 metres * 256, 0 =
    invalid, sparse: the ``lidar_scan_mask`` pattern); ``raw/2011_09_26/calib_cam_to_cam.txt``.
    One drive per scene (train drives 0001.., test drives 5001..).  Eigen-style list files
    ``eigen_{train,test}_files_with_gt.txt``: "image (rel. raw/) depth (rel. depth/) 721.5377".
    """
    calib_path = os.path.join(out_dir, "raw", KITTI_DATE, "calib_cam_to_cam.txt")
    os.makedirs(os.path.dirname(calib_path), exist_ok=True)
    with open(calib_path, "w", encoding="utf-8") as handle:
        handle.write(kitti_calib_text(KITTI_CAMERA))
    scan = lidar_scan_mask(KITTI_CAMERA)
    lists = {}
    for split, n, first_drive in (("train", n_train, 1), ("test", n_test, 5001)):
        dataset = layout_dataset("kitti", split, n, seed)
        if n and (n - 1) // dataset.poses_per_scene >= 4999:
            raise ValueError(f"at most {4999 * dataset.poses_per_scene} {split} images")
        lines = []
        for i in _progress(range(n), progress, f"kitti {split}"):
            sample = dataset[i]
            drive = f"{KITTI_DATE}_drive_{first_drive + i // dataset.poses_per_scene:04d}_sync"
            frame = f"{i % dataset.poses_per_scene:010d}.png"
            image_rel = f"{KITTI_DATE}/{drive}/image_02/data/{frame}"
            depth_rel = f"{drive}/proj_depth/groundtruth/image_02/{frame}"
            _write_image(os.path.join(out_dir, "raw", image_rel),
                       cv2.cvtColor(sample["image"], cv2.COLOR_RGB2BGR))
            _write_image(os.path.join(out_dir, "depth", depth_rel),
                       _encode_depth(sample["depth"], sample["valid_mask"] & scan, 256.0))
            lines.append(f"{image_rel} {depth_rel} {KITTI_FOCAL}\n")
        lists[split] = os.path.join(out_dir, f"eigen_{split}_files_with_gt.txt")
        with open(lists[split], "w", encoding="utf-8") as handle:
            handle.writelines(lines)
    return lists


def main(argv: Optional[list[str]] = None) -> None:
    """CLI: render a synthetic data set in the NYU or KITTI folder layout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=("nyu", "kitti"), required=True)
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--train", type=int, default=64, help="training images")
    parser.add_argument("--test", type=int, default=16, help="test images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    writer = write_nyu_layout if args.layout == "nyu" else write_kitti_layout
    lists = writer(args.out, args.train, args.test, args.seed, progress=True)
    for split, path in lists.items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
