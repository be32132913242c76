"""Camera-aware metric scale: one scene seen through a 400 px and an 800 px lens.

The 800 px image shows the central half of the 400 px one at twice the magnification, so the
two predictions of the overlapping region should agree in metres.  A plain model cannot know
the lens and is off.  (A camera-aware model that agrees within 5% is issue 6's open target.
Measured medians of tele / wide over these four views: demo-mirror 0.74; fine-tuned with
training/configs/demo_mirror_camaware.yaml for 300 steps 1.40; 2400 steps with SiLog lambda
0.5, 1.33; the same with every surface pattern at 0.3 m (a metric cue) 1.30 on such rooms and
1.23 on these, although its validation over random focal lengths reached d1 0.89.)
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from clip_depth_ros.backends.torch_backend import TorchBackend
from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.synthetic import demo_trajectory, random_indoor_scene, render

WIDE = Intrinsics(400.0, 400.0, 319.5, 239.5, 640, 480)
TELE = Intrinsics(800.0, 800.0, 319.5, 239.5, 640, 480)
SCENES = (3, 11, 17, 23)


def _views():
    """(wide rgb, wide truth, tele rgb, tele truth) for a few rooms and poses."""
    for seed in SCENES:
        scene = random_indoor_scene(seed)
        pose = demo_trajectory(scene, 8)[seed % 8]
        yield (*render(scene, pose, WIDE), *render(scene, pose, TELE))


def _overlap_ratio(wide_depth: np.ndarray, tele_depth: np.ndarray) -> float:
    """Median of tele / wide over the shared field of view (tele downsampled 2x)."""
    centre = wide_depth[120:360, 160:480]
    tele_half = cv2.resize(tele_depth, (320, 240), interpolation=cv2.INTER_AREA)
    valid = np.isfinite(centre) & np.isfinite(tele_half) & (centre > 0) & (tele_half > 0)
    return float(np.median(tele_half[valid] / centre[valid]))


@pytest.fixture(scope="module")
def views():
    return list(_views())


def test_the_two_lenses_see_the_same_metres(views):
    for _, wide_truth, _, tele_truth in views:
        assert _overlap_ratio(wide_truth, tele_truth) == pytest.approx(1.0, abs=0.01)


def test_without_camera_awareness_the_lens_changes_the_metres(views):
    plain = TorchBackend(None, weights="demo-mirror")
    assert not plain.config.camera_aware_scale
    ratios = [_overlap_ratio(plain.infer(w, WIDE), plain.infer(t, TELE)) for w, _, t, _ in views]
    assert abs(float(np.median(ratios)) - 1.0) > 0.15, ratios
