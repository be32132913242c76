"""The trainer: DDP equivalence, exact resume after SIGKILL, atomic checkpoints, evaluation."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clip_depth_ros.model import create_model

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["model=tiny-mirror", "backbone_weights=random", "batch_size=4", "data.workers=0",
          "data.train_samples=64", "data.val_samples=4", "data.render_size=[96,128]",
          "warmup_steps=2", "log_every=1", "seed=3"]
pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    # gloo and the rendezvous stay on loopback
    return dict(os.environ, PYTHONPATH=str(ROOT), MASTER_ADDR="127.0.0.1",
                GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")


def _train_cmd(out: Path, *extra: str, nproc: int = 1) -> list[str]:
    sets = [arg for item in COMMON + [f"out_dir={out}", *extra] for arg in ("--set", item)]
    if nproc == 1:
        return [sys.executable, "-m", "training.train", *sets]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(29500 + os.getpid() % 500),
            "-m", "training.train", *sets]


def _curve(out: Path) -> list[float]:
    return [p["loss"] for p in json.loads((out / "loss_curve.json").read_text())]


def test_two_process_gloo_ddp_follows_the_single_process_loss_curve(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    subprocess.run(_train_cmd(single, "max_steps=6"), check=True, env=_env(), cwd=ROOT,
                   capture_output=True, timeout=600)
    res = subprocess.run(_train_cmd(ddp, "max_steps=6", nproc=2), env=_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _curve(single), _curve(ddp)
    assert len(a) == len(b) == 6
    assert a[0] != a[-1]  # it trained
    assert b == pytest.approx(a, rel=1e-4, abs=1e-5)


def test_sigkill_mid_epoch_then_resume_continues_the_same_curve(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    extra = ("max_steps=14", "ckpt_every=4")
    subprocess.run(_train_cmd(reference, *extra), check=True, env=_env(), cwd=ROOT,
                   capture_output=True, timeout=600)
    proc = subprocess.Popen(_train_cmd(killed, *extra), env=_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = killed / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if pointer.is_file() and json.loads(pointer.read_text())["step"] >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = json.loads(pointer.read_text())["step"]
    assert step_at_kill < 14  # killed mid-run (epoch = 16 steps, so mid-epoch too)
    subprocess.run(_train_cmd(killed, *extra), check=True, env=_env(), cwd=ROOT,
                   capture_output=True, timeout=600)
    assert _curve(killed) == pytest.approx(_curve(reference), rel=1e-5, abs=1e-6)


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    from training import checkpoint as ckpt
    model = create_model("tiny-mirror", backbone_weights="random", for_training=True)
    state = {"optimizer": {"state": {}, "param_groups": []}, "scheduler": {}}
    ckpt.save_checkpoint(tmp_path, model, ["head"], state, {"step": 1, "epoch": 0}, {})

    def broken_save(path, tensors, *a, **k):  # dies after writing part of the file
        Path(path).write_bytes(b"partial")
        raise KeyboardInterrupt("killed while writing")
    monkeypatch.setattr(ckpt, "save_weights", lambda m, p, **k: broken_save(p, None))
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, model, ["head"], state, {"step": 2, "epoch": 0}, {})
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "step_0000001"
    create_model(weights=str(latest / "model.safetensors"))  # still loads
    _, progress = ckpt.load_train_state(latest)
    assert progress["step"] == 1


def test_missing_dataset_fails_at_start_naming_the_path(tmp_path):
    res = subprocess.run(_train_cmd(tmp_path / "out", "data.kind=nyu",
                                    f"data.root={tmp_path / 'no_such_nyu'}",
                                    f"data.train_list={tmp_path / 'missing.txt'}"),
                         env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "no_such_nyu" in res.stderr or "missing.txt" in res.stderr


def test_evaluate_writes_table_json_and_plots(tmp_path):
    out = tmp_path / "run"
    subprocess.run(_train_cmd(out, "max_steps=2"), check=True, env=_env(), cwd=ROOT,
                   capture_output=True, timeout=600)
    res = subprocess.run([sys.executable, "-m", "training.evaluate", "--weights",
                          str(out / "best.safetensors"), "--samples", "3",
                          "--render-size", "96", "128", "--flip-tta", "--out",
                          str(tmp_path / "eval")], env=_env(), cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "abs_rel" in res.stdout and "flip TTA on" in res.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_images"] == 3 and metrics["flip_tta"] is True
    assert 0.0 <= metrics["d1"] <= 1.0 and metrics["abs_rel"] > 0
    for plot in ("samples.png", "error_vs_depth.png"):
        assert (tmp_path / "eval" / plot).stat().st_size > 1000


def test_best_checkpoint_sidecar_records_command_config_and_metrics(tmp_path):
    out = tmp_path / "run"
    subprocess.run(_train_cmd(out, "max_steps=2"), check=True, env=_env(), cwd=ROOT,
                   capture_output=True, timeout=600)
    sidecar = json.loads((out / "best.json").read_text())
    assert sidecar["config"]["name"] == "tiny-mirror"
    assert sidecar["metadata"]["train_config"]["max_steps"] == 2
    assert "training.train" in sidecar["metadata"]["command"] or "train" in \
        sidecar["metadata"]["command"]
    assert "abs_rel" in sidecar["metadata"]["metrics"]
    assert torch.isfinite(torch.tensor(sidecar["metadata"]["metrics"]["abs_rel"]))


def test_moa_trains_through_the_same_trainer_with_its_composite_loss(tmp_path):
    out = tmp_path / "moa"
    res = subprocess.run(_train_cmd(out, "model=tiny-moa", "max_steps=3"), env=_env(),
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    curve = _curve(out)
    assert len(curve) == 3 and all(v > 0 for v in curve)
    sidecar = json.loads((out / "best.json").read_text())
    # adapters and the last blocks are trained, so the image encoder is saved with the head
    assert sidecar["config"]["method"] == "moa"
    assert set(sidecar["parts"]) == {"head", "image_encoder"}


def test_depthclip_zero_shot_goes_through_the_same_evaluation(tmp_path):
    res = subprocess.run([sys.executable, "-m", "training.evaluate", "--model",
                          "tiny-depthclip", "--backbone-weights", "random", "--samples", "2",
                          "--render-size", "96", "128", "--out", str(tmp_path / "zs")],
                         env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((tmp_path / "zs" / "metrics.json").read_text())
    assert metrics["model"] == "tiny-depthclip" and metrics["n_images"] == 2


def test_init_weights_fine_tune_into_a_named_variant_config(tmp_path):
    # the run's model config decides (here: camera-aware), init_weights only seed the values
    base = tmp_path / "base"
    subprocess.run(_train_cmd(base, "max_steps=1"), check=True, env=_env(), cwd=ROOT,
                   capture_output=True, timeout=600)
    variant = json.loads((ROOT / "clip_depth_ros" / "model_configs" / "tiny-mirror.json")
                         .read_text())
    variant.update(name="tiny-mirror-camaware", camera_aware_scale=True)
    config_path = tmp_path / "tiny-mirror-camaware.json"
    config_path.write_text(json.dumps(variant))
    tuned = tmp_path / "tuned"
    res = subprocess.run(_train_cmd(tuned, f"model={config_path}",
                                    f"init_weights={base / 'best.safetensors'}", "max_steps=1",
                                    "data.focal_range=[100,300]"),
                         env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    sidecar = json.loads((tuned / "best.json").read_text())
    assert sidecar["config"]["camera_aware_scale"] is True
    assert sidecar["config"]["name"] == "tiny-mirror-camaware"


def test_stop_at_ends_a_stage_early_on_the_full_schedule(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    extra = ("max_steps=6", "ckpt_every=100")
    subprocess.run(_train_cmd(full, *extra), check=True, env=_env(), cwd=ROOT,
                   capture_output=True, timeout=600)
    subprocess.run(_train_cmd(cut, *extra, "stop_at=3"), check=True, env=_env(), cwd=ROOT,
                   capture_output=True, timeout=600)
    # the first three steps are those of the full run (same learning rates), then it stops
    assert _curve(cut) == pytest.approx(_curve(full)[:3], rel=1e-5, abs=1e-6)
    assert json.loads((cut / "checkpoints" / "latest.json").read_text())["step"] == 3
    assert (cut / "checkpoints" / "step_0000003" / "model.safetensors").is_file()
    # the stage's last step is evaluated and exported as its best (it used to export none)
    assert json.loads((cut / "best.json").read_text())["metadata"]["best"]["step"] == 3
    again = subprocess.run(_train_cmd(cut, *extra, "stop_at=3"), env=_env(), cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "nothing left to train: step 3 of 3" in again.stderr
