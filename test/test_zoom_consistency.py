"""Zoom-consistency training: rendered long-lens twins, the loss, its wiring and validation."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.synthetic import demo_trajectory, random_indoor_scene, render
from model_helpers import camera_aware_config_file
from training.config import TrainConfig
from training.data.builder import AugmentedDataset, train_transform
from training.data.synthetic import SyntheticDepthDataset
from training.losses import zoom_consistency_loss

ROOT = Path(__file__).resolve().parents[1]


def _k(i: Intrinsics) -> torch.Tensor:
    return torch.tensor([[i.fx, i.fy, i.cx, i.cy]], dtype=torch.float32)


def _map(depth: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(depth, np.float32))[None, None]


@pytest.fixture(scope="module")
def lens_pair():
    """One room through a 120 px and a 260 px lens at 128x96 (off-centre principal point)."""
    scene = random_indoor_scene(5)
    pose = demo_trajectory(scene, 8)[2]
    wide = Intrinsics(120.0, 120.0, 66.0, 45.0, 128, 96)
    tele = Intrinsics(260.0, 260.0, 66.0, 45.0, 128, 96)
    return render(scene, pose, wide)[1], render(scene, pose, tele)[1], wide, tele


def test_loss_is_near_zero_for_the_truth_and_the_log_of_a_lens_scale_error(lens_pair):
    wide_d, tele_d, wide, tele = lens_pair
    truth = zoom_consistency_loss(_map(wide_d), _map(tele_d), _k(wide), _k(tele)).item()
    assert truth < 0.3  # bilinear lookup at depth edges only (10 x RMS log error)
    scaled = zoom_consistency_loss(_map(wide_d), _map(tele_d) * 1.25, _k(wide), _k(tele)).item()
    assert scaled == pytest.approx(10 * math.log(1.25), rel=0.03)
    # the wrong lens pairing (tele treated as wide) disagrees a lot
    swapped = zoom_consistency_loss(_map(wide_d), _map(tele_d), _k(wide), _k(wide)).item()
    assert swapped > 5 * truth


def test_loss_masks_and_gradients(lens_pair):
    wide_d, tele_d, wide, tele = lens_pair
    w = _map(wide_d).requires_grad_(True)
    t = (_map(tele_d) * 1.1).requires_grad_(True)
    mask = torch.zeros_like(t, dtype=torch.bool)
    mask[..., :10, :10] = True
    bad = _map(tele_d).clone()
    bad[..., 10:, :] = 100.0  # wrong only where the mask excludes it
    masked = zoom_consistency_loss(_map(wide_d), bad * 1.1, _k(wide), _k(tele), mask).item()
    assert masked == pytest.approx(10 * math.log(1.1), rel=0.05)
    loss = zoom_consistency_loss(w, t, _k(wide), _k(tele))
    loss.backward()
    assert w.grad.abs().sum() > 0 and t.grad.abs().sum() > 0  # both lenses are pulled together
    none = zoom_consistency_loss(w, t, _k(wide), _k(tele), torch.zeros_like(mask))
    assert none.item() == 0.0
    none.backward()
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        zoom_consistency_loss(w[0], t[0], _k(wide), _k(tele))


def test_dataset_twin_is_the_same_view_through_a_longer_lens():
    kwargs = dict(size=(48, 64), focal_range=(40.0, 80.0), seed=1)
    plain = SyntheticDepthDataset("indoor", 6, **kwargs)
    paired = SyntheticDepthDataset("indoor", 6, zoom_range=(1.5, 2.5), **kwargs)
    for i in range(6):
        a, b = plain[i], paired[i]
        np.testing.assert_array_equal(a["image"], b["image"])  # the sample itself is unchanged
        twin = b["twin"]
        zoom = twin["intrinsics"].fx / b["intrinsics"].fx
        assert 1.5 <= zoom <= 2.5 and twin["intrinsics"].fy == twin["intrinsics"].fx
        assert (twin["intrinsics"].cx, twin["intrinsics"].cy) == (b["intrinsics"].cx,
                                                                  b["intrinsics"].cy)
        loss = zoom_consistency_loss(_map(b["depth"]), _map(twin["depth"]),
                                     _k(b["intrinsics"]), _k(twin["intrinsics"]))
        assert loss.item() < 0.5
    np.testing.assert_array_equal(paired[3]["twin"]["image"], paired[3]["twin"]["image"])
    with pytest.raises(ValueError, match="zoom_range"):
        SyntheticDepthDataset("indoor", 1, zoom_range=(0.5, 2.0))


def test_augmented_twin_gets_the_same_flip_and_jitter():
    from clip_depth_ros.config import get_model_config

    config = get_model_config("tiny-mirror")
    data = TrainConfig().data
    data.random_crop = False
    base = SyntheticDepthDataset("indoor", 16, size=(48, 64), seed=2, zoom_range=(1.5, 1.5))
    dataset = AugmentedDataset(base, train_transform(data, config), config, seed=4)
    flipped = 0
    for i in range(16):
        item = dataset[i]
        k, tk = item["intrinsics"], item["twin_intrinsics"]
        assert tk[0] == pytest.approx(1.5 * k[0]) and tk[2] == k[2] and tk[3] == k[3]
        height, width = config.input_hw
        unflipped_cx = base[i]["intrinsics"].scaled_to(width, height).cx
        flipped += int(abs(float(k[2]) - unflipped_cx) > 1e-3)
        assert item["twin_image"].shape == item["image"].shape
        assert item["twin_depth"].shape == item["depth"].shape
    assert 0 < flipped < 16  # the flip is drawn per sample, and the twin follows it


def test_train_config_validates_zoom_settings():
    with pytest.raises(ValueError, match="zoom_pairs"):
        TrainConfig.from_dict({"zoom_consistency": 1.0})
    with pytest.raises(ValueError, match="zoom_pairs"):
        TrainConfig.from_dict({"data": {"zoom_pairs": [0.8, 2.0]}})
    with pytest.raises(ValueError, match="zoom_consistency"):
        TrainConfig.from_dict({"zoom_consistency": -1.0})
    from training.data.builder import base_dataset

    with pytest.raises(ValueError, match="synthetic"):
        base_dataset(TrainConfig.from_dict({"data": {"kind": "folder", "root": "/x",
                                                     "zoom_pairs": [1.5, 2.0]}}).data, "train")
    val = base_dataset(TrainConfig.from_dict({"data": {"kind": "synthetic-indoor",
                                                       "zoom_pairs": [1.5, 2.0],
                                                       "val_samples": 2}}).data, "val")
    assert "twin" not in val[0]  # validation scores single views


def _train(out: Path, model: str, *extra: str) -> subprocess.CompletedProcess:
    sets = ["model=" + model, "backbone_weights=random", "batch_size=2", "data.workers=0",
            "data.train_samples=8", "data.val_samples=2", "data.render_size=[48,64]",
            "data.focal_range=[40,90]", "data.zoom_pairs=[1.4,2.2]", "warmup_steps=1",
            "log_every=1", "max_steps=2", f"out_dir={out}", *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "training.train",
                           *[a for s in sets for a in ("--set", s)]],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_training_with_zoom_consistency_runs_and_refuses_a_plain_model(tmp_path):
    cam = camera_aware_config_file(tmp_path)
    res = _train(tmp_path / "run", str(cam), "zoom_consistency=1.0")
    assert res.returncode == 0, res.stderr[-3000:]
    curve = json.loads((tmp_path / "run" / "loss_curve.json").read_text())
    assert len(curve) == 2 and all(math.isfinite(p["loss"]) for p in curve)
    # the same steps without the term give another loss: the term is in the objective
    res = _train(tmp_path / "off", str(cam), "zoom_consistency=0.0")
    assert res.returncode == 0, res.stderr[-3000:]
    off = json.loads((tmp_path / "off" / "loss_curve.json").read_text())
    assert off[0]["loss"] < curve[0]["loss"]
    res = _train(tmp_path / "plain", "tiny-mirror", "zoom_consistency=1.0")
    assert res.returncode != 0 and "not camera-aware" in res.stderr


def test_objective_zoom_term_is_zero_for_consistent_metric_maps(lens_pair, tmp_path):
    from clip_depth_ros.model import create_model
    from training.objectives import DepthObjective

    wide_d, tele_d, wide, tele = lens_pair
    model = create_model(str(camera_aware_config_file(tmp_path)), backbone_weights="random")
    objective = DepthObjective(model)
    f_c = model.config.canonical_focal_px
    # canonical maps whose metric versions (x f / f_c) are the rendered truth
    pred = torch.cat([_map(wide_d) * f_c / wide.fx, _map(tele_d) * f_c / tele.fx])
    batch = {"focal_px": torch.tensor([wide.fx, tele.fx]),
             "intrinsics": torch.cat([_k(wide), _k(tele)]),
             "valid_mask": torch.ones_like(pred, dtype=torch.bool), "n_wide": 1}
    assert objective.zoom_consistency(pred, batch, torch.device("cpu")).item() < 0.3
    pred[1] *= 1.3
    assert objective.zoom_consistency(pred, batch, torch.device("cpu")).item() == \
        pytest.approx(10 * math.log(1.3), rel=0.05)


def test_heldout_split_records_lenses_and_pattern_size_only_when_given():
    from training.package_model import heldout_split

    plain = heldout_split("synthetic-indoor", 8, 1000, [240, 320])
    assert "focal_range" not in plain and "texture_scale_m" not in plain
    aware = heldout_split("synthetic-indoor", 8, 1000, [240, 320], [180.0, 560.0], 0.3)
    assert aware["focal_range"] == [180.0, 560.0] and aware["texture_scale_m"] == 0.3
