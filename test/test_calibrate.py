"""DepthCLIP bin calibration: the least-squares fit, the written config, and the frame sources
(16-bit PNG pairs, rosbag2 topics).  Depth is built as an exact mix of the model's own bin
probabilities, so the true bins are known."""
from __future__ import annotations

import itertools
import json
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from clip_depth_ros.backends.base import preprocess
from clip_depth_ros.backends.torch_backend import TorchBackend
from clip_depth_ros.config import get_model_config
from clip_depth_ros.model import create_model
from clip_depth_ros.stamps import stamp_from_ns
from test_clipself import _stamp, write_bag
from training.calibrate import (BinFit, bag_frames, calibrate, calibrated_config, folder_frames,
                                main, nnls_normal, probabilities_at_input, write_config)
from model_helpers import random_backbone_file

B_TRUE = np.array([0.6, 0.9, 1.3, 1.8, 2.4, 3.1, 4.0])
SIZE = 64


@pytest.fixture(scope="module")
def config():
    return replace(get_model_config("tiny-depthclip"), name="tiny64-depthclip",
                   input_size=[SIZE, SIZE])


@pytest.fixture(scope="module")
def backbone(config, tmp_path_factory):
    return random_backbone_file(config, tmp_path_factory.mktemp("bb"))


@pytest.fixture(scope="module")
def model(config, backbone):
    return create_model(config, backbone_weights=backbone)


@pytest.fixture(scope="module")
def frames(model, config):
    """(rgb, depth = P b_true, P) at the model input size."""
    from training.data.synthetic import SyntheticDepthDataset
    data = SyntheticDepthDataset("indoor", 4, size=(48, 64), seed=5)
    out = []
    for i in range(len(data)):
        rgb = cv2.resize(data[i]["image"], (SIZE, SIZE))
        probs = probabilities_at_input(model, torch.from_numpy(preprocess(rgb, config)))[0]
        probs = probs.double().numpy()
        out.append((rgb, np.einsum("khw,k->hw", probs, B_TRUE).astype(np.float32), probs))
    return out


