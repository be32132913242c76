"""Training checkpoints that survive being killed at any moment.

Each checkpoint is a new folder ``step_NNNNNNN/`` holding the trained parts (safetensors +
JSON sidecar, loadable by the runtime as is), the optimizer/scheduler state
(``train_state.pt``, plain tensors and numbers: loads with weights_only=True) and
``progress.json`` (epoch, step, loss history, evaluations, the best so far).  A checkpoint
written right after an evaluation also records that evaluation in its sidecar
(``metadata.metrics``, ``metadata.eval_step``), with the best so far (``metadata.best``):
best.safetensors / best.json are a copy of the best checkpoint, so they can always be checked
or restored from the record.  Only when the folder is complete does
``latest.json`` switch to it, by atomic rename; older folders are then pruned.  A write
interrupted midway therefore leaves the previous checkpoint as the one that resumes.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch

from clip_depth_ros.model import save_weights
from clip_depth_ros.model.depth_model import DepthModel
from clip_depth_ros.weights import atomic_write

POINTER = "latest.json"
WEIGHTS = "model.safetensors"


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2)))


def save_checkpoint(ckpt_dir: Path, model: DepthModel, parts: list[str],
                    train_state: dict[str, Any], progress: dict[str, Any],
                    metadata: dict[str, Any], keep: int = 2) -> Path:
    """Write a complete checkpoint folder, then point latest.json at it."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = f"step_{progress['step']:07d}"
    final = ckpt_dir / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=str(ckpt_dir)))
    save_weights(model, staging / WEIGHTS, parts=parts, metadata=metadata)
    torch.save(train_state, staging / "train_state.pt")
    _write_json_atomic(staging / "progress.json", progress)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    _write_json_atomic(ckpt_dir / POINTER, {"dir": name, "step": progress["step"]})
    _prune(ckpt_dir, keep)
    return final


def _prune(ckpt_dir: Path, keep: int) -> None:
    steps = sorted(p for p in ckpt_dir.glob("step_*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in ckpt_dir.glob(".step_*"):  # staging left by a killed writer
        shutil.rmtree(stale, ignore_errors=True)


def latest_checkpoint(ckpt_dir: Path) -> Optional[Path]:
    """The folder latest.json points at, or None when there is no complete checkpoint."""
    pointer = ckpt_dir / POINTER
    if not pointer.is_file():
        return None
    folder = ckpt_dir / json.loads(pointer.read_text())["dir"]
    return folder if (folder / WEIGHTS).is_file() else None


def load_train_state(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(optimizer/scheduler state, progress) of a checkpoint folder, loaded without pickle code."""
    state = torch.load(folder / "train_state.pt", map_location="cpu", weights_only=True)
    progress = json.loads((folder / "progress.json").read_text())
    return state, progress


# what the metrics of a training run's evaluation are measured on: its validation split
VAL_SPLIT = "val"


def best_record(metric: str, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """The best-so-far entry of a run's progress: which metric, at which step, its value, and
    every metric of that evaluation (on the run's validation split)."""
    return {"metric": metric, "step": step, "value": metrics[metric], "split": VAL_SPLIT,
            **metrics}


def export_best(folder: Path, out_dir: Path) -> Path:
    """Copy an evaluated checkpoint's trained parts and sidecar (with its metrics) to
    out_dir/best.safetensors + best.json; the sidecar goes last, so best.json names a step
    only once its weights are in place."""
    best = out_dir / "best.safetensors"
    tmp = out_dir / ".best.safetensors.tmp"
    shutil.copyfile(folder / WEIGHTS, tmp)
    os.replace(tmp, best)
    sidecar = json.loads((folder / "model.json").read_text())
    _write_json_atomic(out_dir / "best.json", sidecar)
    return best


def exported_best_step(out_dir: Path) -> Optional[int]:
    """The step whose weights out_dir/best.safetensors holds (from best.json), if any."""
    try:
        meta = json.loads((out_dir / "best.json").read_text()).get("metadata", {})
    except (OSError, ValueError):
        return None
    step = meta.get("eval_step")
    return step if (out_dir / "best.safetensors").is_file() else None
