"""NYU Depth v2, KITTI (Eigen split) and plain-folder depth datasets reading the real file formats.

Every dataset returns sample dicts {"image": uint8 HxWx3 RGB, "depth": float32 HxW metres
(0 = invalid), "valid_mask": bool HxW, "intrinsics": Intrinsics, "name": str}; see
training.data.base for the skip-unreadable-samples behaviour shared by all of them.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import replace
from typing import Any, Callable, Optional, Sequence

import numpy as np

from clip_depth_ros.geometry import Intrinsics

from .base import (DepthDataset, Sample, SampleReadError, join_rel, make_sample, read_depth_png,
                   read_list_file, read_rgb, require_dir, require_file)

logger = logging.getLogger(__name__)

# Kinect RGB intrinsics of NYU Depth v2 (toolbox camera_params.m) at 640 x 480.
NYU_INTRINSICS = Intrinsics(fx=518.8579, fy=519.4696, cx=325.5824, cy=253.7362,
                            width=640, height=480)


class NYUFolderDataset(DepthDataset):
    """NYU v2 in the BTS / AdaBins layout: list lines "rgb_rel depth_rel [focal]" under root.

    Depth is a 16-bit PNG in millimetres (depth_m = png / 1000).  Intrinsics are the NYU
    defaults (``intrinsics`` overrides them), scaled to the image size if it is not 640x480;
    a focal on the line sets fx = fy = focal (BTS lists give 518.8579).
    """

    def __init__(self, root: str, list_file: str,
                 transform: Optional[Callable[..., Any]] = None, depth_scale: float = 1000.0,
                 intrinsics: Optional[Intrinsics] = None, max_retries: int = 10) -> None:
        super().__init__(transform, max_retries)
        self.root = require_dir(root, "NYU root")
        self.depth_scale = float(depth_scale)
        self.base_intrinsics = intrinsics or NYU_INTRINSICS
        self.entries: list[tuple[str, str, Optional[float]]] = []
        no_gt = 0
        for tokens in read_list_file(list_file):
            if len(tokens) < 2 or tokens[1] == "None":
                no_gt += 1
                continue
            focal = float(tokens[2]) if len(tokens) > 2 else None
            self.entries.append((tokens[0], tokens[1], focal))
        if no_gt:
            logger.warning("%s: %d lines without a depth path skipped", list_file, no_gt)

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int) -> Sample:
        """Read RGB, depth (mm -> m) and intrinsics of one list line."""
        rgb_rel, depth_rel, focal = self.entries[index]
        rgb_path = join_rel(self.root, rgb_rel)
        image = read_rgb(rgb_path)
        depth = read_depth_png(join_rel(self.root, depth_rel), self.depth_scale)
        h, w = image.shape[:2]
        intrinsics = self.base_intrinsics.scaled_to(w, h)
        if focal is not None:
            intrinsics = replace(intrinsics, fx=focal, fy=focal)
        return make_sample(image, depth, intrinsics, os.path.splitext(rgb_rel.lstrip("/"))[0],
                           rgb_path)


def _read_matlab_indices(splits_mat: str, key: str) -> np.ndarray:
    """1-based indices stored under ``key`` in a MATLAB v7.3 (HDF5) .mat file."""
    import h5py

    require_file(splits_mat, "splits .mat file")
    if not h5py.is_hdf5(splits_mat):
        with open(splits_mat, "rb") as handle:
            header = handle.read(128)
        kind = "a MATLAB v5/v7 .mat" if header.startswith(b"MATLAB 5.0") else "not an HDF5 file"
        raise ValueError(
            f"{splits_mat} is {kind}; only MATLAB v7.3 (HDF5) files can be read without scipy. "
            "Pass split_indices= (0-based, e.g. testNdxs - 1) instead, or convert it in MATLAB/"
            "Octave: s = load('splits.mat'); save('splits_v73.mat', '-struct', 's', '-v7.3')")
    with h5py.File(splits_mat, "r") as handle:
        if key not in handle:
            raise KeyError(f"{splits_mat} has no '{key}' (keys: {sorted(handle.keys())})")
        return np.asarray(handle[key][()]).reshape(-1).astype(np.int64)


class NYULabeledMatDataset(DepthDataset):
    """The official nyu_depth_v2_labeled.mat (MATLAB v7.3 = HDF5), read lazily with h5py.

    MATLAB stores images as 480 x 640 x 3 x N and depths as 480 x 640 x N, column-major, so
    h5py sees the reversed axes: images N x 3 x W x H (uint8), depths N x W x H (float32 m).
    Sample i is images[i].transpose(2, 1, 0) -> H x W x 3 and depths[i].T -> H x W.
    Split: ``split_indices`` (0-based) or ``splits_mat`` (the official splits.mat as v7.3,
    whose testNdxs / trainNdxs are 1-based; 654 test images) or, when neither is given, all
    images with a warning.  Names are the 1-based MATLAB index, zero-padded to 5 digits.
    """

    def __init__(self, mat_path: str, split: str = "test",
                 split_indices: Optional[Sequence[int]] = None, splits_mat: Optional[str] = None,
                 transform: Optional[Callable[..., Any]] = None,
                 intrinsics: Optional[Intrinsics] = None, max_retries: int = 10) -> None:
        import h5py

        super().__init__(transform, max_retries)
        if split not in ("test", "train"):
            raise ValueError(f"split must be 'test' or 'train', got {split!r}")
        self.mat_path = require_file(mat_path, "NYU labelled .mat file")
        if not h5py.is_hdf5(mat_path):
            raise ValueError(f"{mat_path} is not MATLAB v7.3 / HDF5; the official "
                             "nyu_depth_v2_labeled.mat is, so the file is probably damaged")
        with h5py.File(mat_path, "r") as handle:
            for key in ("images", "depths"):
                if key not in handle:
                    raise KeyError(f"{mat_path} has no '{key}' dataset")
            n, channels = handle["images"].shape[:2]
            if channels != 3 or handle["depths"].shape[0] != n:
                raise ValueError(f"unexpected layout: images {handle['images'].shape}, depths "
                                 f"{handle['depths'].shape} (want N x 3 x W x H, N x W x H)")
        self.n_total = int(n)
        self.indices = self._resolve_split(split, split_indices, splits_mat)
        self.intrinsics = intrinsics or NYU_INTRINSICS
        self._file: Any = None

    def _resolve_split(self, split: str, split_indices: Optional[Sequence[int]],
                       splits_mat: Optional[str]) -> np.ndarray:
        if split_indices is not None:
            indices = np.asarray(split_indices, dtype=np.int64).reshape(-1)
        elif splits_mat is not None:
            indices = _read_matlab_indices(splits_mat, f"{split}Ndxs") - 1
        else:
            logger.warning("NYULabeledMatDataset: no split_indices or splits_mat given, using "
                           "ALL %d images (the standard test split is splits.mat testNdxs)",
                           self.n_total)
            indices = np.arange(self.n_total, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.n_total):
            raise ValueError(f"split indices outside 0..{self.n_total - 1} (0-based)")
        return indices

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"] = None  # h5py handles cannot cross into DataLoader workers
        return state

    def __len__(self) -> int:
        return int(self.indices.size)

    def load(self, index: int) -> Sample:
        """Read one image / depth pair, transposed to H x W (x 3)."""
        import h5py

        if self._file is None:
            self._file = h5py.File(self.mat_path, "r")
        i = int(self.indices[index])
        image = np.transpose(self._file["images"][i], (2, 1, 0))  # (3, W, H) -> (H, W, 3)
        depth = np.asarray(self._file["depths"][i], dtype=np.float32).T  # (W, H) -> (H, W)
        h, w = depth.shape
        return make_sample(image, depth, self.intrinsics.scaled_to(w, h), f"{i + 1:05d}",
                           self.mat_path)


def read_kitti_calib(path: str) -> dict[str, np.ndarray]:
    """Numeric entries of a KITTI calib_cam_to_cam.txt ("KEY: v1 v2 ..."), e.g. P_rect_02 (12,)."""
    values: dict[str, np.ndarray] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            key, sep, rest = line.partition(":")
            if not sep:
                continue
            try:
                values[key.strip()] = np.array([float(v) for v in rest.split()], dtype=np.float64)
            except ValueError:
                continue  # calib_time: 09-Jan-2012 13:57:47
    return values


class KITTIEigenDataset(DepthDataset):
    """KITTI raw + annotated depth, BTS Eigen list lines "image_rel depth_rel focal".

    Images are read from ``image_root`` (e.g. 2011_09_26/..._sync/image_02/data/x.png), depth
    from ``depth_root`` (e.g. ..._sync/proj_depth/groundtruth/image_02/x.png; uint16 / 256 m,
    0 = invalid).  A depth path "None" means no ground truth: such lines are dropped with a
    warning when ``require_depth`` (evaluation), else they give all-invalid depth.
    Intrinsics: fx = fy = the line's focal if given, else P_rect_0N of
    image_root/<date>/calib_cam_to_cam.txt (N from image_0N in the path); cx, cy from that
    file when it exists, else the image centre ((W - 1) / 2, (H - 1) / 2).
    """

    def __init__(self, image_root: str, list_file: str, depth_root: Optional[str] = None,
                 transform: Optional[Callable[..., Any]] = None, require_depth: bool = True,
                 max_retries: int = 10) -> None:
        super().__init__(transform, max_retries)
        self.image_root = require_dir(image_root, "KITTI image root")
        self.depth_root = require_dir(depth_root or image_root, "KITTI depth root")
        self.entries: list[tuple[str, Optional[str], Optional[float]]] = []
        no_gt = 0
        for tokens in read_list_file(list_file):
            depth_rel = tokens[1] if len(tokens) > 1 and tokens[1] != "None" else None
            focal = float(tokens[2]) if len(tokens) > 2 else None
            if depth_rel is None:
                no_gt += 1
                if require_depth:
                    continue
            self.entries.append((tokens[0], depth_rel, focal))
        if no_gt:
            logger.warning("%s: %d lines have no ground truth (depth 'None')%s", list_file,
                           no_gt, " and are skipped" if require_depth else "")
        self._calib: dict[str, Optional[dict[str, np.ndarray]]] = {}
        for image_rel, _, focal in self.entries:
            if focal is None and self._calib_for(image_rel) is None:
                raise ValueError(f"{list_file}: no focal on the line for {image_rel} and no "
                                 f"calib_cam_to_cam.txt under {self.image_root}")

    def _calib_for(self, image_rel: str) -> Optional[dict[str, np.ndarray]]:
        match = re.search(r"\d{4}_\d{2}_\d{2}", image_rel)
        if match is None:
            return None
        date = match.group(0)
        if date not in self._calib:
            path = os.path.join(self.image_root, date, "calib_cam_to_cam.txt")
            self._calib[date] = read_kitti_calib(path) if os.path.isfile(path) else None
        return self._calib[date]

    def intrinsics_for(self, image_rel: str, focal: Optional[float], width: int,
                       height: int) -> Intrinsics:
        """Intrinsics of one image from the list focal and / or the drive's calibration file."""
        camera = re.search(r"image_0(\d)", image_rel)
        calib = self._calib_for(image_rel)
        key = f"P_rect_0{camera.group(1) if camera else 2}"
        p_rect = None if calib is None else calib.get(key)
        if p_rect is not None and p_rect.size == 12:
            p = p_rect.reshape(3, 4)
            fx, fy, cx, cy = p[0, 0], p[1, 1], p[0, 2], p[1, 2]
        else:
            fx = fy = float("nan")
            cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        if focal is not None:
            fx = fy = focal
        return Intrinsics(float(fx), float(fy), float(cx), float(cy), int(width), int(height))

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int) -> Sample:
        """Read image, depth (uint16 / 256) and intrinsics of one list line."""
        image_rel, depth_rel, focal = self.entries[index]
        image_path = join_rel(self.image_root, image_rel)
        image = read_rgb(image_path)
        h, w = image.shape[:2]
        if depth_rel is None:
            depth = np.zeros((h, w), dtype=np.float32)
        else:
            depth = read_depth_png(join_rel(self.depth_root, depth_rel), 256.0)
        intrinsics = self.intrinsics_for(image_rel, focal, w, h)
        return make_sample(image, depth, intrinsics, os.path.splitext(image_rel.lstrip("/"))[0],
                           image_path)


