"""Synthetic dataset and the NYU / KITTI folder writers: determinism, masks, file formats."""
import os
import re

import cv2
import numpy as np
import pytest

from training.data.synthetic import (
    KITTI_CAMERA,
    NYU_CAMERA,
    SyntheticDepthDataset,
    layout_dataset,
    lidar_scan_mask,
    main,
    write_kitti_layout,
    write_nyu_layout,
)


def _assert_same_sample(a, b):
    assert a["name"] == b["name"] and a["intrinsics"] == b["intrinsics"]
    for key in ("image", "depth", "valid_mask"):
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("kind", ["indoor", "street"])
def test_same_index_same_sample(kind):
    size = (48, 64) if kind == "indoor" else (48, 160)
    dataset = SyntheticDepthDataset(kind, 20, size=size, seed=3)
    again = SyntheticDepthDataset(kind, 20, size=size, seed=3)
    for index in (0, 9, 19):
        _assert_same_sample(dataset[index], again[index])
    _assert_same_sample(dataset[-1], dataset[19])
    assert not np.array_equal(dataset[0]["depth"], dataset[1]["depth"])  # another pose
    other_seed = SyntheticDepthDataset(kind, 20, size=size, seed=4)
    assert not np.array_equal(dataset[0]["image"], other_seed[0]["image"])
    with pytest.raises(IndexError):
        dataset[20]


def test_sample_contract_and_default_intrinsics():
    sample = SyntheticDepthDataset("indoor", 4, size=(60, 80))[2]
    assert sample["image"].shape == (60, 80, 3) and sample["image"].dtype == np.uint8
    assert sample["depth"].shape == (60, 80) and sample["depth"].dtype == np.float32
    assert sample["valid_mask"].dtype == bool
    np.testing.assert_array_equal(sample["valid_mask"], sample["depth"] > 0)
    assert sample["valid_mask"].all()  # a closed room has depth everywhere
    intrinsics = sample["intrinsics"]
    assert intrinsics.fx == pytest.approx(518.8579 * 80 / 640) == intrinsics.fy
    street = SyntheticDepthDataset("street", 2)[0]["intrinsics"]
    assert street == KITTI_CAMERA and street.fx == pytest.approx(721.5377)


def test_sky_is_invalid_in_the_dataset():
    dataset = SyntheticDepthDataset("street", 6, size=(48, 160), seed=1)
    for index in range(len(dataset)):
        _, raw, _ = dataset.render(index)
        sample = dataset[index]
        sky = np.isposinf(raw)
        assert sky.any()
        assert (sample["depth"][sky] == 0).all() and not sample["valid_mask"][sky].any()
        np.testing.assert_array_equal(sample["valid_mask"], sample["depth"] > 0)
        assert sample["depth"].max() <= dataset.max_depth


def test_focal_range_draws_a_focal_per_sample():
    dataset = SyntheticDepthDataset("indoor", 8, size=(48, 64), focal_range=(30.0, 90.0))
    focals = [dataset[i]["intrinsics"].fx for i in range(8)]
    assert all(30.0 <= f <= 90.0 for f in focals) and len(set(focals)) == 8
    assert all(dataset[i]["intrinsics"].fy == focals[i] for i in range(8))
    assert dataset[0]["intrinsics"].cx == SyntheticDepthDataset("indoor", 1, size=(48, 64))[0][
        "intrinsics"].cx
    with pytest.raises(ValueError, match="focal_range"):
        SyntheticDepthDataset("indoor", 1, focal_range=(10.0, 5.0))


def _list_lines(path):
    with open(path, encoding="utf-8") as handle:
        return [line.split() for line in handle if line.strip()]


