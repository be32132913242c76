"""`clip-depth bag` as a user meets it (issue 13 items 5, 11, 16): its defaults (the node's
model, no point clouds, the input copied along), chosen output topics, the note about a
camera-aware model without camera_info, and Ctrl-C (a finished partial bag or nothing, never a
half folder that blocks the rerun).  Bag helpers come from test_bag.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rosbags.rosbag2 import Reader

from clip_depth_ros import bag_cli
from clip_depth_ros.backends import create_backend
from clip_depth_ros.bag import convert, prepare
from clip_depth_ros.cli import build_parser, main as cli_main
from model_helpers import camera_aware_config_file
from test_bag import IMAGE_TOPIC, INFO_TOPIC, MODEL_ARGS, ROOT, one_line_error, read_bag, write_bag


def run_bag(*args: str) -> int:
    return cli_main(["bag", *map(str, args), *MODEL_ARGS])


def raw_records(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    out: dict[str, list] = {}
    with Reader(path) as reader:
        for conn, received, raw in reader.messages():
            out.setdefault(conn.topic, []).append((received, bytes(raw)))
    return out


def test_defaults_copy_the_input_and_write_no_points(tmp_path, capsys):
    """By default: depth and depth/camera_info, no clouds (16 bytes a pixel, rebuilt from
    depth + camera_info at playback), and every input record copied byte for byte."""
    src, dst = tmp_path / "in", tmp_path / "out"
    write_bag(src, "mcap", frames=3)
    assert run_bag(src, dst, "--image-topic", IMAGE_TOPIC) == 0
    assert "6 input records copied" in capsys.readouterr().out
    out, original = raw_records(dst), raw_records(src)
    assert set(out) == {IMAGE_TOPIC, INFO_TOPIC, "/cam/depth", "/cam/depth/camera_info"}
    for topic in (IMAGE_TOPIC, INFO_TOPIC):
        assert out[topic] == original[topic], topic
    with Reader(dst) as reader:  # the copied topics keep their type and definition
        copied = {c.topic: c for c in reader.connections}
    with Reader(src) as reader:
        for conn in reader.connections:
            assert (copied[conn.topic].msgtype, copied[conn.topic].digest) == \
                (conn.msgtype, conn.digest)
    assert run_bag(src, tmp_path / "bare", "--image-topic", IMAGE_TOPIC, "--no-copy-input") == 0
    assert set(read_bag(tmp_path / "bare")) == {"/cam/depth", "/cam/depth/camera_info"}


def test_help_says_why_points_are_off(capsys):
    with pytest.raises(SystemExit) as done:
        cli_main(["bag", "--help"])
    assert done.value.code == 0
    flat = " ".join(capsys.readouterr().out.split())
    assert "--points" in flat and "Off by default" in flat and "--stride 4" in flat
    for option in ("--depth-topic", "--depth-info-topic", "--points-topic", "--no-copy-input",
                   "demo-mirror"):
        assert option in flat, option


def test_output_topics_can_be_chosen(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    write_bag(src, "sqlite3", frames=2)
    assert run_bag(src, dst, "--image-topic", IMAGE_TOPIC, "--points", "--no-copy-input",
                   "--depth-topic", "/est/depth", "--depth-info-topic", "/est/info",
                   "--points-topic", "/est/cloud") == 0
    out = read_bag(dst)
    assert set(out) == {"/est/depth", "/est/info", "/est/cloud"}
    assert all(len(records) == 2 for records in out.values())


@pytest.mark.parametrize("options,needles", [
    (["--depth-topic", IMAGE_TOPIC], [IMAGE_TOPIC, "already in the input bag",
                                      "--no-copy-input"]),
    (["--depth-topic", "depth"], ["--depth-topic", "absolute"]),
    (["--depth-topic", "/x", "--depth-info-topic", "/x"], ["/x", "distinct"]),
    (["--points", "--points-topic", INFO_TOPIC], [INFO_TOPIC, "--points-topic"]),
    (["--sparse-depth-topic", "/lidar"], ["--sparse-depth-topic", "--scale-anchor sparse_depth"]),
])
def test_bad_output_topics_are_one_line_and_write_nothing(tmp_path, capsys, options, needles):
    src, dst = tmp_path / "in", tmp_path / "out"
    write_bag(src, "mcap", frames=1)
    one_line_error(capsys, run_bag(src, dst, "--image-topic", IMAGE_TOPIC, *options), *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no output, no staging


def test_missing_output_folder_is_one_line(tmp_path, capsys):
    src = tmp_path / "in"
    write_bag(src, "mcap", frames=1)
    one_line_error(capsys, run_bag(src, tmp_path / "nodir" / "out", "--image-topic",
                                   IMAGE_TOPIC), "nodir", "does not exist")
    assert not (tmp_path / "nodir").exists()


def _args(*argv: str):
    argv = ("bag",) + tuple(map(str, argv))
    return build_parser(list(argv)).parse_args(list(argv))


def test_default_model_is_the_node_default(tmp_path):
    """Without --model/--weights the bag command runs what the node runs (model_or_default)."""
    src = tmp_path / "in"
    write_bag(src, "mcap", frames=1)
    asked = {}

    def factory(name, **kwargs):
        asked.update(kwargs, backend=name)
        return create_backend("torch", model="tiny-mirror", backbone_weights="random")
    args = _args(src, tmp_path / "out", "--image-topic", IMAGE_TOPIC, "--no-progress")
    assert bag_cli.run(args, backend_factory=factory) == 0
    assert (asked["backend"], asked["model"], asked["weights"]) == ("torch", None, "demo-mirror")
    assert asked["precision"] == "auto"  # as the node's default: the backend picks
    args = _args(src, tmp_path / "out2", "--image-topic", IMAGE_TOPIC, "--no-progress",
                 "--precision", "fp32")
    assert bag_cli.run(args, backend_factory=factory) == 0
    assert asked["precision"] == "fp32"


def test_no_camera_info_says_the_camera_aware_scale_is_off(tmp_path, capsys):
    src = tmp_path / "in"
    write_bag(src, "mcap", frames=1, info="none")
    config = camera_aware_config_file(tmp_path)
    assert cli_main(["bag", str(src), str(tmp_path / "cam"), "--image-topic", IMAGE_TOPIC,
                     "--model", str(config), "--backbone-weights", "random",
                     "--no-progress"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "clip-depth bag" in line]
    assert len(err) == 1, err
    assert "no camera_info for /cam/image_raw" in err[0]
    assert "camera-aware scale is off" in err[0] and "canonical camera" in err[0]
    assert run_bag(src, tmp_path / "plain", "--image-topic", IMAGE_TOPIC) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "clip-depth bag" in line]
    assert len(err) == 1 and "writing depth only" in err[0] and "camera-aware" not in err[0]


def test_stopped_before_any_frame_leaves_nothing(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    write_bag(src, "mcap", frames=2)
    job = prepare(str(src), str(dst), IMAGE_TOPIC)
    backend = create_backend("torch", model="tiny-mirror", backbone_weights="random")
    report = convert(job, backend, progress=False, stop=lambda: True)
    assert report.interrupted and report.depth == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


# A conversion slowed to 50 ms a frame that says "frame" before each one, so the test can
# interrupt it in the middle; the real signal handling of the command is what runs.
SLOW_BAG = """
import os, sys, time
from clip_depth_ros import bag_cli
from clip_depth_ros.backends import create_backend
from clip_depth_ros.cli import build_parser

