"""Training checkpoints that survive being killed at any moment.

Each checkpoint is a new folder ``step_NNNNNNN/`` holding the trained parts (safetensors +
JSON sidecar, loadable by the runtime as is), the optimizer/scheduler state
(``train_state.pt``, plain tensors and numbers: loads with weights_only=True) and
``progress.json`` (epoch, step, loss history).  Only when the folder is complete does
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


def export_best(folder: Path, out_dir: Path, metrics: dict[str, Any]) -> Path:
    """Copy a checkpoint's trained parts to out_dir/best.safetensors (+ sidecar with metrics)."""
    best = out_dir / "best.safetensors"
    tmp = out_dir / ".best.safetensors.tmp"
    shutil.copyfile(folder / WEIGHTS, tmp)
    os.replace(tmp, best)
    sidecar = json.loads((folder / "model.json").read_text())
    sidecar.setdefault("metadata", {})["metrics"] = metrics
    _write_json_atomic(out_dir / "best.json", sidecar)
    return best
