"""The shipped demo models: size limit, sidecar contents, and their recorded held-out metrics."""
from __future__ import annotations

import pytest

from clip_depth_ros.config import BUNDLED_WEIGHTS_DIR, resolve_weights
from clip_depth_ros.weights import read_sidecar

NAMES = ("demo-mirror",)


@pytest.mark.parametrize("name", NAMES)
def test_demo_weights_are_bundled_small_and_documented(name):
    weights = BUNDLED_WEIGHTS_DIR / f"{name}.safetensors"
    assert weights.is_file()
    assert weights.stat().st_size <= 20 * 1024 * 1024
    meta = read_sidecar(weights)
    assert meta["config"]["name"] == name
    assert "training.train" in meta["metadata"]["command"]
    assert meta["metadata"]["train_config"]["data"]["kind"] == "synthetic-worlds"
    assert resolve_weights(name) == str(weights)
    # camera-aware, with its own confidence, and its generalization on record: the
    # in-distribution held-out worlds and the held-out hall family, three views each
    config = meta["config"]
    assert config["camera_aware_scale"] and config["mirror"]["uncertainty"]
    report = meta["metadata"]["generalization"]
    assert report["heldout_family"]["split"]["families"] == ["hall"]
    for row in report.values():
        for view in ("metric", "median_scaled", "ground_plane"):
            assert 0 <= row[view]["d1"] <= 1


def test_the_retired_camera_aware_name_says_what_replaced_it():
    from clip_depth_ros.errors import ClipDepthError
    from clip_depth_ros.model.factory import resolve_model_weights
    with pytest.raises(ClipDepthError, match="demo-mirror is camera-aware"):
        resolve_model_weights(None, "demo-mirror-camaware", None)
    from training.evaluate import main  # every command goes through resolve_weights
    assert main(["--weights", "demo-mirror-camaware"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_reproduces_its_recorded_heldout_metrics(name):
    from training.package_model import evaluate_heldout
    weights = BUNDLED_WEIGHTS_DIR / f"{name}.safetensors"
    recorded = read_sidecar(weights)["metadata"]["heldout_eval"]
    split = recorded["split"]
    # the held-out scenes are not the training or validation scenes
    train_data = read_sidecar(weights)["metadata"]["train_config"]["data"]
    assert split["seed"] not in (train_data["seed"], train_data["seed"] + 7919)
    metrics = evaluate_heldout(str(weights), split)
    assert metrics["n_images"] == recorded["metrics"]["n_images"] == split["samples"]
    for key in ("d1", "abs_rel", "rmse"):
        assert metrics[key] == pytest.approx(recorded["metrics"][key], abs=2e-3), key
    assert metrics["median_scaling"] is False  # metric depth
