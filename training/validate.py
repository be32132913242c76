"""Quick validation during training: metrics at the model's input resolution."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from clip_depth_ros.model.depth_model import DepthModel

from .metrics import MetricAccumulator


@torch.no_grad()
def validate(model: DepthModel, dataset: Dataset, device: torch.device,
             workers: int = 0, batch_size: int = 8) -> dict[str, Any]:
    """Standard metrics (metric depth, no scaling) over a validation set; restores train mode."""
    was_training = model.training
    model.eval()
    cfg = model.config
    acc = MetricAccumulator(cfg.min_depth, cfg.max_depth)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    for batch in loader:
        focal = batch["focal_px"].to(device) if cfg.camera_aware_scale else None
        depth = model.infer(batch["image"].to(device), focal).float().cpu()
        acc.update_batch(depth[:, 0], batch["depth"][:, 0], batch["valid_mask"][:, 0])
    model.train(was_training)
    return acc.compute()
