"""The shipped demo models: size limit, sidecar contents, and their recorded held-out metrics."""
from __future__ import annotations

import pytest

from clip_depth_ros.config import BUNDLED_WEIGHTS_DIR, resolve_weights
from clip_depth_ros.weights import read_sidecar

NAMES = ("demo-mirror", "demo-mirror-camaware")


@pytest.mark.parametrize("name", NAMES)
def test_demo_weights_are_bundled_small_and_documented(name):
    weights = BUNDLED_WEIGHTS_DIR / f"{name}.safetensors"
    assert weights.is_file()
    assert weights.stat().st_size <= 20 * 1024 * 1024
    meta = read_sidecar(weights)
    assert meta["config"]["name"] == name
    assert "training.train" in meta["metadata"]["command"]
    assert meta["metadata"]["train_config"]["data"]["kind"] == "synthetic-indoor"
    assert resolve_weights(name) == str(weights)


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
