"""The export and packaging commands as a user meets them (issue 13): one-line errors with exit
status 2 and nothing written, --help that names what is written, and packaging that neither
overwrites a bundled model silently nor keeps the old model name."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clip_depth_ros.model import create_model, save_weights
from training.config import TrainConfig


def _one_error_line(err: str, prog: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0]


# ------------------------------------------------------------------ export
def _tiny_weights(path: Path, metadata: dict | None = None) -> Path:
    torch.manual_seed(0)
    model = create_model("tiny-mirror", backbone_weights="random", for_training=True)
    return save_weights(model, path, parts=["head", "image_encoder"],
                        metadata={"backbone_weights": "random", **(metadata or {})})


@pytest.mark.parametrize("case", ["model", "weights", "suffix", "weights_sidecar", "opset"])
def test_export_user_mistakes_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, case):
    from training.export import main
    out = tmp_path / "out" / "model.onnx"
    args = {"model": ["--model", "no-such-model", "--out", str(out)],
            "weights": ["--weights", str(tmp_path / "missing.safetensors"), "--out", str(out)],
            "suffix": ["--model", "tiny-mirror", "--out", str(tmp_path / "out" / "model.json")],
            "opset": ["--model", "tiny-mirror", "--backbone-weights", "random", "--opset", "11",
                      "--out", str(out)]}
    before = None
    if case == "weights_sidecar":  # model.onnx's sidecar would be model.safetensors' own
        weights = _tiny_weights(tmp_path / "out" / "model.safetensors")
        before = (tmp_path / "out" / "model.json").read_bytes()
        args[case] = ["--weights", str(weights), "--out", str(out)]
    rc = main(args[case])
    line = _one_error_line(capsys.readouterr().err, "python -m training.export")
    assert rc == 2, line
    assert not out.exists()
    if before is None:
        assert not (tmp_path / "out").exists()
    else:
        assert (tmp_path / "out" / "model.json").read_bytes() == before
        assert "model.json" in line


def test_export_help_names_the_sidecar_it_writes(capsys):
    from clip_depth_ros.export_onnx import sidecar_path
    from training.export import main
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert sidecar_path("model.onnx").name == "model.json"
    assert "model.onnx -> model.json" in text and "weights sidecar" in text


# ------------------------------------------------------------------ package_model
def test_package_refuses_a_bundled_name_without_force(tmp_path, capsys):
    from clip_depth_ros.config import BUNDLED_WEIGHTS_DIR
    from training.package_model import main
    shipped = BUNDLED_WEIGHTS_DIR / "demo-mirror.safetensors"
    stamp = (shipped.stat().st_mtime_ns, (shipped.with_suffix(".json")).read_bytes())
    run = tmp_path / "run"
    _tiny_weights(run / "best.safetensors")
    assert main(["--run", str(run), "--name", "demo-mirror"]) == 2
    line = _one_error_line(capsys.readouterr().err, "python -m training.package_model")
    assert "demo-mirror" in line and "--force" in line
    assert (shipped.stat().st_mtime_ns, shipped.with_suffix(".json").read_bytes()) == stamp
    assert main(["--run", str(run), "--name", "../escape"]) == 2
    assert "--name" in _one_error_line(capsys.readouterr().err,
                                       "python -m training.package_model")
    assert main(["--run", str(tmp_path / "empty"), "--name", "fresh-name"]) == 2
    assert "best.safetensors" in capsys.readouterr().err


def test_packaged_model_has_its_name_and_evaluate_reproduces_its_heldout_numbers(
        tmp_path, monkeypatch, capsys):
    import training.package_model as package_model
    from training.evaluate import main as evaluate_main
    models = tmp_path / "models"
    monkeypatch.setattr(package_model, "BUNDLED_WEIGHTS_DIR", models)
    run = tmp_path / "run"
    _tiny_weights(run / "best.safetensors",
                  {"train_config": TrainConfig().to_dict(), "command": "python -m training.train"})
    split = ["--samples", "2", "--render-size", "48", "64"]
    assert package_model.main(["--run", str(run), "--name", "my-tiny", *split]) == 0
    target = models / "my-tiny.safetensors"
    from clip_depth_ros.weights import read_sidecar
    sidecar = read_sidecar(target)
    assert sidecar["config"]["name"] == "my-tiny"
    assert create_model(weights=str(target)).config.name == "my-tiny"
    from safetensors import safe_open
    with safe_open(str(target), framework="pt") as handle:  # the header's copy agrees
        assert json.loads(handle.metadata()["clip_depth_ros"])["config"]["name"] == "my-tiny"
    recorded = sidecar["metadata"]["heldout_eval"]
    assert recorded["split"]["name"] == "heldout" and recorded["metrics"]["split"] == "heldout"
    assert "split heldout" in capsys.readouterr().out
    # evaluate's default split is the recorded held-out one: the same numbers
    assert evaluate_main(["--weights", str(target), "--out", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "split heldout (synthetic-indoor, seed 1000, 2 images at 64x48)" in printed
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["split"] == "heldout" and metrics["split_settings"]["seed"] == 1000
    for key in ("d1", "abs_rel", "rmse"):
        assert metrics[key] == pytest.approx(recorded["metrics"][key], abs=1e-6)
    # a name already packaged is refused, and replaced with --force
    assert package_model.main(["--run", str(run), "--name", "my-tiny", *split]) == 2
    assert "--force" in capsys.readouterr().err
    assert package_model.main(["--run", str(run), "--name", "my-tiny", "--force", *split]) == 0
    assert "replacing" in capsys.readouterr().err


def test_package_on_worlds_records_the_held_out_family_and_three_views_of_each_split(
        tmp_path, monkeypatch, capsys):
    import training.package_model as package_model
    from clip_depth_ros.weights import read_sidecar
    from training.evaluate import main as evaluate_main
    monkeypatch.setattr(package_model, "BUNDLED_WEIGHTS_DIR", tmp_path / "models")
    run = tmp_path / "run"
    _tiny_weights(run / "best.safetensors",
                  {"train_config": TrainConfig().to_dict(), "command": "python -m training.train"})
    assert package_model.main(["--run", str(run), "--name", "tiny-worlds", "--data",
                               "synthetic-worlds", "--samples", "2", "--render-size", "48",
                               "64"]) == 0
    printed = capsys.readouterr().out
    assert "in_distribution" in printed and "heldout_family" in printed
    meta = read_sidecar(tmp_path / "models" / "tiny-worlds.safetensors")["metadata"]
    report = meta["generalization"]
    assert report["heldout_family"]["split"]["families"] == ["hall"]
    assert "families" not in report["in_distribution"]["split"]  # the training families
    for row in report.values():
        assert set(row) == {"split", "metric", "median_scaled", "ground_plane"}
        assert 0 <= row["ground_plane"]["anchor_held"] <= 1
        # median scaling only rescales each image: never worse in AbsRel terms by much,
        # and it is a different number from the metric one for a random model
        assert row["median_scaled"]["abs_rel"] != row["metric"]["abs_rel"]
    # evaluate names the held-out family split it was asked for
    assert evaluate_main(["--model", "tiny-mirror", "--backbone-weights", "random", "--data",
                          "synthetic-worlds", "--families", "hall", "--samples", "1",
                          "--render-size", "48", "64", "--out", str(tmp_path / "e")]) == 0
    assert "synthetic-worlds, seed 0, 1 images at 64x48, families hall" in \
        capsys.readouterr().out


def test_custom_split_is_labelled_custom(tmp_path, capsys):
    from training.evaluate import main
    assert main(["--model", "tiny-mirror", "--backbone-weights", "random", "--samples", "1",
                 "--render-size", "48", "64", "--seed", "5", "--out", str(tmp_path / "e")]) == 0
    assert "split custom (synthetic-indoor, seed 5, 1 images at 64x48)" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["split"] == "custom" and metrics["split_settings"]["seed"] == 5


@pytest.mark.parametrize("module, args", [
    ("calibrate", ["--model", "no-such-model", "--folder", "{tmp}", "--out", "{tmp}/c.json"]),
    ("clipself", ["--model", "no-such-model", "--images", "{tmp}", "--out", "{tmp}/b.st"]),
    ("lens_check", ["--weights", "{tmp}/missing.safetensors", "--plot", "{tmp}/p.png"]),
])
def test_other_training_commands_share_the_one_line_error(tmp_path, capsys, module, args):
    import importlib
    main = importlib.import_module(f"training.{module}").main
    work = tmp_path / "work"
    work.mkdir()
    rc = main([a.replace("{tmp}", str(work)) for a in args])
    line = _one_error_line(capsys.readouterr().err, f"python -m training.{module}")
    assert rc == 2 and ("no-such-model" in line or "missing.safetensors" in line)
    assert list(work.iterdir()) == []
