"""The trust options of clip-depth predict and training.evaluate (the node's names)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.synthetic import demo_trajectory, random_indoor_scene, render

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_predict_anchors_to_a_sparse_depth_png(tmp_path):
    camera = Intrinsics(525.0, 525.0, 319.5, 239.5, 640, 480)
    scene = random_indoor_scene(5007)
    rgb, true = render(scene, demo_trajectory(scene, 8)[2], camera)
    cv2.imwrite(str(tmp_path / "frame.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    sparse = np.zeros(true.shape, np.uint16)
    pick = np.random.default_rng(0).random(true.shape) < 0.01
    sparse[pick] = np.round(true[pick] * 1000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "sparse.png"), sparse[::2, ::2])  # another resolution
    plain = _run("-m", "clip_depth_ros.cli", "predict", "frame.png", "--out", "plain.png",
                 cwd=tmp_path)
    anchored = _run("-m", "clip_depth_ros.cli", "predict", "frame.png", "--out", "anchored.png",
                    "--scale-anchor", "sparse_depth", "--sparse-depth", "sparse.png",
                    "--confidence", cwd=tmp_path)
    assert plain.returncode == 0 and anchored.returncode == 0, anchored.stderr
    assert "from sparse_depth" in anchored.stderr
    valid = true > 0

    def scale(name: str) -> float:
        depth = np.load(tmp_path / name)
        return float(np.median(depth[valid] / true[valid]))
    assert abs(scale("anchored.npy") - 1) < 0.03 < abs(scale("plain.npy") - 1)
    confidence = np.load(tmp_path / "anchored_confidence.npy")
    assert confidence.shape == true.shape and np.nanmax(confidence) <= 1


def test_predict_sparse_depth_fill_keeps_the_measured_pixels(tmp_path):
    camera = Intrinsics(262.5, 262.5, 159.5, 119.5, 320, 240)
    scene = random_indoor_scene(5007)
    rgb, true = render(scene, demo_trajectory(scene, 8)[2], camera)
    cv2.imwrite(str(tmp_path / "frame.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    sparse = np.full(true.shape, np.nan, np.float32)
    pick = (np.random.default_rng(1).random(true.shape) < 0.5) & (true > 0)
    sparse[pick] = true[pick]
    np.save(tmp_path / "rgbd.npy", sparse)
    res = _run("-m", "clip_depth_ros.cli", "predict", "frame.png", "--out", "filled.png",
               "--sparse-depth", "rgbd.npy", "--sparse-depth-fill", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    depth = np.load(tmp_path / "filled.npy")
    np.testing.assert_array_equal(depth[pick], true[pick])
    assert np.isfinite(depth[~pick]).all() and not np.isin(depth[~pick], true[pick]).all()


def test_predict_anchor_mistakes_are_one_line(tmp_path):
    cv2.imwrite(str(tmp_path / "frame.png"), np.zeros((48, 64, 3), np.uint8))
    for extra in (["--scale-anchor", "sparse_depth"],
                  ["--scale-anchor", "ground_plane", "--focal-px", "60"],
                  ["--scale-anchor", "sparse_depth", "--sparse-depth", "missing.png"],
                  ["--sparse-depth-fill"], ["--sparse-depth", "frame.png"],
                  ["--scale-anchor", "sparse_depth", "--sparse-depth", "frame.png",
                   "--sparse-depth-min-points", "0"],
                  # predict writes no points: the point filters are not its options
                  ["--min-confidence", "0.5"], ["--no-edge-filter"]):
        res = _run("-m", "clip_depth_ros.cli", "predict", "frame.png", "--out", "o.png", *extra,
                   cwd=tmp_path)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.png"]


def test_evaluate_reports_the_anchored_metres(tmp_path):
    res = _run("-m", "training.evaluate", "--weights", "demo-mirror", "--samples", "3",
               "--render-size", "96", "128", "--scale-anchor", "sparse_depth",
               "--out", str(tmp_path / "ev"), cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["scale_anchor"] == "sparse_depth" and metrics["anchor_held"] == 1.0
    assert "scale anchored with sparse_depth" in res.stdout
    # rooms carry no camera height per view: ground_plane needs --camera-height-m there
    bad = _run("-m", "training.evaluate", "--weights", "demo-mirror", "--data",
               "synthetic-indoor", "--scale-anchor", "ground_plane", "--out",
               str(tmp_path / "no"), cwd=ROOT)
    assert bad.returncode == 2 and not (tmp_path / "no").exists()
    assert "--camera-height-m" in bad.stderr
