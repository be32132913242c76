"""Give a trained Mirror model an uncertainty output: fine-tune a new head on frozen weights.

    python -m training.uncertainty --weights demo-mirror --out runs/unc/demo-mirror.safetensors

The model is rebuilt with ``mirror.uncertainty`` on; everything it had keeps its weights and
stays frozen (depth is unchanged, bit for bit), and only the new 3x3 convolution that reads
the decoder's last features learns log b, the Laplace scale of the log-depth error, by the
Laplace negative log-likelihood |log d - log d*| / b + log b on rendered synthetic views
(focal lengths drawn from a range, so the head sees the lenses it will meet).  The result is a
complete weights file (head + image encoder) with the recipe in its sidecar; the node turns
log b into ``depth/confidence``.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from clip_depth_ros.config import resolve_weights
from clip_depth_ros.errors import ConfigError
from clip_depth_ros.model import create_model, save_weights
from clip_depth_ros.preprocessing import preprocess
from clip_depth_ros.weights import read_sidecar
from training.cli_errors import OneLineParser, command_main
from training.data.synthetic import SyntheticDepthDataset
from training.data.worlds import SyntheticWorldDataset

def build(weights: str) -> torch.nn.Module:
    """The model of ``weights`` with an (untrained) uncertainty head; all else frozen."""
    # the inference build: frozen, eval mode, the text side the folded embedding stored in
    # the file (the text tower, never trained, is not in the file and is not rebuilt)
    model = create_model(None, weights=resolve_weights(weights))
    config = model.config
    model.config = dataclasses.replace(config, mirror=dataclasses.replace(
        config.mirror, uncertainty=True))
    model.head.config = model.config.mirror
    model.head.add_uncertainty()
    return model


RESIDUALS = ("metric", "scale_invariant")


def laplace_nll(log_b: torch.Tensor, depth: torch.Tensor, target: torch.Tensor,
                valid: torch.Tensor, residual: str = "metric") -> torch.Tensor:
    """Mean Laplace NLL of the log-depth error over valid pixels (depth is not trained).

    ``residual``: 'metric' learns the whole log error, the image's scale error included (the
    same for every pixel, so b learns that level and ranks little); 'scale_invariant' learns
    the error left after removing each image's median log error, what remains once a scale
    anchor (or the model's own scale, when right) fixes the metres, so b is free to rank
    pixels (on the bundled model it ranked no better: BENCHMARKS.md, fifth session)."""
    error = torch.log(depth.detach().clamp_min(1e-3)) - torch.log(target.clamp_min(1e-3))
    if residual == "scale_invariant":
        offsets = torch.stack([e[v].median() if v.any() else e.new_zeros(())
                               for e, v in zip(error, valid)])
        error = error - offsets.view(-1, *([1] * (error.dim() - 1)))
    nll = error.abs() * torch.exp(-log_b) + log_b
    return nll[valid].mean()


def batch_of(dataset: Any, indices: list[int], config: Any
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, f_px, image widths, depth targets at the model size, valid masks)."""
    import cv2
    height, width = config.input_hw
    images, focals, widths, targets = [], [], [], []
    for i in indices:
        sample = dataset[i]
        images.append(preprocess(sample["image"], config)[0])
        focals.append(sample["intrinsics"].fx)
        widths.append(sample["image"].shape[1])
        targets.append(cv2.resize(sample["depth"], (width, height),
                                  interpolation=cv2.INTER_NEAREST))
    target = torch.from_numpy(np.stack(targets))[:, None]
    return (torch.from_numpy(np.stack(images)), torch.tensor(focals, dtype=torch.float32),
            torch.tensor(widths, dtype=torch.float32), target, target > 0)


def train(model: torch.nn.Module, steps: int, batch_size: int, lr: float, seed: int,
          focal_range: tuple[float, float], size: tuple[int, int],
          data: str = "synthetic-indoor", residual: str = "metric") -> list[float]:
    """Fit the uncertainty head; returns the loss per step.  ``data``: synthetic-indoor rooms
    (``focal_range`` px at the render size) or synthetic-worlds (their own lenses);
    ``residual``: what b learns (:func:`laplace_nll`)."""
    if data == "synthetic-worlds":
        dataset: Any = SyntheticWorldDataset(steps * batch_size, size, seed=seed)
    else:
        dataset = SyntheticDepthDataset("indoor", n_samples=steps * batch_size, size=size,
                                        seed=seed, focal_range=focal_range)
    optimizer = torch.optim.Adam(model.head.uncertainty.parameters(), lr=lr)
    losses = []
    from tqdm import tqdm
    for step in tqdm(range(steps), desc="uncertainty head", unit="step"):
        images, focals, widths, target, valid = batch_of(
            dataset, list(range(step * batch_size, (step + 1) * batch_size)), model.config)
        scale = None
        if model.config.camera_aware_scale:
            scale = focals * (model.config.input_hw[1] / widths) / model.config.canonical_focal_px
        canonical, aux = model.forward_with_aux(images, scale)
        depth = canonical if scale is None else canonical * scale.reshape(-1, 1, 1, 1)
        log_b = torch.nn.functional.interpolate(aux["log_b"], size=depth.shape[-2:],
                                                mode="bilinear", align_corners=False)
        loss = laplace_nll(log_b, depth, target, valid, residual)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@command_main("training.uncertainty")
def main(argv: Optional[list[str]] = None) -> int:
    """Fine-tune and save; one line per mistake (exit 2)."""
    ap = OneLineParser(prog="training.uncertainty", description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="demo-mirror", help="bundled name or a .safetensors "
                    "of a Mirror model (default: %(default)s)")
    ap.add_argument("--out", type=Path, required=True, help="new weights file (.safetensors; "
                    "its .json sidecar beside it)")
    ap.add_argument("--steps", type=int, default=400, help="optimiser steps (default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=4, help="views per step (default: "
                    "%(default)s)")
    ap.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: "
                    "%(default)s)")
    ap.add_argument("--seed", type=int, default=4242, help="synthetic data seed, disjoint from "
                    "the held-out split's 1000 (default: %(default)s)")
    ap.add_argument("--focal-range", type=float, nargs=2, default=(180.0, 560.0),
                    metavar=("LO", "HI"), help="synthetic-indoor: focal lengths (px at "
                    "320x240) to draw (default: 180 560)")
    ap.add_argument("--data", choices=("synthetic-indoor", "synthetic-worlds"),
                    default="synthetic-indoor", help="views to learn from: rooms, or the "
                    "varied worlds with their own lenses (default: %(default)s)")
    ap.add_argument("--residual", choices=RESIDUALS, default="metric",
                    help="the log-depth error b learns: metric (all of it, the image's scale "
                    "error included) or scale_invariant (after removing each image's median "
                    "error: what is left once an anchor fixes the scale) "
                    "(default: %(default)s)")
    args = ap.parse_args(argv)
    if args.out.suffix != ".safetensors" or not args.out.parent.is_dir():
        raise ConfigError(f"--out must be a .safetensors path in an existing folder, not "
                          f"{args.out}")
    if args.steps < 1 or args.batch_size < 1 or not args.lr > 0:
        raise ConfigError("--steps and --batch-size must be >= 1 and --lr > 0")
    torch.manual_seed(args.seed)
    model = build(args.weights)
    start = time.monotonic()
    losses = train(model, args.steps, args.batch_size, args.lr, args.seed,
                   tuple(args.focal_range), (240, 320), args.data, args.residual)
    source = read_sidecar(resolve_weights(args.weights))
    metadata = dict(source.get("metadata", {}))
    metadata["uncertainty"] = {
        "command": "python -m training.uncertainty " + " ".join(sys.argv[1:] if argv is None
                                                               else argv),
        "from_weights": args.weights, "steps": args.steps, "batch_size": args.batch_size,
        "lr": args.lr, "seed": args.seed, "data": args.data, "residual": args.residual,
        **({"focal_range": list(args.focal_range)} if args.data == "synthetic-indoor" else {}),
        "loss_first_50": float(np.mean(losses[:50])), "loss_last_50": float(np.mean(losses[-50:])),
        "minutes": round((time.monotonic() - start) / 60, 1),
    }
    save_weights(model, args.out, parts=source.get("parts", ["head"]), metadata=metadata)
    print(f"uncertainty head: NLL {metadata['uncertainty']['loss_first_50']:.3f} -> "
          f"{metadata['uncertainty']['loss_last_50']:.3f} in {args.steps} steps -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