class Slow:
    def __init__(self):
        self.inner = create_backend("torch", model="tiny-mirror", backbone_weights="random")
        self.config = self.inner.config

    def infer_frame(self, *args, **kwargs):
        print("frame", flush=True)
        time.sleep(float(os.environ.get("FRAME_S", "0.05")))
        return self.inner.infer_frame(*args, **kwargs)

argv = ["bag"] + sys.argv[1:]
sys.exit(bag_cli.run(build_parser(argv).parse_args(argv), lambda name, **kw: Slow()))
"""


def _start_slow(src: Path, dst: Path, frame_s: float = 0.05) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), FRAME_S=str(frame_s))
    return subprocess.Popen([sys.executable, "-c", SLOW_BAG, str(src), str(dst),
                             "--image-topic", IMAGE_TOPIC, "--no-progress"], cwd=str(ROOT),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _after_frames(proc: subprocess.Popen, count: int) -> None:
    for _ in range(count):
        assert proc.stdout.readline().strip() == "frame", proc.stderr.read()[-2000:]


FRAMES = 60


@pytest.fixture(scope="module")
def long_bag(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("long") / "in"
    write_bag(src, "mcap", frames=FRAMES)
    return src


def test_ctrl_c_keeps_a_finished_readable_partial_bag(long_bag, tmp_path):
    dst = tmp_path / "out"
    proc = _start_slow(long_bag, dst)
    _after_frames(proc, 5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()  # (the model's own warnings come first)
    assert "interrupted after" in lines[-1] and "readable" in lines[-1], err
    assert "Traceback" not in err and "interrupted" not in "".join(lines[:-1]), err
    assert (dst / "metadata.yaml").exists()
    records = read_bag(dst)  # rosbags opens it
    done = len(records["/cam/depth"])
    assert 5 <= done < FRAMES
    assert f"({done} depth" in lines[-1]
    assert len(records[IMAGE_TOPIC]) >= done  # the input copied up to there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left


def test_second_ctrl_c_keeps_nothing_and_a_killed_run_does_not_block_the_rerun(long_bag,
                                                                               tmp_path,
                                                                               capsys):
    dst = tmp_path / "out"
    proc = _start_slow(long_bag, dst, frame_s=1.0)
    _after_frames(proc, 2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)  # both presses inside one slow frame, each seen on its own
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 130 and "nothing written" in lines[-1], err
    assert "Traceback" not in err and not dst.exists()
    assert list(tmp_path.iterdir()) == []
    proc = _start_slow(long_bag, dst)
    _after_frames(proc, 3)
    proc.kill()  # no chance to clean up: only a hidden staging folder may remain
    proc.communicate(timeout=60)
    assert not dst.exists()
    assert run_bag(long_bag, dst, "--image-topic", IMAGE_TOPIC) == 0
    assert len(read_bag(dst)["/cam/depth"]) == FRAMES