class FolderPairsDataset(DepthDataset):
    """A plain folder: rgb/NAME.(png|jpg|jpeg) with depth/NAME.png (16-bit) or depth/NAME.npy (m).

    PNG depth is divided by ``depth_scale`` (1000 = millimetres); .npy holds float metres
    (.npy wins when both exist).  Intrinsics: the ``intrinsics`` argument, else
    root/intrinsics.json ({"fx", "fy", "cx", "cy", "width", "height"}), else ValueError;
    they are scaled to each image's size.  RGB files without depth are skipped with a warning.
    """

    IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

    def __init__(self, root: str, depth_scale: float = 1000.0,
                 intrinsics: Optional[Intrinsics] = None,
                 transform: Optional[Callable[..., Any]] = None, max_retries: int = 10) -> None:
        super().__init__(transform, max_retries)
        self.root = require_dir(root, "folder-pairs root")
        rgb_dir = require_dir(os.path.join(root, "rgb"), "rgb folder")
        depth_dir = require_dir(os.path.join(root, "depth"), "depth folder")
        self.depth_scale = float(depth_scale)
        self.intrinsics = intrinsics or self._read_intrinsics_json()
        self.pairs: list[tuple[str, str, str]] = []
        missing = []
        for file_name in sorted(os.listdir(rgb_dir)):
            stem, ext = os.path.splitext(file_name)
            if ext.lower() not in self.IMAGE_EXTENSIONS:
                continue
            candidates = [os.path.join(depth_dir, stem + e) for e in (".npy", ".png")]
            depth_path = next((c for c in candidates if os.path.isfile(c)), None)
            if depth_path is None:
                missing.append(file_name)
            else:
                self.pairs.append((stem, os.path.join(rgb_dir, file_name), depth_path))
        if missing:
            logger.warning("%s: %d RGB files without depth skipped (first: %s)", root,
                           len(missing), missing[0])

    def _read_intrinsics_json(self) -> Intrinsics:
        path = os.path.join(self.root, "intrinsics.json")
        if not os.path.isfile(path):
            raise ValueError(f"no intrinsics for {self.root}: pass intrinsics= or write {path} "
                             'with {"fx", "fy", "cx", "cy", "width", "height"}')
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return Intrinsics(float(data["fx"]), float(data["fy"]), float(data["cx"]),
                          float(data["cy"]), int(data["width"]), int(data["height"]))

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> Sample:
        """Read one RGB / depth pair."""
        name, rgb_path, depth_path = self.pairs[index]
        image = read_rgb(rgb_path)
        if depth_path.endswith(".npy"):
            try:
                depth = np.load(depth_path, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise SampleReadError(depth_path, f"cannot load .npy: {err}") from err
            if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
                raise SampleReadError(depth_path, f"expected HxW float metres, got {depth.dtype} "
                                                  f"{depth.shape}")
        else:
            depth = read_depth_png(depth_path, self.depth_scale)
        h, w = image.shape[:2]
        return make_sample(image, depth, self.intrinsics.scaled_to(w, h), name, rgb_path)
