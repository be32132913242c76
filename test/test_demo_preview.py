"""The demo's preview.png carries a colour bar in metres (issue 13 item 14): the picture a
newcomer looks at first says what its colours mean, on the robust range of the scene."""
from __future__ import annotations

import numpy as np

from clip_depth_ros.colorize import colorize_depth, with_colorbar


def test_preview_strip_has_a_colour_bar_in_metres():
    from clip_depth_ros.ros.demo import preview_strip
    rng = np.random.default_rng(0)
    h, w = 96, 128
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    truth = np.linspace(2.0, 4.0, h * w, dtype=np.float32).reshape(h, w)
    pred = truth * 1.1
    strip = preview_strip([(rgb, pred, truth)], 2.0, 4.0)
    assert strip.shape[0] == h and strip.shape[1] > 3 * w  # tiles + the bar
    tiles = strip[:, :3 * w]
    framed = with_colorbar(tiles, 2.0, 4.0)
    np.testing.assert_array_equal(strip, framed)
    # the truth tile (below its label) is coloured on the bar's scale
    np.testing.assert_array_equal(tiles[40:, 2 * w:], colorize_depth(truth, 2.0, 4.0)[40:])


def test_preview_adds_a_confidence_column_when_the_node_published_confidence():
    from clip_depth_ros.ros.demo import preview_strip
    h, w = 96, 128
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    truth = np.full((h, w), 3.0, dtype=np.float32)
    confidence = np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))
    confidence[:, :4] = np.nan  # invalid depth: no confidence, shown black
    strip = preview_strip([(rgb, truth, truth, confidence)], 2.0, 4.0)
    assert strip.shape[1] > 4 * w  # image | depth | confidence | truth + the bar
    column = strip[40:, 2 * w:3 * w, 0].astype(int)
    assert (column[:, :4] == 0).all() and column[:, -1].min() >= 250
    assert (np.diff(column[:, 4:].mean(axis=0)) >= 0).all()  # brighter = more confident
    # low confidences (the demo model's are near 0.02) are stretched over their own range,
    # which the label names: the ranking stays visible
    low = preview_strip([(rgb, truth, truth, confidence * 0.04)], 2.0, 4.0)
    low_column = low[40:, 2 * w:3 * w, 0].astype(int)
    assert low_column[:, -1].min() >= 250 and (low_column[:, :4] == 0).all()
    assert not np.array_equal(low[:30], strip[:30])  # the label names the range
    # the truth moves one column right, still on the bar's scale
    np.testing.assert_array_equal(strip[40:, 3 * w:4 * w], colorize_depth(truth, 2.0, 4.0)[40:])
    # frames without confidence keep the three columns
    assert preview_strip([(rgb, truth, truth, None)], 2.0, 4.0).shape[1] < 4 * w


def test_demo_errors_metric_and_structure_only():
    from clip_depth_ros.ros.demo import depth_errors
    truth = np.linspace(1.0, 5.0, 400, dtype=np.float32).reshape(20, 20)
    doubled = depth_errors(truth * 2.0, truth)
    assert doubled["d1"] == 0.0 and doubled["abs_rel"] == np.float32(1.0)
    scaled = depth_errors(truth * 2.0, truth, median_scaled=True)
    assert scaled["d1"] == 1.0 and scaled["abs_rel"] < 1e-6


def test_demo_options_are_checked_in_one_line(capsys):
    import pytest

    from clip_depth_ros.ros.demo import parse_args
    assert parse_args([]).scale_anchor == "ground_plane" and parse_args([]).camera_height == 1.4
    for bad in (["--camera-height", "7"], ["--frames", "0"], ["--scale-anchor", "lidar"],
                ["--camera-height", "2.95"]):  # above the seed-7 room's 3.02 m less 0.1
        with pytest.raises(SystemExit) as err:
            parse_args(bad)
        assert err.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_clip_depth_demo_is_the_demo_from_an_installed_wheel(tmp_path, capsys, monkeypatch):
    """`clip-depth demo` (a newcomer with the wheel has no Makefile): the demo's options, and
    a mistake is one line, exit 2, with nothing written."""
    import pytest

    from clip_depth_ros.cli import main
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["demo", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--frames" in text and "--scale-anchor" in text and "--camera-height" in text
    for bad, word in ((["--camera-height", "7"], "--camera-height"),
                      (["--rate", "0"], "--rate"), (["--output", "note.txt"], "is a file"),
                      (["--output", "note.txt/out"], "is a file")):
        (tmp_path / "note.txt").write_text("x")
        assert main(["demo", *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("clip-depth demo: error: ") and word in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["note.txt"]  # no demo_output


def test_demo_summary_reports_the_anchored_and_the_models_own_metres(tmp_path, capsys,
                                                                      monkeypatch):
    # what the node published (anchored, exact here) against the model's own metres (half
    # the truth): d1 with and without the anchor, and the factor the anchor applied
    import argparse

    from clip_depth_ros.ros import demo
    h, w = 48, 64
    truth = np.linspace(1.0, 4.0, h * w, dtype=np.float32).reshape(h, w)
    rgb = np.zeros((h, w, 3), np.uint8)
    pairs = [(rgb, truth.copy(), truth, 20.0 + i, None) for i in range(4)]
    record = {"pairs": pairs, "max_depth": 10.0, "cloud": None, "weights": "demo-mirror",
              "model": "demo-mirror", "first_output_t": 0.0, "last_output_t": 0.3,
              "n_points_msgs": 4, "intrinsics": None}
    monkeypatch.setattr(demo, "model_scale_depth", lambda rec, rgbs: [truth * 0.5 for _ in rgbs])
    args = argparse.Namespace(scale_anchor="ground_plane", camera_height=1.4, frames=5,
                              rate=10.0, width=w, height=h)
    assert demo.write_outputs(args, tmp_path, record) == 0
    import json
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["d1"] == 1.0 and summary["model_scale_d1"] == 0.0
    assert summary["anchor_scale_median"] == 2.0 and summary["frames_dropped"] == 1
    assert summary["median_scaled_d1"] == 1.0 and abs(summary["output_fps"] - 10.0) < 1e-9
    out = capsys.readouterr().out
    assert "without anchor  d1 0.000" in out and "scaled it by 2.000" in out
    assert "scale_anchor ground_plane at 1.4 m" in out
    # with scale_anchor none there is nothing to compare: no second line, no model rerun
    args.scale_anchor = "none"
    monkeypatch.setattr(demo, "model_scale_depth", None)
    assert demo.write_outputs(args, tmp_path, record) == 0
    assert "model_scale_d1" not in json.loads((tmp_path / "summary.json").read_text())
    assert "without anchor" not in capsys.readouterr().out
