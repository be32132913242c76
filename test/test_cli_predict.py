"""`clip-depth predict`: the default model, one-line errors that write nothing, output paths,
the camera of camera-aware models and a picture with a colour bar (issue 13 items 1-3, 9,
11, 14)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from clip_depth_ros.cli import main
from clip_depth_ros.predict import output_paths, read_camera_info

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 160, 120


@pytest.fixture()
def frame(tmp_path, monkeypatch) -> Path:
    """A small image in an otherwise empty working folder."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), (rng.random((HEIGHT, WIDTH, 3)) * 255).astype(np.uint8))
    return path


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _one_error_line(capsys, command: str = "predict") -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"clip-depth {command}: error: ")
    return err[0]


def test_no_model_flag_runs_the_bundled_default(frame, capsys):
    """`clip-depth predict frame.png` crashed with 'no model given'."""
    from clip_depth_ros.backends import create_backend
    assert main(["predict", str(frame)]) == 0
    assert _files(frame.parent) == {"frame.png", "depth.png", "depth.npy"}
    depth = np.load(frame.parent / "depth.npy")
    assert depth.shape == (HEIGHT, WIDTH) and depth.dtype == np.float32
    rgb = cv2.cvtColor(cv2.imread(str(frame)), cv2.COLOR_BGR2RGB)
    # the CLI's default precision is the node's: auto (bf16 on a CPU that computes it)
    expected = create_backend("torch", model=None, weights="demo-mirror",
                              precision="auto").infer(rgb)
    np.testing.assert_allclose(depth, expected, atol=1e-5)
    picture = cv2.imread(str(frame.parent / "depth.png"))
    assert picture.shape[0] == HEIGHT and picture.shape[1] > WIDTH  # + the colour bar
    assert "depth.png" in capsys.readouterr().out


@pytest.mark.parametrize("args, words", [
    (["--weights", "/nonexistent.safetensors"], ["/nonexistent.safetensors", "demo-mirror"]),
    (["--model", "foo"], ["'foo'", "demo-mirror", "tiny-mirror"]),
    (["--out", "nodir/x.png"], ["nodir", "does not exist"]),
    (["--focal-px", "0"], ["--focal-px", "> 0"]),
    (["--camera-info", "missing.yaml"], ["missing.yaml"]),
    (["--colormap", "rainbow"], ["rainbow", "turbo"]),
    (["--model", "demo-mirror-canonical"], ["backbone_weights 'random'"]),
])
def test_user_mistakes_are_one_line_exit_2_and_write_nothing(frame, capsys, args, words):
    assert main(["predict", str(frame), *args]) == 2
    line = _one_error_line(capsys)
    for word in words:
        assert word in line
    assert _files(frame.parent) == {"frame.png"}


