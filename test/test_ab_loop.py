"""benchmarks.ab_loop: the interleaved before/after closed loop (its arithmetic and its
command line; the live run itself is a benchmark, BENCHMARKS.md has its numbers)."""
from __future__ import annotations

import math

import pytest

from clip_depth_ros.benchmarks import ab_loop


def _block(fps: float, frames: int = 50, lost: int = 0) -> dict:
    return {"frames": frames, "lost": lost, "seconds": (frames - lost) / fps, "fps": fps}


def test_pooled_rate_sums_frames_and_seconds():
    # 50 frames at 10/s (5 s) + 50 at 50/s (1 s): 100 frames in 6 s, not the mean 30/s
    assert ab_loop.pooled_rate([_block(10.0), _block(50.0)]) == pytest.approx(100 / 6)
    assert ab_loop.pooled_rate([_block(10.0, lost=10)]) == pytest.approx(10.0)


def test_summary_ratio_and_interval():
    base = [_block(f) for f in (20.0, 25.0, 18.0, 22.0, 30.0, 21.0)]
    same_ratio = ab_loop.summarise(base, [_block(1.3 * b["fps"]) for b in base])
    assert same_ratio["ratio"] == pytest.approx(1.3)
    assert same_ratio["median_block_ratio"] == pytest.approx(1.3)
    assert same_ratio["ratio_90ci"] == pytest.approx([1.3, 1.3])
    noisy = ab_loop.summarise(base, [_block(b["fps"] * r) for b, r in
                                     zip(base, (1.1, 1.5, 1.2, 1.4, 1.25, 1.35))])
    lo, hi = noisy["ratio_90ci"]
    assert lo < noisy["ratio"] < hi and 1.1 <= lo and hi <= 1.5
    assert noisy["block_ratios"] == pytest.approx([1.1, 1.5, 1.2, 1.4, 1.25, 1.35])
    # the same seed gives the same interval
    again = ab_loop.summarise(base, [_block(b["fps"] * r) for b, r in
                                     zip(base, (1.1, 1.5, 1.2, 1.4, 1.25, 1.35))])
    assert again["ratio_90ci"] == noisy["ratio_90ci"]


def test_summary_with_a_dead_block():
    result = ab_loop.summarise([_block(10.0), {"frames": 50, "lost": 50, "seconds": 500.0,
                                               "fps": 0.0}], [_block(12.0), _block(12.0)])
    assert math.isnan(result["block_ratios"][1]) and result["lost"] == 50
    assert result["median_block_ratio"] == pytest.approx(1.2)


@pytest.mark.parametrize("argv,message", [
    (["--baseline-root", "/nonexistent"], "no clip_depth_ros/ros/main.py"),
    (["--baseline-root", ".", "--blocks", "1"], "--blocks must be >= 2"),
    (["--baseline-root", ".", "--param", "backend=onnxruntime"], "NAME:=VALUE"),
    (["--baseline-root", ".", "--params-file", "/nonexistent.yaml"], "no such file"),
])
def test_user_mistakes_are_one_line_exit_2(argv, message, capsys, monkeypatch):
    from pathlib import Path
    monkeypatch.chdir(Path(ab_loop.__file__).resolve().parents[2])  # the checkout's root
    assert ab_loop.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ab_loop: error:") and message in err[0]


def test_a_baseline_checkout_without_its_params_file(tmp_path, capsys):
    (tmp_path / "clip_depth_ros" / "ros").mkdir(parents=True)
    (tmp_path / "clip_depth_ros" / "ros" / "main.py").write_text("")
    assert ab_loop.main(["--baseline-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--baseline-params-file" in err[0] and "config/depth.yaml" in err[0]
