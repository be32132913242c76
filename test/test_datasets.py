"""Dataset loaders on tiny files written in the real formats, and their robustness (the sample
transforms: test_transforms.py)."""
import json
import logging
import os

import cv2
import h5py
import numpy as np
import pytest
import torch

from clip_depth_ros.geometry import Intrinsics
from training.data import (
    NYU_INTRINSICS,
    Compose,
    FolderPairsDataset,
    KITTIEigenDataset,
    NYUFolderDataset,
    NYULabeledMatDataset,
    RandomCrop,
    RandomHorizontalFlip,
    read_kitti_calib,
)


def _rgb_left_red_right_blue(h: int, w: int) -> np.ndarray:
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2, 0] = 220  # red on the left: catches BGR / RGB swaps and mirroring
    rgb[:, w // 2:, 2] = 220
    return rgb


def _write_rgb(path, rgb: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _write_u16(path, raw: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert raw.dtype == np.uint16
    assert cv2.imwrite(str(path), raw)


def _mm(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    mm = np.random.default_rng(seed).integers(300, 9999, (h, w)).astype(np.uint16)
    mm[0, :5] = 0  # Kinect holes
    return mm


# ----------------------------------------------------------------------------- NYU (BTS layout)
def _nyu_tree(root, n: int = 3):
    """BTS/AdaBins NYU tree: scene/rgb_XXXXX.jpg + scene/sync_depth_XXXXX.png (uint16 mm)."""
    lines, depths = [], []
    for i in range(n):
        rgb_rel = f"kitchen_0028b/rgb_{i:05d}.jpg"
        depth_rel = f"kitchen_0028b/sync_depth_{i:05d}.png"
        _write_rgb(root / rgb_rel, _rgb_left_red_right_blue(48, 64))
        mm = _mm(i)
        _write_u16(root / depth_rel, mm)
        depths.append(mm)
        # BTS's train list starts paths with '/', its test list does not; one line has no focal
        prefix = "/" if i == 0 else ""
        focal = " 518.8579" if i != 2 else ""
        lines.append(f"{prefix}{rgb_rel} {prefix}{depth_rel}{focal}")
    list_file = root / "nyudepthv2_test_files_with_gt.txt"
    list_file.write_text("\n".join(lines) + "\n")
    return list_file, depths


def test_nyu_folder_reads_depth_in_metres_exactly(tmp_path):
    list_file, depths = _nyu_tree(tmp_path)
    ds = NYUFolderDataset(str(tmp_path), str(list_file))
    assert len(ds) == 3
    s = ds[1]
    assert s["image"].dtype == np.uint8 and s["image"].shape == (48, 64, 3)
    assert s["image"][:, :20, 0].mean() > 180 and s["image"][:, :20, 2].mean() < 40  # RGB order
    assert s["depth"].dtype == np.float32
    np.testing.assert_array_equal(s["depth"], depths[1].astype(np.float32) / np.float32(1000))
    np.testing.assert_array_equal(s["valid_mask"], depths[1] > 0)
    assert s["name"] == "kitchen_0028b/rgb_00001"
    # 48x64 is 640x480 / 10: default intrinsics scaled, focal from the line sets fx = fy
    k = s["intrinsics"]
    assert (k.width, k.height) == (64, 48)
    assert k.fx == k.fy == pytest.approx(518.8579)
    no_focal = ds[2]["intrinsics"]
    assert no_focal.fx == pytest.approx(51.88579) and no_focal.fy == pytest.approx(51.94696)
    assert no_focal == NYU_INTRINSICS.scaled_to(64, 48)
    assert ds[0]["name"] == "kitchen_0028b/rgb_00000"  # leading '/' handled


def test_missing_root_or_list_raises(tmp_path):
    list_file, _ = _nyu_tree(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope"):
        NYUFolderDataset(str(tmp_path / "nope"), str(list_file))
    with pytest.raises(FileNotFoundError, match="missing_list.txt"):
        NYUFolderDataset(str(tmp_path), str(tmp_path / "missing_list.txt"))
    with pytest.raises(FileNotFoundError, match="kitti_missing"):
        KITTIEigenDataset(str(tmp_path / "kitti_missing"), str(list_file))
    with pytest.raises(FileNotFoundError, match="pairs_missing"):
        FolderPairsDataset(str(tmp_path / "pairs_missing"))
    with pytest.raises(FileNotFoundError, match="labeled.mat"):
        NYULabeledMatDataset(str(tmp_path / "labeled.mat"))


def test_corrupt_and_missing_files_are_skipped_and_counted(tmp_path, caplog):
    list_file, depths = _nyu_tree(tmp_path, n=4)
    (tmp_path / "kitchen_0028b/sync_depth_00001.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    os.remove(tmp_path / "kitchen_0028b/rgb_00002.jpg")
    ds = NYUFolderDataset(str(tmp_path), str(list_file))
    with caplog.at_level(logging.WARNING, logger="training.data"):
        s = ds[1]  # 1 corrupt, 2 missing -> sample 3
        assert s["name"] == "kitchen_0028b/rgb_00003"
        np.testing.assert_array_equal(s["depth"], depths[3].astype(np.float32) / np.float32(1000))
        assert ds.skipped == 2
        ds[1]
        assert ds.skipped == 4
    logged = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(logged) == 2  # each bad file logged once
    assert any("sync_depth_00001.png" in m for m in logged)
    assert any("rgb_00002.jpg" in m for m in logged)


def test_all_unreadable_raises_after_bounded_retries(tmp_path):
    list_file, _ = _nyu_tree(tmp_path, n=3)
    for i in range(3):
        os.remove(tmp_path / f"kitchen_0028b/rgb_{i:05d}.jpg")
    ds = NYUFolderDataset(str(tmp_path), str(list_file), max_retries=10)
    with pytest.raises(RuntimeError, match="no readable sample"):
        ds[0]
    assert ds.skipped == 3  # retries bounded by the dataset size


def test_8bit_depth_png_is_rejected_as_corrupt(tmp_path):
    list_file, _ = _nyu_tree(tmp_path, n=2)
    cv2.imwrite(str(tmp_path / "kitchen_0028b/sync_depth_00000.png"), np.ones((48, 64), np.uint8))
    ds = NYUFolderDataset(str(tmp_path), str(list_file))
    assert ds[0]["name"] == "kitchen_0028b/rgb_00001" and ds.skipped == 1


# ------------------------------------------------------------------- NYU labelled .mat (v7.3)
def _write_mat73(path, datasets: dict) -> None:
    """A MATLAB v7.3 file: 512-byte user block with the MATLAB header, then HDF5."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        for key, (array, matlab_class) in datasets.items():
            dset = handle.create_dataset(key, data=array)
            dset.attrs["MATLAB_class"] = np.bytes_(matlab_class)
    header = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
              b"HDF5 schema 1.00 .")
    with open(path, "r+b") as handle:
        handle.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


def _labelled_mat(tmp_path, n: int = 5, h: int = 6, w: int = 8):
    """images as MATLAB H x W x 3 x N -> h5py N x 3 x W x H; depths H x W x N -> N x W x H."""
    rows = np.arange(h)[:, None]
    cols = np.arange(w)[None, :]
    images = np.zeros((n, h, w, 3), np.uint8)
    depths = np.zeros((n, h, w), np.float32)
    for i in range(n):
        for c in range(3):
            images[i, :, :, c] = rows * 10 + cols + 60 * c + i  # asymmetric in rows / cols
        depths[i] = 0.5 + rows * 1.0 + cols * 0.01 + i * 0.1
    path = tmp_path / "nyu_depth_v2_labeled.mat"
    _write_mat73(path, {"images": (images.transpose(0, 3, 2, 1), "uint8"),
                        "depths": (depths.transpose(0, 2, 1), "single")})
    return path, images, depths


def test_labelled_mat_orientation_and_split(tmp_path, caplog):
    path, images, depths = _labelled_mat(tmp_path)
    splits = tmp_path / "splits.mat"
    # testNdxs is a 1-based double column vector (654 x 1 in MATLAB -> 1 x 654 in h5py)
    _write_mat73(splits, {"testNdxs": (np.array([[2.0, 4.0]]), "double"),
                          "trainNdxs": (np.array([[1.0, 3.0, 5.0]]), "double")})
    ds = NYULabeledMatDataset(str(path), split="test", splits_mat=str(splits))
    assert len(ds) == 2
    s = ds[1]  # MATLAB index 4 -> python 3
    assert s["name"] == "00004"
    assert s["image"].shape == (6, 8, 3) and s["depth"].shape == (6, 8)
    np.testing.assert_array_equal(s["image"], images[3])
    np.testing.assert_array_equal(s["depth"], depths[3])
    assert s["image"][0, 1, 0] == 1 + 3 and s["image"][1, 0, 0] == 10 + 3  # rows vs columns
    assert s["intrinsics"] == NYU_INTRINSICS.scaled_to(8, 6)
    train = NYULabeledMatDataset(str(path), split="train", splits_mat=str(splits))
    assert [t["name"] for t in train] == ["00001", "00003", "00005"]
    explicit = NYULabeledMatDataset(str(path), split_indices=[0, 4])
    np.testing.assert_array_equal(explicit[1]["depth"], depths[4])
    with caplog.at_level(logging.WARNING, logger="training.data"):
        everything = NYULabeledMatDataset(str(path))
    assert len(everything) == 5 and "ALL 5 images" in caplog.text


def test_labelled_mat_v5_splits_gives_clear_error(tmp_path):
    path, _, _ = _labelled_mat(tmp_path)
    v5 = tmp_path / "splits.mat"
    header = b"MATLAB 5.0 MAT-file, Platform: PCWIN64, Created on: Thu Jun 14 12:00:00 2012"
    v5.write_bytes(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x01" + b"IM" + b"\x00" * 64)
    with pytest.raises(ValueError, match="split_indices"):
        NYULabeledMatDataset(str(path), splits_mat=str(v5))
    with pytest.raises(ValueError, match="outside"):
        NYULabeledMatDataset(str(path), split_indices=[5])


def test_labelled_mat_survives_pickling_for_workers(tmp_path):
    import pickle

    path, images, _ = _labelled_mat(tmp_path)
    ds = NYULabeledMatDataset(str(path), split_indices=[2])
    ds[0]  # opens the h5py handle
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[0]["image"], images[2])


# ------------------------------------------------------------------------------------- KITTI
# calib_cam_to_cam.txt of the KITTI raw drive 2011_09_26 ("KEY: values" lines, %e numbers).
# P_rect_00 deliberately differs from P_rect_02 here, so picking the wrong row shows up.
CALIB_LINES = [
    ("calib_time", "09-Jan-2012 13:57:47"),
    ("corner_dist", "9.950000e-02"),
    ("S_00", "1.392000e+03 5.120000e+02"),
    ("K_00", "9.842439e+02 0.000000e+00 6.900000e+02 0.000000e+00 9.808141e+02 2.331966e+02 "
             "0.000000e+00 0.000000e+00 1.000000e+00"),
    ("D_00", "-3.728755e-01 2.037299e-01 2.219027e-03 1.383707e-03 -7.233722e-02"),
    ("S_rect_00", "1.242000e+03 3.750000e+02"),
    ("P_rect_00", "7.000000e+02 0.000000e+00 6.000000e+02 0.000000e+00 0.000000e+00 "
                  "7.000000e+02 1.700000e+02 0.000000e+00 0.000000e+00 0.000000e+00 "
                  "1.000000e+00 0.000000e+00"),
    ("S_rect_02", "1.242000e+03 3.750000e+02"),
    ("R_rect_02", "9.998817e-01 1.511453e-02 -2.841595e-03 -1.511724e-02 9.998853e-01 "
                  "-9.338510e-04 2.827154e-03 9.766976e-04 9.999955e-01"),
    ("P_rect_02", "7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 "
                  "7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 "
                  "1.000000e+00 2.745884e-03"),
]
CALIB = "".join(f"{key}: {values}\n" for key, values in CALIB_LINES)

IMG_REL = "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/{:010d}.png"
DEPTH_REL = "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/{:010d}.png"


def _kitti_tree(tmp_path, calib: bool = True, focal_on_line=(True, False)):
    image_root, depth_root = tmp_path / "raw", tmp_path / "annotated"
    raws = []
    lines = []
    for k, frame in enumerate((69, 70)):
        _write_rgb(image_root / IMG_REL.format(frame), _rgb_left_red_right_blue(30, 100))
        raw = np.random.default_rng(frame).integers(0, 80 * 256, (30, 100)).astype(np.uint16)
        raw[raw < 3000] = 0  # sparse lidar ground truth
        _write_u16(depth_root / DEPTH_REL.format(frame), raw)
        raws.append(raw)
        focal = " 721.5377" if focal_on_line[k] else ""
        lines.append(f"{IMG_REL.format(frame)} {DEPTH_REL.format(frame)}{focal}")
    _write_rgb(image_root / IMG_REL.format(71), _rgb_left_red_right_blue(30, 100))
    lines.append(f"{IMG_REL.format(71)} None 721.5377")
    if calib:
        (image_root / "2011_09_26" / "calib_cam_to_cam.txt").write_text(CALIB)
    list_file = tmp_path / "eigen_test_files_with_gt.txt"
    list_file.write_text("\n".join(lines) + "\n")
    return image_root, depth_root, list_file, raws


def test_kitti_depth_and_intrinsics(tmp_path, caplog):
    image_root, depth_root, list_file, raws = _kitti_tree(tmp_path)
    with caplog.at_level(logging.WARNING, logger="training.data"):
        ds = KITTIEigenDataset(str(image_root), str(list_file), depth_root=str(depth_root))
    assert len(ds) == 2 and "no ground truth" in caplog.text  # the 'None' line is dropped
    s = ds[0]
    np.testing.assert_array_equal(s["depth"], raws[0].astype(np.float32) / np.float32(256))
    np.testing.assert_array_equal(s["valid_mask"], raws[0] > 0)
    k = s["intrinsics"]  # focal from the line, principal point from calib P_rect_02
    assert (k.fx, k.fy, k.cx, k.cy) == pytest.approx((721.5377, 721.5377, 609.5593, 172.854))
    assert (k.width, k.height) == (100, 30)
    k2 = ds[1]["intrinsics"]  # no focal on the line: all from P_rect_02
    assert (k2.fx, k2.fy, k2.cx, k2.cy) == pytest.approx((721.5377, 721.5377, 609.5593, 172.854))
    assert s["name"] == "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069"
    with_missing = KITTIEigenDataset(str(image_root), str(list_file), depth_root=str(depth_root),
                                     require_depth=False)
    assert len(with_missing) == 3 and not with_missing[2]["valid_mask"].any()


def test_kitti_without_calib(tmp_path):
    image_root, depth_root, list_file, _ = _kitti_tree(tmp_path, calib=False,
                                                       focal_on_line=(True, True))
    ds = KITTIEigenDataset(str(image_root), str(list_file), depth_root=str(depth_root))
    k = ds[0]["intrinsics"]
    assert (k.fx, k.cx, k.cy) == pytest.approx((721.5377, 49.5, 14.5))  # image centre
    image_root, depth_root, list_file, _ = _kitti_tree(tmp_path / "b", calib=False)
    with pytest.raises(ValueError, match="no focal"):
        KITTIEigenDataset(str(image_root), str(list_file), depth_root=str(depth_root))


def test_read_kitti_calib(tmp_path):
    path = tmp_path / "calib_cam_to_cam.txt"
    path.write_text(CALIB)
    calib = read_kitti_calib(str(path))
    assert "calib_time" not in calib and calib["S_00"].tolist() == [1392.0, 512.0]
    assert calib["P_rect_02"].reshape(3, 4)[1, 2] == pytest.approx(172.854)


# ------------------------------------------------------------------------------ folder pairs
def test_folder_pairs_png_and_npy(tmp_path, caplog):
    _write_rgb(tmp_path / "rgb" / "a.png", _rgb_left_red_right_blue(20, 30))
    mm = _mm(5, 20, 30)
    _write_u16(tmp_path / "depth" / "a.png", mm)
    _write_rgb(tmp_path / "rgb" / "b.jpg", _rgb_left_red_right_blue(10, 15))
    metres = np.random.default_rng(1).uniform(0.2, 7, (10, 15)).astype(np.float32)
    metres[2, 3] = np.nan
    np.save(tmp_path / "depth" / "b.npy", metres)
    _write_rgb(tmp_path / "rgb" / "c.png", _rgb_left_red_right_blue(10, 15))  # no depth
    k = Intrinsics(fx=30.0, fy=31.0, cx=14.5, cy=9.5, width=30, height=20)
    with caplog.at_level(logging.WARNING, logger="training.data"):
        ds = FolderPairsDataset(str(tmp_path), depth_scale=1000.0, intrinsics=k)
    assert len(ds) == 2 and "without depth" in caplog.text
    a, b = ds[0], ds[1]
    assert (a["name"], b["name"]) == ("a", "b")
    np.testing.assert_array_equal(a["depth"], mm.astype(np.float32) / np.float32(1000))
    assert a["intrinsics"] == k
    assert b["depth"][2, 3] == 0 and not b["valid_mask"][2, 3]  # NaN -> 0 / invalid
    np.testing.assert_array_equal(b["depth"][b["valid_mask"]], metres[np.isfinite(metres)])
    assert b["intrinsics"] == k.scaled_to(15, 10)


def test_folder_pairs_intrinsics_json(tmp_path):
    _write_rgb(tmp_path / "rgb" / "a.png", _rgb_left_red_right_blue(20, 30))
    _write_u16(tmp_path / "depth" / "a.png", _mm(0, 20, 30))
    with pytest.raises(ValueError, match="intrinsics"):
        FolderPairsDataset(str(tmp_path))
    (tmp_path / "intrinsics.json").write_text(json.dumps(
        {"fx": 25.0, "fy": 25.0, "cx": 15.0, "cy": 10.0, "width": 30, "height": 20}))
    assert FolderPairsDataset(str(tmp_path))[0]["intrinsics"].fx == 25.0


def test_dataset_transform_is_reproducible_under_torch_seed(tmp_path):
    list_file, _ = _nyu_tree(tmp_path)
    ds = NYUFolderDataset(str(tmp_path), str(list_file),
                          transform=Compose([RandomCrop(32, 32), RandomHorizontalFlip(0.5)]))
    torch.manual_seed(0)
    first = [ds[0]["intrinsics"] for _ in range(4)]
    torch.manual_seed(0)
    assert [ds[0]["intrinsics"] for _ in range(4)] == first
    assert len(set(first)) > 1  # the crop window does vary
