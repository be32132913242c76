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


def zoom_consistency_loss(wide_m: torch.Tensor, tele_m: torch.Tensor, wide_k: torch.Tensor,
                          tele_k: torch.Tensor, tele_valid: Optional[torch.Tensor] = None,
                          scale: float = 10.0) -> torch.Tensor:
    """Disagreement of two metric depth maps of one view through two lenses (B x 1 x H x W).

    wide_k / tele_k: (B, 4) intrinsics [fx, fy, cx, cy] at the maps' resolution; the tele
    lens sees part of the wide one's field (a longer focal length, same pose).  Each tele pixel
    is looked up in the wide map (bilinear) at the pixel seeing the same ray; with
    g = log tele - log wide there, the loss is ``scale`` * sqrt(mean g^2) per image (its RMS
    log disagreement, scale included: a lens-dependent scale error is exactly what it targets),
    averaged over the images.  Pixels whose ray leaves the wide field or are invalid in
    ``tele_valid`` do not count.
    """
    if wide_m.shape != tele_m.shape or wide_m.ndim != 4 or wide_m.shape[1] != 1:
        raise ValueError(f"need two B x 1 x H x W maps, got {tuple(wide_m.shape)} and "
                         f"{tuple(tele_m.shape)}")
    b, _, h, w = tele_m.shape
    wide_k, tele_k = wide_k.to(tele_m), tele_k.to(tele_m)
    v, u = torch.meshgrid(torch.arange(h, device=tele_m.device, dtype=tele_m.dtype),
                          torch.arange(w, device=tele_m.device, dtype=tele_m.dtype),
                          indexing="ij")
    # the ray through tele pixel (u, v) hits the wide image at (ua, va)
    ua = wide_k[:, 2, None, None] + (u - tele_k[:, 2, None, None]) \
        * (wide_k[:, 0] / tele_k[:, 0])[:, None, None]
    va = wide_k[:, 3, None, None] + (v - tele_k[:, 3, None, None]) \
        * (wide_k[:, 1] / tele_k[:, 1])[:, None, None]
    grid = torch.stack(((2 * ua + 1) / w - 1, (2 * va + 1) / h - 1), dim=-1)  # align_corners=False
    wide_at_tele = F.grid_sample(wide_m, grid, mode="bilinear", padding_mode="border",
                                 align_corners=False)
    inside = (grid.abs() <= 1).all(dim=-1).unsqueeze(1)
    valid = inside if tele_valid is None else inside & tele_valid.reshape(inside.shape).bool()
    g = torch.log(tele_m.clamp(min=_EPS)) - torch.log(wide_at_tele.clamp(min=_EPS))
    g = torch.where(valid, g, torch.zeros_like(g))
    count = valid.flatten(1).sum(dim=1)
    mean_sq = (g ** 2).flatten(1).sum(dim=1) / count.clamp(min=1)
    per_image = scale * _safe_sqrt(mean_sq)
    has = count > 0
    if not bool(has.any()):
        return _zero(tele_m)
    return per_image[has].mean()
