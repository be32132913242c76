"""Depth losses (torch). Every loss takes (pred, target, valid_mask) and ignores invalid pixels.

Shapes: pred, target and valid_mask share one shape (B x 1 x H x W, B x H x W or H x W).
``valid_mask=None`` means "target finite and > 0"; a given mask is AND-ed with that, so a
zero (= missing) ground-truth pixel can never reach a log.  Every loss returns a scalar that
stays attached to ``pred``'s graph; with no valid pixel it is exactly 0 and backward() works.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

_EPS = 1e-6  # floor for predicted depth before a log (decoders end in sigmoid / softplus)


def _mask(target: torch.Tensor, valid_mask: Optional[torch.Tensor]) -> torch.Tensor:
    valid = torch.isfinite(target) & (target > 0)
    if valid_mask is not None:
        if valid_mask.shape != target.shape:
            raise ValueError(f"valid_mask shape {tuple(valid_mask.shape)} != target shape "
                             f"{tuple(target.shape)}")
        valid = valid & valid_mask.detach().bool()
    return valid


def _zero(pred: torch.Tensor) -> torch.Tensor:
    """Exact 0 connected to pred's graph (a sum over no element), so backward() still runs."""
    return pred.reshape(-1)[:0].sum()


def _log_diff(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """g = log(pred) - log(target) over the valid pixels, as a 1-D tensor."""
    return torch.log(pred[valid].clamp(min=_EPS)) - torch.log(target[valid])


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with sqrt(0) = 0 and a zero (not NaN) gradient there."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))),
                       torch.zeros_like(x))


def _log_moments(pred: torch.Tensor, target: torch.Tensor,
                 valid_mask: Optional[torch.Tensor]) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """(population variance, mean) of g = log pred - log target over valid pixels; None if none."""
    valid = _mask(target, valid_mask)
    if not bool(valid.any()):
        return None
    g = _log_diff(pred, target, valid)
    mean = g.mean()
    return ((g - mean) ** 2).mean(), mean


class SiLogLoss(nn.Module):
    """Scale-invariant log loss, BTS form: 10 * sqrt(mean(g^2) - lambd * mean(g)^2).

    g = log(pred) - log(gt) over the valid pixels of the whole batch.

    The factor ``scale`` = 10 is BTS's (their variance_focus = lambd = 0.85); the loss is then
    of the order of the SILog metric / 10.  lambd = 1 makes it fully scale invariant (a
    globally scaled prediction costs 0); Depth-Anything-V2 uses lambd = 0.5, scale 1.
    Computed as Var(g) + (1 - lambd) mean(g)^2, which is the same value without the
    cancellation that can make mean(g^2) - mean(g)^2 slightly negative.
    """

    def __init__(self, lambd: float = 0.85, scale: float = 10.0) -> None:
        super().__init__()
        if not 0.0 <= lambd <= 1.0:
            raise ValueError(f"SiLog lambda (variance focus) must be in [0, 1], got {lambd}")
        self.lambd = float(lambd)
        self.scale = float(scale)

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                valid_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Loss over the valid pixels of the whole batch (pixels pooled, as BTS does)."""
        moments = _log_moments(pred, target, valid_mask)
        if moments is None:
            return _zero(pred)
        variance, mean = moments
        return self.scale * _safe_sqrt(variance + (1.0 - self.lambd) * mean ** 2)


class MoASiLogLoss(nn.Module):
    """MoA-DepthCLIP SILog: 10 * (Var(g) + 0.85 * Mean(g)^2), g = log pred - log gt (no sqrt).

    Var is the population variance (divide by the pixel count), over the valid pixels of the
    whole batch, as METHODS.md section 3 states it.
    """

    def __init__(self, lambd: float = 0.85, scale: float = 10.0) -> None:
        super().__init__()
        self.lambd = float(lambd)
        self.scale = float(scale)

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                valid_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Loss over the valid pixels of the whole batch."""
        moments = _log_moments(pred, target, valid_mask)
        if moments is None:
            return _zero(pred)
        variance, mean = moments
        return self.scale * (variance + self.lambd * mean ** 2)


def l1_loss(pred: torch.Tensor, target: torch.Tensor,
            valid_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean absolute depth error (metres) over the valid pixels."""
    valid = _mask(target, valid_mask)
    if not bool(valid.any()):
        return _zero(pred)
    return (pred[valid] - target[valid]).abs().mean()


def bin_cross_entropy(logits: torch.Tensor, depth: torch.Tensor, bin_centres: torch.Tensor,
                      valid_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cross-entropy of per-pixel bin logits against the bin centre nearest the true depth.

    logits: B x N x H x W; depth and valid_mask: B x 1 x H x W or B x H x W; bin_centres: (N,)
    in metres (nearest by absolute difference in metres).  Mean over valid pixels.
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be B x N x H x W, got {tuple(logits.shape)}")
    if depth.ndim == 4:
        depth = depth[:, 0]
        valid_mask = None if valid_mask is None else valid_mask[:, 0]
    centres = bin_centres.to(depth.device, depth.dtype).reshape(-1)
    if centres.numel() != logits.shape[1]:
        raise ValueError(f"{centres.numel()} bin centres for {logits.shape[1]} logit channels")
    valid = _mask(depth, valid_mask)
    if not bool(valid.any()):
        return _zero(logits)
    target_bins = (depth[valid].unsqueeze(-1) - centres).abs().argmin(dim=-1)
    pixel_logits = logits.permute(0, 2, 3, 1)[valid]  # V x N
    return F.cross_entropy(pixel_logits, target_bins)


class GradientMatchingLoss(nn.Module):
    """MiDaS multi-scale gradient matching on log depth: sum |grad(log pred - log gt)| / #valid.

    At each of ``scales`` scales (subsampling by 2**s) the x and y finite differences of
    R = log pred - log gt are taken where both neighbours are valid; the sums over the batch
    are divided by the valid pixel count of that scale ("batch-based" reduction of MiDaS) and
    added over scales.  A constant offset of R (a global scale of the depth) costs 0.
    """

    def __init__(self, scales: int = 4) -> None:
        super().__init__()
        if scales < 1:
            raise ValueError(f"scales must be >= 1, got {scales}")
        self.scales = int(scales)

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                valid_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Sum over scales of the masked gradient L1 of the log-depth residual."""
        valid = _mask(target, valid_mask)
        h, w = target.shape[-2:]
        pred, target, valid = (t.reshape(-1, h, w) for t in (pred, target, valid))
        safe_target = torch.where(valid, target, torch.ones_like(target))
        residual = torch.log(pred.clamp(min=_EPS)) - torch.log(safe_target)
        residual = torch.where(valid, residual, torch.zeros_like(residual))
        total = _zero(pred)
        for s in range(self.scales):
            step = 2 ** s
            r, m = residual[:, ::step, ::step], valid[:, ::step, ::step].to(residual.dtype)
            count = m.sum()
            if count <= 0:
                continue
            mask_x = m[:, :, 1:] * m[:, :, :-1]
            mask_y = m[:, 1:, :] * m[:, :-1, :]
            grad_x = (r[:, :, 1:] - r[:, :, :-1]).abs() * mask_x
            grad_y = (r[:, 1:, :] - r[:, :-1, :]).abs() * mask_y
            total = total + (grad_x.sum() + grad_y.sum()) / count
        return total
