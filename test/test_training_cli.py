"""The training commands as a user meets them (issue 13): one-line errors with exit status 2
and nothing written, --help that lists what is accepted, a best result that survives resumes,
and named evaluation splits (export and packaging: test_training_cli_package.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clip_depth_ros.errors import ConfigError
from training.config import DATA_KINDS, TrainConfig, all_keys
from training.metrics import METRIC_KEYS

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model=tiny-mirror", "backbone_weights=random", "batch_size=4", "data.workers=0",
        "data.train_samples=16", "data.val_samples=2", "data.render_size=[48,64]",
        "warmup_steps=1", "log_every=1", "seed=3"]


def _sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def _one_error_line(err: str, prog: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0]


# ------------------------------------------------------------------ train: --set and --help
@pytest.mark.parametrize("item, words", [
    ("max_steps=abc", ["max_steps", "integer", "abc"]),
    ("batch_size=two", ["batch_size", "integer", "two"]),
    ("data.render_size=48", ["data.render_size", "list of integers"]),
    ("data.render_size=[48]", ["data.render_size", "[height, width]"]),
    ("data.kind=foo", ["data.kind", "synthetic-indoor", "folder", "foo"]),
    ("data.flip=maybe", ["data.flip", "true or false"]),
    ("lr=fast", ["lr", "number"]),
    ("flip=false", ["unknown key 'flip'", "data.flip"]),
    ("data.nope=1", ["unknown key 'data.nope'", "data.kind"]),
    ("data=3", ["section"]),
    ("max_steps", ["KEY=VALUE"]),
    ("loss=l2", ["loss", "silog"]),
])
def test_bad_set_value_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, item, words):
    from training.train import main
    out = tmp_path / "run"
    rc = main(_sets(*TINY, f"out_dir={out}", item))
    line = _one_error_line(capsys.readouterr().err, "python -m training.train")
    assert rc == 2
    for word in words:
        assert word in line, line
    assert not out.exists()


def test_bad_set_from_the_command_line_exits_2_before_creating_out_dir(tmp_path):
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "training.train",
                          *_sets(f"out_dir={out}", "batch_size=two")], cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2
    assert "batch_size" in _one_error_line(res.stderr, "python -m training.train")
    assert not out.exists()


def test_bad_value_in_a_config_file_is_one_line(tmp_path, capsys):
    from training.train import main
    config = tmp_path / "bad.yaml"
    config.write_text(f"out_dir: {tmp_path / 'run'}\nmax_steps: abc\n")
    assert main(["--config", str(config)]) == 2
    assert "max_steps" in _one_error_line(capsys.readouterr().err, "python -m training.train")
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_set_values_are_typed_lists_and_nested_keys_work():
    from training.config import load_train_config
    cfg = load_train_config(None, ["data.render_size=[48,64]", "data.kind=synthetic-street",
                                   "max_steps=5", "lr=1e-3", "init_weights=null",
                                   "model=tiny-mirror", "data.focal_range=[100,300]"])
    assert cfg.data.render_size == [48, 64] and cfg.data.kind == "synthetic-street"
    assert cfg.max_steps == 5 and cfg.lr == 1e-3 and cfg.init_weights is None
    assert cfg.data.focal_range == [100.0, 300.0]


def test_set_takes_yaml_flow_lists_as_the_config_files_write_them():
    from training.config import load_train_config
    cfg = load_train_config(None, ["data.kind=synthetic-worlds", "data.families=[hall]",
                                   "data.render_size=[48, 64]"])
    assert cfg.data.families == ["hall"] and cfg.data.render_size == [48, 64]
    cfg = load_train_config(None, ["data.kind=synthetic-worlds", "data.families=[room, corridor]"])
    assert cfg.data.families == ["room", "corridor"]
    with pytest.raises(ConfigError, match="data.families"):
        load_train_config(None, ["data.kind=synthetic-worlds", "data.families=[castle]"])


def test_train_help_lists_every_config_key_with_type_default_and_description(capsys):
    from training.train import main
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    rows = {line.split()[0]: line for line in help_text.splitlines()
            if line.startswith("  ") and line.split() and line.split()[0] in all_keys()}
    assert set(rows) == set(all_keys())
    assert "int" in rows["max_steps"] and "stop after" in rows["max_steps"]
    assert "[240, 320]" in rows["data.render_size"]
    for kind in DATA_KINDS:
        assert kind in rows["data.kind"]


def test_every_config_key_has_a_description():
    import dataclasses

    from training.config import DataConfig
    for cls in (TrainConfig, DataConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no description"


# ------------------------------------------------------------------ train: best across resumes
def _fake_validate(scores: dict[int, float], trainer_steps: list[int]):
    """validate() returning scripted abs_rel by step (the steps a run evaluates)."""
    def validate(model, dataset, device, workers=0, batch_size=8):
        step = trainer_steps[-1]
        metrics = {key: 0.5 for key in METRIC_KEYS}
        metrics.update(abs_rel=scores[step], n_images=2)
        return metrics
    return validate


def _run_leg(monkeypatch, out: Path, max_steps: int, scores: dict[int, float], capsys) -> dict:
    import training.train as train
    steps: list[int] = []
    original_step = train.Trainer._end_of_epoch

    def end_of_epoch(self):
        steps.append(self.progress["step"])
        return original_step(self)
    monkeypatch.setattr(train.Trainer, "_end_of_epoch", end_of_epoch)
    monkeypatch.setattr(train, "validate", _fake_validate(scores, steps))
    assert train.main(_sets(*TINY, f"out_dir={out}", f"max_steps={max_steps}")) == 0
    printed = capsys.readouterr().out
    return json.loads(printed[printed.index("{"):])


def test_best_survives_resumes_when_an_earlier_step_was_better(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    scores = {2: 0.30, 4: 0.50, 6: 0.40}  # step 2 is the best; 6 beats 4 but not 2
    first = _run_leg(monkeypatch, out, 2, scores, capsys)
    assert first["best"]["step"] == 2
    best_bytes = (out / "best.safetensors").read_bytes()
    # the checkpoint records its own evaluation and the best so far
    ckpt = json.loads((out / "checkpoints" / "step_0000002" / "model.json").read_text())
    assert ckpt["metadata"]["eval_step"] == 2
    assert ckpt["metadata"]["metrics"]["abs_rel"] == 0.30
    assert ckpt["metadata"]["best"]["step"] == 2
    for max_steps in (4, 6):  # two resumes, each evaluating a worse model
        result = _run_leg(monkeypatch, out, max_steps, scores, capsys)
        assert result["best"]["step"] == 2 and result["best"]["value"] == 0.30
        assert result["best"]["metric"] == "abs_rel"
        sidecar = json.loads((out / "best.json").read_text())
        assert sidecar["metadata"]["eval_step"] == 2
        assert sidecar["metadata"]["metrics"]["abs_rel"] == 0.30
        assert (out / "best.safetensors").read_bytes() == best_bytes
    # a resumed run with nothing left still reports the best
    again = _run_leg(monkeypatch, out, 6, scores, capsys)
    assert again["best"] is not None and again["best"]["step"] == 2
    progress = json.loads((out / "progress.json").read_text())
    assert [e["step"] for e in progress["evals"]] == [2, 4, 6]
    assert progress["best"]["step"] == 2


def test_a_kill_between_checkpoint_and_best_export_is_repaired_on_resume(
        tmp_path, monkeypatch, capsys):
    import training.train as train
    out = tmp_path / "run"

    def killed(folder, out_dir):
        raise KeyboardInterrupt("killed before best.safetensors was written")
    monkeypatch.setattr(train, "export_best", killed)
    with pytest.raises(KeyboardInterrupt):
        _run_leg(monkeypatch, out, 2, {2: 0.3}, capsys)
    assert not (out / "best.json").exists()
    monkeypatch.undo()
    result = _run_leg(monkeypatch, out, 2, {2: 0.3}, capsys)  # nothing left to train
    assert result["best"]["step"] == 2
    assert json.loads((out / "best.json").read_text())["metadata"]["eval_step"] == 2
    assert (out / "best.safetensors").is_file()


def test_a_run_checkpointed_before_best_was_recorded_keeps_its_best_json(
        tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _run_leg(monkeypatch, out, 2, {2: 0.30}, capsys)
    # what the old trainer left: a checkpoint saved before the best was set
    progress_file = out / "checkpoints" / "step_0000002" / "progress.json"
    progress = json.loads(progress_file.read_text())
    progress_file.write_text(json.dumps({**progress, "best": None}))
    best_bytes = (out / "best.safetensors").read_bytes()
    result = _run_leg(monkeypatch, out, 4, {2: 0.30, 4: 0.50}, capsys)
    assert result["best"]["step"] == 2
    assert (out / "best.safetensors").read_bytes() == best_bytes


# ------------------------------------------------------------------ evaluate
def test_evaluate_unknown_data_kind_lists_the_kinds(tmp_path, capsys):
    from training.evaluate import main
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", "foo", "--out", str(tmp_path / "eval")])
    assert exit_info.value.code == 2
    line = _one_error_line(capsys.readouterr().err, "python -m training.evaluate")
    assert "foo" in line and all(kind in line for kind in DATA_KINDS)
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("args, words", [
    (["--model", "no-such-model"], ["no-such-model"]),
    (["--weights", "/nonexistent.safetensors"], ["/nonexistent.safetensors"]),
    (["--weights", "demo-mirror", "--split", "heldout", "--seed", "3"],
     ["--seed", "custom", "seed 1000"]),
    (["--data", "nyu", "--split", "heldout"], ["synthetic"]),
    (["--model", "tiny-mirror", "--samples", "0"], ["--samples"]),
    (["--model", "tiny-mirror", "--families", "hall"], ["--families", "synthetic-worlds"]),
    (["--model", "tiny-mirror", "--data", "synthetic-worlds", "--scale-anchor", "ground_plane",
      "--camera-height-m", "1.5"], ["--camera-height-m", "each carry"]),
    (["--model", "tiny-mirror", "--data", "synthetic-worlds", "--families", "castle"],
     ["castle", "hall"]),
    (["--data", "nyu", "--root", "/no/such/nyu", "--list", "/no/list.txt",
      "--model", "tiny-mirror", "--backbone-weights", "random"], ["not found"]),
])
def test_evaluate_user_mistakes_are_one_line_and_write_nothing(tmp_path, capsys, args, words):
    from training.evaluate import main
    rc = main(args + ["--out", str(tmp_path / "eval")])
    line = _one_error_line(capsys.readouterr().err, "python -m training.evaluate")
    assert rc == 2
    for word in words:
        assert word in line, line
    assert not (tmp_path / "eval").exists()


def test_evaluate_help_lists_the_kinds_and_the_splits(capsys):
    from training.evaluate import main
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "see DataConfig" not in text
    for kind in DATA_KINDS:
        assert kind in text
    assert "heldout" in text and "custom" in text and "seed 1000" in text


def test_default_heldout_split_comes_from_the_sidecar_else_the_training_lenses():
    from training.splits import default_heldout
    recorded = {"metadata": {"heldout_eval": {"split": {
        "data": "synthetic-indoor", "samples": 8, "seed": 1000, "render_size": [48, 64],
        "crop": "none", "flip_tta": False, "median_scaling": False}}}}
    assert default_heldout(recorded)["samples"] == 8
    assert default_heldout(recorded)["name"] == "heldout"
    trained = {"metadata": {"train_config": {"data": {"focal_range": [180, 560],
                                                      "texture_scale_m": 0.3}}}}
    split = default_heldout(trained)
    assert split["seed"] == 1000 and split["samples"] == 64
    assert split["focal_range"] == [180.0, 560.0] and split["texture_scale_m"] == 0.3
    assert "focal_range" not in default_heldout(None)