def test_sparse_and_path_mistakes_are_one_line_exit_2_and_write_nothing(frame, capsys):
    """Found by a newcomer trial from the wheel: a sparse map of another aspect was used (a
    wrong scale), --sparse-depth without its anchor was silently ignored, and a folder given
    as the image or a file as --out's folder were reported as missing."""
    square = frame.parent / "square_mm.png"
    cv2.imwrite(str(square), np.full((100, 100), 1500, np.uint16))
    half = frame.parent / "half_mm.png"  # the image's aspect at half resolution: accepted
    cv2.imwrite(str(half), np.full((HEIGHT // 2, WIDTH // 2), 1500, np.uint16))
    (frame.parent / "folder").mkdir()
    before = _files(frame.parent)
    cases = [
        ([str(frame), "--scale-anchor", "sparse_depth", "--sparse-depth", str(square)],
         ["square_mm.png", "100x100", "aspect", f"{WIDTH}x{HEIGHT}"]),
        ([str(frame), "--sparse-depth", str(half)], ["--scale-anchor sparse_depth"]),
        (["folder"], ["'folder'", "is a folder"]),
        ([str(frame), "--out", "frame.png/x.png"], ["'frame.png'", "is a file"]),
        ([str(frame), "--scale-anchor", "sparse_depth", "--sparse-depth", "empty.npy"],
         ["empty.npy", "empty"]),
    ]
    np.save(frame.parent / "empty.npy", np.zeros((0, 4), np.float32))
    before = _files(frame.parent)
    for args, words in cases:
        assert main(["predict", *args]) == 2, args
        line = _one_error_line(capsys)
        for word in words:
            assert word in line, (word, line)
        assert _files(frame.parent) == before
    assert main(["predict", str(frame), "--scale-anchor", "sparse_depth", "--sparse-depth",
                 str(half)]) == 0
    assert "from sparse_depth" in capsys.readouterr().err


def test_cuda_without_a_gpu_is_one_line(frame, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU host
    assert main(["predict", str(frame), "--device", "cuda"]) == 2
    assert "cpu" in _one_error_line(capsys)
    assert _files(frame.parent) == {"frame.png"}


def test_unreadable_image_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.png").write_text("not an image")
    assert main(["predict", "notes.png"]) == 2
    assert "notes.png" in _one_error_line(capsys)
    assert main(["predict", "absent.png"]) == 2
    assert "absent.png" in _one_error_line(capsys)
    assert _files(tmp_path) == {"notes.png"}


def test_a_traceback_free_error_from_the_console_script(frame):
    """The real entry point: no traceback on stderr."""
    proc = subprocess.run([sys.executable, "-m", "clip_depth_ros.cli", "predict", str(frame),
                           "--weights", "/nonexistent.safetensors"], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("out, picture, npy", [
    ("result", "result.png", "result.npy"),      # no extension: it wrote result.npy, crashed
    ("./depth2", "depth2.png", "depth2.npy"),    # it wrote a hidden ".npy"
    ("d.jpg", "d.jpg", "d.npy"),
    ("d.npy", "d.png", "d.npy"),
    ("run.v2", "run.v2.png", "run.v2.npy"),
])
def test_output_paths(tmp_path, monkeypatch, out, picture, npy):
    monkeypatch.chdir(tmp_path)
    assert output_paths(out, "frame.png") == (Path(picture), Path(npy))


def test_output_into_an_existing_folder(tmp_path):
    assert output_paths(str(tmp_path), "cam/frame.png") == (tmp_path / "frame_depth.png",
                                                           tmp_path / "frame_depth.npy")


def test_out_without_extension_end_to_end(frame):
    assert main(["predict", str(frame), "--model", "tiny-mirror", "--out", "result"]) == 0
    assert _files(frame.parent) == {"frame.png", "result.png", "result.npy"}
    assert cv2.imread(str(frame.parent / "result.png")) is not None


ECHO_YAML = """\
header:
  stamp:
    sec: 1
    nanosec: 0
  frame_id: camera_color_optical_frame
height: {h}
width: {w}
distortion_model: plumb_bob
d: [0.0, 0.0, 0.0, 0.0, 0.0]
k:
- {f}
- 0.0
- {cx}
- 0.0
- {f}
- {cy}
- 0.0
- 0.0
- 1.0
r: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
p: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
binning_x: 0
---
"""

CALIBRATION_YAML = """\
image_width: {w}
image_height: {h}
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [{f}, 0, {cx}, 0, {f}, {cy}, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [{f}, 0, {cx}, 0, 0, {f}, {cy}, 0, 0, 0, 1, 0]
"""


def test_camera_info_files(tmp_path):
    echo = tmp_path / "info.yaml"
    echo.write_text(ECHO_YAML.format(w=640, h=480, f=500.0, cx=319.5, cy=239.5))
    msg = read_camera_info(str(echo))
    assert (msg.width, msg.height, msg.k[0], msg.k[4]) == (640, 480, 500.0, 500.0)
    calib = tmp_path / "ost.yaml"
    calib.write_text(CALIBRATION_YAML.format(w=640, h=480, f=510.0, cx=320, cy=240))
    msg = read_camera_info(str(calib))
    assert (msg.width, msg.p[0], msg.k[0]) == (640, 510.0, 510.0)
    as_json = tmp_path / "info.json"
    as_json.write_text(json.dumps({"width": 640, "height": 480, "K": [500, 0, 320, 0, 500, 240,
                                                                    0, 0, 1]}))
    assert read_camera_info(str(as_json)).k[0] == 500


def test_camera_aware_model_uses_the_focal_length_and_says_when_it_assumes(frame, capsys):
    """predict had no way to give a focal length and did not say it assumed the canonical
    camera; camera_info at 4x the image's size gives the same depth as its scaled fx."""
    common = ["predict", str(frame), "--weights", "demo-mirror"]
    assert main([*common, "--out", "canonical.png"]) == 0
    err = capsys.readouterr().err
    assert "canonical camera" in err and err.strip().count("\n") == 0
    assert main([*common, "--out", "focal.png", "--focal-px", "150"]) == 0
    assert "canonical" not in capsys.readouterr().err
    info = frame.parent / "info.yaml"
    info.write_text(ECHO_YAML.format(w=4 * WIDTH, h=4 * HEIGHT, f=600.0, cx=4 * WIDTH / 2 - 0.5,
                                     cy=4 * HEIGHT / 2 - 0.5))
    assert main([*common, "--out", "info.png", "--camera-info", str(info)]) == 0
    canonical, focal, from_info = (np.load(frame.parent / f"{n}.npy")
                                   for n in ("canonical", "focal", "info"))
    np.testing.assert_allclose(from_info, focal, atol=1e-4)
    assert not np.allclose(canonical, focal, atol=1e-3)  # the focal length changes the depth


def test_camera_info_of_another_image_shape_is_refused(frame, capsys):
    info = frame.parent / "info.yaml"
    info.write_text(ECHO_YAML.format(w=640, h=640, f=600.0, cx=320, cy=320))
    assert main(["predict", str(frame), "--camera-info", str(info)]) == 2
    assert "640x640" in _one_error_line(capsys)
    assert _files(frame.parent) == {"frame.png", "info.yaml"}


def test_help_describes_every_argument_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Metric depth for one image file" in text
    for option in ("--out", "--model", "--weights", "--backbone-weights", "--device",
                   "--focal-px", "--camera-info", "--colormap"):
        assert option in text
    assert text.count("(default:") >= 8 and "demo-mirror" in text


def test_argparse_mistakes_are_one_line_too(frame, capsys):
    """An invalid choice or a bad number is argparse's own error: one line, exit 2."""
    for args in (["predict", str(frame), "--scale-anchor", "imu"],
                 ["predict", str(frame), "--focal-px", "abc"], ["bogus"]):
        with pytest.raises(SystemExit) as stop:
            main(args)
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error" in err[0] and "--help" in err[0]
    assert _files(frame.parent) == {"frame.png"}
