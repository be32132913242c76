"""Small helpers the model and backend tests share (importable: conftest puts test/ on the path)."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from clip_depth_ros.config import MODEL_CONFIG_DIR

# What every backend's infer must refuse with a ValueError, and the ids pytest shows for them.
BAD_IMAGES = [
    np.zeros((48, 64, 3), np.float32),
    np.zeros((48, 64), np.uint8),
    np.zeros((48, 64, 4), np.uint8),
    np.zeros((0, 64, 3), np.uint8),
    np.zeros((48, 0, 3), np.uint8),
    [[[0, 0, 0]]],
]
BAD_IMAGE_IDS = ["float", "2d", "4ch", "empty-h", "empty-w", "list"]


def random_batch(config, n: int = 2, seed: int = 0,
                 hw: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """A seeded N(0, 1) batch (n, 3, h, w) at the config's input size (or ``hw``)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, *(hw or config.input_hw), generator=gen)


def forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """model(x) without autograd."""
    with torch.no_grad():
        return model(x)


def eval_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy in eval mode (the original keeps its mode)."""
    clone = copy.deepcopy(model)
    clone.eval()
    return clone


def camera_aware_config_file(folder: Path, name: str = "tiny-mirror-cam", **extra) -> Path:
    """tiny-mirror's config JSON with camera_aware_scale on (and ``extra`` fields), written as
    ``folder/name.json``."""
    data = json.loads((MODEL_CONFIG_DIR / "tiny-mirror.json").read_text())
    data.update(name=name, camera_aware_scale=True, **extra)
    path = Path(folder) / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def random_backbone_file(config, folder: Path) -> str:
    """A seeded random CLIP tower for ``config`` saved as ``folder/tiny.safetensors``."""
    from training.clipself import build_clip, save_backbone

    torch.manual_seed(0)
    return str(save_backbone(build_clip(config, "random"), Path(folder) / "tiny.safetensors"))
