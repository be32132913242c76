"""The trust accuracy benchmark's measures (the numbers in the README's trust tables)."""
from __future__ import annotations

import json

import numpy as np

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
    assert "median-scaled: AUSE" in capsys.readouterr().out