def test_nyu_layout_round_trips(tmp_path):
    lists = write_nyu_layout(str(tmp_path), n_train=2, n_test=1, seed=5)
    assert sorted(os.path.basename(p) for p in lists.values()) == [
        "nyudepthv2_test_files_with_gt.txt", "nyudepthv2_train_files_with_gt.txt"]
    for split, n in (("train", 2), ("test", 1)):
        lines = _list_lines(lists[split])
        assert len(lines) == n
        dataset = layout_dataset("nyu", split, n, seed=5)
        for i, (rgb_rel, depth_rel, focal) in enumerate(lines):
            assert rgb_rel.startswith(f"{split}/") and re.search(r"/rgb_\d{5}\.jpg$", rgb_rel)
            assert re.search(r"/sync_depth_\d{5}\.png$", depth_rel) and focal == "518.8579"
            image = cv2.imread(str(tmp_path / rgb_rel), cv2.IMREAD_COLOR)
            assert image.shape == (480, 640, 3)
            depth_png = cv2.imread(str(tmp_path / depth_rel), cv2.IMREAD_UNCHANGED)
            assert depth_png.dtype == np.uint16 and depth_png.shape == (480, 640)
            sample = dataset[i]
            assert sample["intrinsics"] == NYU_CAMERA
            expected_mm = np.round(sample["depth"].astype(np.float64) * 1000)
            np.testing.assert_array_equal(depth_png, expected_mm)
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(int)
            assert np.abs(rgb - sample["image"]).mean() < 4  # JPEG, quality 95


def test_kitti_layout_round_trips(tmp_path):
    lists = write_kitti_layout(str(tmp_path), n_train=1, n_test=1, seed=2)
    calib_path = tmp_path / "raw" / "2011_09_26" / "calib_cam_to_cam.txt"
    calib = {}
    for line in calib_path.read_text().splitlines():
        key, _, rest = line.partition(":")
        if key.startswith(("P_rect", "S_rect")):
            assert re.fullmatch(r"( -?\d\.\d{6}e[+-]\d\d)+", rest)  # KITTI's %e format
            calib[key] = np.array([float(v) for v in rest.split()])
    p_rect = calib["P_rect_02"].reshape(3, 4)
    np.testing.assert_allclose(p_rect[:, :3], KITTI_CAMERA.matrix(), rtol=1e-6)
    for split in ("train", "test"):
        (image_rel, depth_rel, focal), = _list_lines(lists[split])
        assert os.path.basename(lists[split]) == f"eigen_{split}_files_with_gt.txt"
        assert re.fullmatch(r"2011_09_26/2011_09_26_drive_\d{4}_sync/image_02/data/\d{10}\.png",
                            image_rel)
        assert re.fullmatch(r"2011_09_26_drive_\d{4}_sync/proj_depth/groundtruth/image_02/"
                            r"\d{10}\.png", depth_rel)
        assert float(focal) == pytest.approx(721.5377)
        image = cv2.imread(str(tmp_path / "raw" / image_rel), cv2.IMREAD_UNCHANGED)
        assert image.shape == (375, 1242, 3)
        code = cv2.imread(str(tmp_path / "depth" / depth_rel), cv2.IMREAD_UNCHANGED)
        assert code.dtype == np.uint16 and code.shape == (375, 1242)
        sample = layout_dataset("kitti", split, 1, seed=2)[0]
        np.testing.assert_array_equal(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), sample["image"])
        kept = code > 0
        assert 0.01 < kept.mean() < 0.10  # sparse, like projected LiDAR
        assert sample["valid_mask"][kept].all()
        assert np.abs(code[kept] / 256.0 - sample["depth"][kept]).max() <= 1 / 256
    train_image = _list_lines(lists["train"])[0][0]
    assert train_image != _list_lines(lists["test"])[0][0]  # separate drives


def test_lidar_scan_mask_is_sparse_scanlines():
    mask = lidar_scan_mask(KITTI_CAMERA)
    assert 0.03 < mask.mean() < 0.08
    assert not mask[:100].any()  # beams reach only 2 deg above the horizon (row ~148)
    rows = np.flatnonzero(mask[:, int(KITTI_CAMERA.cx)] | mask[:, int(KITTI_CAMERA.cx) + 1])
    assert len(rows) > 30 and np.diff(rows).min() >= 3  # separate scanlines


def test_cli_writes_a_layout(tmp_path, capsys):
    main(["--layout", "nyu", "--out", str(tmp_path), "--train", "1", "--test", "1",
          "--seed", "1"])
    for line in (_list_lines(tmp_path / "nyudepthv2_train_files_with_gt.txt")
                 + _list_lines(tmp_path / "nyudepthv2_test_files_with_gt.txt")):
        assert (tmp_path / line[0]).is_file() and (tmp_path / line[1]).is_file()
    assert "nyudepthv2_train_files_with_gt.txt" in capsys.readouterr().out