def test_nnls_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, y = rng.normal(size=(30, 4)), rng.normal(size=30)
        x = nnls_normal(a.T @ a, a.T @ y)
        best = np.inf
        for support in itertools.product([False, True], repeat=4):
            s = np.zeros(4)
            if any(support):
                s[list(support)] = np.linalg.lstsq(a[:, list(support)], y, rcond=None)[0]
            if (s >= 0).all():
                best = min(best, float(np.sum((a @ s - y) ** 2)))
        assert (x >= 0).all()
        assert np.sum((a @ x - y) ** 2) == pytest.approx(best, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("ordered", [True, False])
def test_fit_recovers_known_bins(model, frames, ordered):
    bins, report = calibrate(model, [(rgb, depth) for rgb, depth, _ in frames], ordered)
    np.testing.assert_allclose(bins, B_TRUE, rtol=1e-3)
    assert report["frames"] == 4 and report["pixels"] == 4 * SIZE * SIZE
    assert report["rmse_after_m"] < 1e-3 < report["rmse_before_m"]


def test_constraints_hold_when_truth_breaks_them(frames):
    fit = BinFit(7)
    unordered_truth = np.array([2.0, 0.5, 1.0, -0.3, 3.0, 2.5, 4.0])
    for _, _, probs in frames:
        fit.add(probs, np.einsum("khw,k->hw", probs, unordered_truth), np.ones((SIZE, SIZE), bool))
    ordered = fit.solve(min_depth=0.1, ordered=True)
    assert (np.diff(ordered) >= -1e-12).all() and ordered[0] >= 0.1 - 1e-12
    free = fit.solve(min_depth=0.1, ordered=False)
    assert (free >= 0.1 - 1e-12).all()
    assert fit.rmse(free) <= fit.rmse(ordered) + 1e-9  # fewer constraints fit at least as well


def test_written_config_loads_and_predicts(config, backbone, model, frames, tmp_path):
    bins, _ = calibrate(model, [(rgb, depth) for rgb, depth, _ in frames])
    path = write_config(calibrated_config(config, bins, "my-depthclip", backbone, "test"),
                        tmp_path / "my-depthclip.json")
    loaded = get_model_config(str(path))
    assert loaded.name == "my-depthclip" and loaded.method == "depthclip"
    np.testing.assert_allclose(loaded.depthclip.bins_m, bins, rtol=1e-5)
    assert loaded.depthclip.words == config.depthclip.words
    # the backbone file is recorded, so the path alone rebuilds the same model
    rebuilt = create_model(str(path))
    np.testing.assert_allclose(rebuilt.head.bins_m.numpy(), bins, rtol=1e-5)
    rgb, depth, _ = frames[0]
    with torch.no_grad():
        pred = rebuilt(torch.from_numpy(preprocess(rgb, config)))[0, 0].numpy()
    np.testing.assert_allclose(pred, depth, rtol=1e-3)
    # the node builds its model through create_backend -> TorchBackend(model=<path>)
    backend = TorchBackend(str(path))
    assert backend.describe()["model"] == "my-depthclip"
    np.testing.assert_allclose(backend.infer(rgb), depth, rtol=1e-3)


def _mm(depth_m: np.ndarray) -> np.ndarray:
    return np.rint(depth_m * 1000).astype(np.uint16)


def test_folder_of_16bit_png_mm_pairs(config, backbone, frames, tmp_path):
    root = tmp_path / "pairs"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    for i, (rgb, depth, _) in enumerate(frames):
        cv2.imwrite(str(root / "rgb" / f"{i:03d}.png"), rgb[..., ::-1])
        cv2.imwrite(str(root / "depth" / f"{i:03d}.png"), _mm(depth))
    read = list(folder_frames(root, frames=10))
    assert len(read) == 4
    np.testing.assert_allclose(read[1][1], _mm(frames[1][1]) / 1000.0, rtol=1e-6)
    assert np.array_equal(read[1][0], frames[1][0])
    config_path = tmp_path / "tiny64.json"
    config_path.write_text(config.to_json())
    out = tmp_path / "calibrated.json"
    assert main(["--model", str(config_path), "--backbone-weights", backbone, "--folder",
                 str(root), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["name"] == "calibrated"
    np.testing.assert_allclose(written["depthclip"]["bins_m"], B_TRUE, rtol=2e-2)


def _depth_msg(ts, stamp_s, depth_m, encoding):
    image = ts.types["sensor_msgs/msg/Image"]
    header = _stamp(ts, 0)
    header.stamp = stamp_from_ns(round(stamp_s * 1e9), ts.types["builtin_interfaces/msg/Time"])
    pixels = _mm(depth_m) if encoding == "16UC1" else depth_m.astype("<f4")
    h, w = pixels.shape
    return image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                 step=w * pixels.itemsize, data=np.frombuffer(pixels.tobytes(), np.uint8))


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_bag_frames_pair_by_stamp(config, backbone, frames, tmp_path, encoding):
    from rosbags.typesys import Stores, get_typestore
    from test_clipself import _raw_msg
    ts = get_typestore(Stores.ROS2_HUMBLE)
    images = [_raw_msg(ts, 10 + i, rgb, "rgb8") for i, (rgb, _, _) in enumerate(frames)]
    # depth 10 ms after each image, plus decoys half a second away
    depths = []
    for i, (_, depth, _) in enumerate(frames):
        depths += [_depth_msg(ts, 10 + i + 0.01, depth, encoding),
                   _depth_msg(ts, 10 + i + 0.5, np.full_like(depth, 9.0), encoding)]
    bag = write_bag(tmp_path / "rgbd", {"/color": images, "/depth": depths})
    pairs = bag_frames(bag, "/color", "/depth", frames=10)
    assert len(pairs) == 4
    for (rgb, depth), (rgb_true, depth_true, _) in zip(pairs, frames):
        assert np.array_equal(rgb, rgb_true)
        np.testing.assert_allclose(depth, depth_true, rtol=1e-3)
    out = tmp_path / "bag.json"
    assert main(["--model", "tiny-depthclip", "--backbone-weights", backbone, "--bag", str(bag),
                 "--image-topic", "/color", "--depth-topic", "/depth", "--frames", "2",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["backbone"]["pretrained"] == backbone
    with pytest.raises(ValueError, match="has no topic '/aligned_depth'.*/color"):
        bag_frames(bag, "/color", "/aligned_depth")
    with pytest.raises(ValueError, match="within 0.001 s"):
        bag_frames(bag, "/color", "/depth", max_dt=0.001)
