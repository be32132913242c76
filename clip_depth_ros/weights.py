"""Safe weight files: safetensors (preferred) or torch.load(weights_only=True), never pickle code.

Trained parts are saved as ``NAME.safetensors`` with a JSON sidecar ``NAME.json`` holding the
model config, which parts the file holds and free-form metadata (the training command, its
metrics).  The config is also embedded in the safetensors header so one file is enough.
Every failure raises :class:`WeightsError` naming the file and the problem.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import torch

from .errors import ClipDepthError
from .atomic_io import atomic_write, write_bytes_atomic  # noqa: F401 (re-exported)

FORMAT_VERSION = 1


class WeightsError(ClipDepthError, RuntimeError):
    """A weights file that is missing, unreadable, unsafe or does not fit the model."""


def sidecar_path(weights_path: os.PathLike | str) -> Path:
    """The JSON sidecar next to a weights file."""
    return Path(weights_path).with_suffix(".json")


def load_tensor_file(path: os.PathLike | str) -> dict[str, torch.Tensor]:
    """Read a flat name -> tensor dict from .safetensors, or .pt/.pth/.bin with weights_only."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise WeightsError(f"{path}: not a readable safetensors file "
                               f"(truncated or corrupt?): {exc}") from None
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for bad pickles; all mean "refused"
            raise WeightsError(f"{path}: refused or unreadable with torch.load(weights_only=True) "
                               f"(files needing arbitrary pickled code are never loaded): "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
        return _flatten_checkpoint(obj, path)
    raise WeightsError(f"{path}: unsupported weights format '{path.suffix}' "
                       "(use .safetensors, or .pt/.pth/.bin state dicts)")


def _flatten_checkpoint(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap {'state_dict': ...} training checkpoints and DDP 'module.' prefixes."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def load_state_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor],
                      source: str, expected_keys: Optional[Iterable[str]] = None) -> None:
    """Copy ``state`` into ``module``, failing on missing, unexpected, mis-shaped or non-float
    tensors.  ``expected_keys`` restricts the check to a subset of the module's state."""
    target = module.state_dict()
    expected = set(target) if expected_keys is None else set(expected_keys)
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys: {_head(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {_head(unexpected)}")
    for key in sorted(expected & set(state)):
        src, dst = state[key], target[key]
        if tuple(src.shape) != tuple(dst.shape):
            problems.append(f"{key}: shape {tuple(src.shape)} in file, model needs {tuple(dst.shape)}")
        elif dst.is_floating_point() != src.is_floating_point():
            problems.append(f"{key}: dtype {src.dtype} in file, model needs {dst.dtype}")
    if problems:
        raise WeightsError(f"{source} does not fit the model "
                           f"(wrong architecture or config?): " + "; ".join(problems[:6]))
    with torch.no_grad():
        for key in expected:
            target[key].copy_(state[key].to(target[key].dtype))


def _head(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")


def save_tensor_file(tensors: Mapping[str, torch.Tensor], path: os.PathLike | str,
                     sidecar: Mapping[str, Any]) -> Path:
    """Write tensors as safetensors plus its JSON sidecar, each atomically (temp + rename)."""
    from safetensors.torch import save_file
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path}: trained parts are saved as .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format_version": FORMAT_VERSION, **sidecar}
    header = {"clip_depth_ros": json.dumps(meta)}
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(contiguous, tmp, metadata=header))
    atomic_write(sidecar_path(path),
                  lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    return path


def read_sidecar(path: os.PathLike | str) -> dict[str, Any]:
    """The sidecar metadata of a weights file (JSON file, else the safetensors header)."""
    path = Path(path)
    side = sidecar_path(path)
    if side.is_file():
        try:
            return json.loads(side.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise WeightsError(f"{side}: unreadable sidecar JSON: {exc}") from None
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file: {exc}") from None
    if "clip_depth_ros" not in header:
        raise WeightsError(f"{path}: no sidecar {side.name} and no clip_depth_ros metadata "
                           "in the file; cannot tell which model it belongs to")
    return json.loads(header["clip_depth_ros"])
