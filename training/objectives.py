"""What is trained and against what: trainable parameter groups and the per-method loss.

Losses are computed per image and averaged over the batch, so a global batch split over N
DDP processes gives the same loss and gradient as one process with the whole batch.  Each
method's spec names its loss ("auto"); ``LOSSES`` maps that name to the per-image loss.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn

from clip_depth_ros.config import ConfigError
from clip_depth_ros.model.depth_model import AuxOutputs, DepthModel
from clip_depth_ros.model.methods import get_method
from clip_depth_ros.model.trainable import trainable_parameter_groups

from .losses import (GradientMatchingLoss, MoASiLogLoss, SiLogLoss, bin_cross_entropy, l1_loss,
                     zoom_consistency_loss)


def trainable_groups(model: DepthModel,
                     train_backbone: bool) -> tuple[dict[str, list[nn.Parameter]], list[str]]:
    """({"backbone": [...], "head": [...]}, parts to checkpoint); sets requires_grad."""
    groups = trainable_parameter_groups(model, apply=True)
    if train_backbone:
        model.image_encoder.requires_grad_(True)
        head_ids = {id(p) for p in groups["head"]}
        backbone = [p for p in model.image_encoder.parameters() if id(p) not in head_ids]
    else:
        backbone = groups.get("adapters", []) + groups.get("backbone", [])
    head = groups["head"]
    if not head and not backbone:
        raise ValueError(f"method '{model.config.method}' has nothing to train")
    parts = ["head"] + (["image_encoder"] if backbone else [])
    return {"backbone": backbone, "head": head}, parts


def _silog_loss(objective: "DepthObjective", pred: torch.Tensor, target: torch.Tensor,
                valid: torch.Tensor, aux: AuxOutputs) -> torch.Tensor:
    """Scale-invariant log loss of one image."""
    return objective.silog(pred, target, valid)


def _moa_loss(objective: "DepthObjective", pred: torch.Tensor, target: torch.Tensor,
              valid: torch.Tensor, aux: AuxOutputs) -> torch.Tensor:
    """MoA composite of one image: bin cross-entropy on the head's logits + L1 + 0.5 SiLog."""
    if "bin_logits" not in aux:
        raise ValueError("the moa loss reads the head's bin logits: pass the aux outputs of "
                         "DepthModel.forward_with_aux of a MoA model")
    centres = objective.model.head.bin_centres
    return (bin_cross_entropy(aux["bin_logits"], target, centres, valid)
            + l1_loss(pred, target, valid) + 0.5 * objective.moa_silog(pred, target, valid))


PerImageLoss = Callable[["DepthObjective", torch.Tensor, torch.Tensor, torch.Tensor, AuxOutputs],
                        torch.Tensor]
# a method spec's loss name -> (objective, pred, target, valid, that image's aux) -> loss
LOSSES: dict[str, PerImageLoss] = {"silog": _silog_loss, "moa": _moa_loss}


class DepthObjective:
    """The loss of the model's method (its spec's ``loss``): SiLog for Mirror, the MoA
    composite for MoA; ``loss`` other than "auto" names one of ``LOSSES`` instead."""

    def __init__(self, model: DepthModel, loss: str = "auto", gradient_matching: float = 0.0,
                 silog_lambda: float = 0.85):
        self.model = model
        self.config = model.config
        self.kind = get_method(self.config.method).loss if loss == "auto" else loss
        if self.kind not in LOSSES:
            raise ConfigError(f"unknown loss '{self.kind}'; expected auto or one of "
                              f"{', '.join(LOSSES)}")
        self.loss_fn = LOSSES[self.kind]
        self.silog = SiLogLoss(lambd=silog_lambda)
        self.moa_silog = MoASiLogLoss()
        self.grad_weight = float(gradient_matching)
        self.grad_match = GradientMatchingLoss() if self.grad_weight > 0 else None

    def targets(self, batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, ...]:
        """(depth target in the model's canonical camera, valid mask) on the device."""
        depth = batch["depth"].to(device)
        valid = batch["valid_mask"].to(device) & (depth > self.config.min_depth) \
            & (depth <= self.config.max_depth)
        if self.config.camera_aware_scale:
            # learn depth as the canonical camera would see it: scale by canonical / f
            scale = self.config.canonical_focal_px / batch["focal_px"].to(device)
            depth = depth * scale.view(-1, 1, 1, 1)
        return depth, valid

    @staticmethod
    def with_twins(batch: dict[str, Any]) -> dict[str, Any]:
        """The batch with its zoomed twins appended (the order of a torch.cat of the images)."""
        out = dict(batch)
        for key in ("depth", "valid_mask", "focal_px", "intrinsics"):
            out[key] = torch.cat([batch[key], batch[f"twin_{key}"]])
        out["n_wide"] = batch["image"].shape[0]
        return out

    def focal_scale(self, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        """(B,) f_px / canonical_focal_px of each sample: what a focal-conditioned model is
        told, and the factor from its canonical prediction to metres."""
        return batch["focal_px"].to(device) / self.config.canonical_focal_px

    def zoom_consistency(self, pred: torch.Tensor, batch: dict[str, Any],
                         device: torch.device) -> torch.Tensor:
        """Metric disagreement of each sample with its zoomed twin (batch from with_twins)."""
        n = batch["n_wide"]
        metric = pred
        if self.config.camera_aware_scale:
            metric = pred * self.focal_scale(batch, device).to(pred).view(-1, 1, 1, 1)
        k = batch["intrinsics"].to(device)
        valid = batch["valid_mask"].to(device)
        return zoom_consistency_loss(metric[:n], metric[n:], k[:n], k[n:], valid[n:])

    def __call__(self, pred: torch.Tensor, batch: dict[str, Any], device: torch.device,
                 aux: Optional[AuxOutputs] = None) -> torch.Tensor:
        """Mean over images of the per-image loss; aux: the model's auxiliary outputs
        (``DepthModel.forward_with_aux``), which the MoA loss needs."""
        target, valid = self.targets(batch, device)
        aux = aux or {}
        losses = []
        for i in range(pred.shape[0]):
            p, t, m = pred[i:i + 1], target[i:i + 1], valid[i:i + 1]
            loss = self.loss_fn(self, p, t, m, {k: v[i:i + 1] for k, v in aux.items()})
            if self.grad_match is not None:
                loss = loss + self.grad_weight * self.grad_match(p, t, m)
            losses.append(loss)
        return torch.stack(losses).mean()


class WithAux(torch.nn.Module):
    """A depth model whose forward is its ``forward_with_aux``: what DDP wraps in training
    (the losses read the aux outputs, and DDP syncs gradients only through its forward)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor,
                focal_scale: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict]:
        """(canonical depth, aux outputs) of the wrapped model."""
        return self.model.forward_with_aux(image, focal_scale)
