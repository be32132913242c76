"""The trust accuracy benchmark's measures (the numbers in the README's trust tables)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.trust_accuracy import main, oracle_scale, sparsification


def test_oracle_scale_is_the_frames_median_ratio_within_the_cap():
    true = np.array([[1.0, 2.0, 4.0, 50.0]], np.float32)
    assert oracle_scale(true * 0.5, true, 10.0) == 2.0
    pred = true.copy()
    pred[0, 3] = 1.0  # beyond the cap: not counted
    assert oracle_scale(pred, true, 10.0) == 1.0
    assert oracle_scale(np.full_like(true, np.nan), true, 10.0) == 1.0


def test_sparsification_by_a_perfect_confidence_is_the_oracle_curve():
    rng = np.random.default_rng(0)
    true = rng.uniform(1, 5, (20, 20)).astype(np.float32)
    pred = true * rng.uniform(0.7, 1.3, true.shape).astype(np.float32)
    err = np.abs(pred - true) / true
    curve, oracle = sparsification(pred, true, -err, 10.0)
    assert np.allclose(curve, oracle) and curve[-1] < curve[0]
    backwards, _ = sparsification(pred, true, err, 10.0)
    assert backwards[-1] > backwards[0]  # trusting the worst pixels most: the curve rises


def test_one_view_reports_metric_and_median_scaled_confidence(tmp_path, capsys):
    out = tmp_path / "trust.json"
    assert main(["--rooms", "1", "--streets", "0", "--focals", "525", "--json", str(out)]) == 0
    result = json.loads(out.read_text())["results"][0]
    for key in ("confident_half_better", "shape_confident_half_better"):
        assert result[key] in (0.0, 1.0)
    assert abs(result["methods"]["oracle"]["median_scale"] - 1.0) < 0.01
    # issue 12's sparse target is at 0.5% of pixels: each share is its own row
    shares = [m for m in result["methods"] if m.startswith("sparse")]
    assert shares == ["sparse 0.1%", "sparse 0.5%", "sparse 1%"]
    assert "median-scaled: AUSE" in capsys.readouterr().out


def test_floor_consistency_on_the_truth_is_exact_and_sees_a_warped_floor():
    from benchmarks.floor_consistency import view_measures
    from training.data.worlds import SyntheticWorldDataset
    data = SyntheticWorldDataset(12, (120, 160), seed=3, families=("room",))
    measured = 0
    for i in range(12):
        sample = data[i]
        true = np.where(sample["valid_mask"], sample["depth"], np.nan).astype(np.float32)
        camera, height = sample["intrinsics"], sample["camera_height_m"]
        exact = view_measures(true * 0.5, true, camera, height)
        if exact is None:
            continue  # too little floor in this view
        measured += 1
        assert abs(exact["own"] - np.log(2)) < 1e-3
        assert exact["floor_bound"] < 1e-3 and exact["normal_deg"] < 0.5
        assert exact["held"] and exact["anchor"] < 0.02
        # lower rows drawn up to 30% closer: the floor disagrees with the rest of the frame
        rows = np.linspace(1.0, 0.7, true.shape[0], dtype=np.float32)[:, None]
        assert view_measures(true * rows, true, camera, height)["floor_bound"] > 0.03
        # the left side drawn up to 30% closer: the predicted floor rolls
        columns = np.linspace(0.7, 1.0, true.shape[1], dtype=np.float32)[None, :]
        assert view_measures(true * columns, true, camera, height)["normal_deg"] > 2.0
    assert measured >= 3


class _ReplayBackend:
    """Hands back given depth images in order (the temporal benchmark's measures alone)."""

    def __init__(self, depths):
        from clip_depth_ros.config import get_model_config
        self.config = get_model_config("demo-mirror")
        self._depths = iter(depths)

    def infer_frame(self, image_rgb, intrinsics=None, request=None):
        from clip_depth_ros.frame import FrameOutputs
        return FrameOutputs(depth_m=next(self._depths), intrinsics=intrinsics)


def test_temporal_measures_see_a_breathing_scale_and_a_steady_one():
    # exact depth along a walk: TAE near 0 (pixel rounding and disocclusions only), no
    # jitter; the same depth scaled by 1.1 / 0.9 on alternate frames: TAE about 20
    # (x100), jitter log(1.1 / 0.9) per frame, median scale near 1
    from benchmarks.temporal import reprojection_absrel, run_walk, walk
    frames, camera = walk("indoor", 5100, 4, 525.0)
    truths = [np.nan_to_num(true, nan=0.0).astype(np.float32) for _, true, _ in frames]
    exact = run_walk(_ReplayBackend(truths), frames, camera, "none", 0.0, 10.0)
    assert exact["tae"] < 1.5 and exact["jitter"] < 1e-6
    assert abs(exact["scale"] - 1) < 1e-6
    factors = [1.1, 0.9, 1.1, 0.9]
    breathing = run_walk(_ReplayBackend([t * f for t, f in zip(truths, factors)]), frames,
                         camera, "none", 0.0, 10.0)
    assert abs(breathing["jitter"] - np.log(1.1 / 0.9)) < 1e-3
    assert 15 < breathing["tae"] < 25
    (_, ta, pa), (_, tb, pb) = frames[0], frames[1]
    valid = np.isfinite(tb) & (tb > 0)
    assert reprojection_absrel(truths[0] * 1.2, pa, truths[1], pb, camera, valid) == \
        pytest.approx(0.2, abs=0.02)
