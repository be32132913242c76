"""Evaluate a depth model with the literature's protocol; print the table, write JSON and plots.

    python -m training.evaluate --weights best.safetensors --data nyu --root NYU \
        --list nyudepthv2_test_files_with_gt.txt --crop eigen --out eval/
    python -m training.evaluate --model ViT-B-16-depthclip --backbone-weights openai ...

Predictions are made at the model's input size, resized to the ground truth's resolution
and compared there, per image, then averaged over images.  Flip TTA and median scaling are
off unless asked for, and the report says which were on.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from clip_depth_ros.backends.torch_backend import TorchBackend

from .config import DataConfig
from .data.builder import base_dataset
from .metrics import METRIC_KEYS, MetricAccumulator, eigen_crop_mask, garg_crop_mask, median_scale

PLOTTED = 4


def predict(backend: TorchBackend, sample: dict[str, Any], flip_tta: bool) -> np.ndarray:
    """Metric depth at the sample's resolution (mean with the flipped prediction if TTA)."""
    depth = backend.infer(sample["image"], sample["intrinsics"])
    if flip_tta:
        k = sample["intrinsics"]
        flipped_k = replace(k, cx=k.width - 1 - k.cx)
        mirrored = backend.infer(np.ascontiguousarray(sample["image"][:, ::-1]), flipped_k)
        depth = 0.5 * (depth + mirrored[:, ::-1])
    return depth


def crop_mask(kind: str, shape: tuple[int, int]) -> Optional[np.ndarray]:
    """The evaluation crop of the protocol (Eigen for NYU, Garg for KITTI)."""
    if kind == "eigen":
        return eigen_crop_mask(*shape)
    if kind == "garg":
        return garg_crop_mask(*shape)
    return None


def evaluate(backend: TorchBackend, dataset: Any, crop: str = "none", flip_tta: bool = False,
             use_median_scale: bool = False, max_depth: Optional[float] = None,
             keep: int = PLOTTED) -> tuple[dict[str, Any], list[dict[str, np.ndarray]]]:
    """(averaged metrics, a few samples for plots) over a dataset of sample dicts."""
    from tqdm import tqdm
    cfg = backend.config
    cap = max_depth or cfg.max_depth
    acc = MetricAccumulator(cfg.min_depth, cap)
    kept, errors = [], []
    for i in tqdm(range(len(dataset)), desc="evaluate", unit="img", dynamic_ncols=True):
        sample = dataset[i]
        pred = predict(backend, sample, flip_tta)
        gt, valid = sample["depth"], sample["valid_mask"]
        mask = valid.copy()
        cm = crop_mask(crop, gt.shape)
        if cm is not None:
            mask &= cm
        if use_median_scale and mask.any():
            pred = median_scale(pred, gt, mask)
        acc.update(pred, gt, mask)
        sel = mask & (gt > cfg.min_depth) & (gt < cap)
        errors.append(np.stack([gt[sel], np.abs(pred[sel] - gt[sel]) / gt[sel]], axis=1))
        if len(kept) < keep:
            kept.append({"image": sample["image"], "gt": gt, "pred": pred, "mask": mask})
    metrics = acc.compute()
    metrics.update({"flip_tta": flip_tta, "median_scaling": use_median_scale, "crop": crop,
                    "max_depth": cap, "model": cfg.name, "metric_depth": not use_median_scale})
    return metrics, kept + [{"errors": np.concatenate(errors) if errors else np.zeros((0, 2))}]


def format_table(metrics: dict[str, Any]) -> str:
    """The literature's column order, one header row and one value row."""
    header = " | ".join(f"{k:>8s}" for k in METRIC_KEYS)
    values = " | ".join(f"{metrics[k]:8.4f}" for k in METRIC_KEYS)
    notes = (f"{metrics['n_images']} images, crop {metrics['crop']}, cap {metrics['max_depth']} m,"
             f" flip TTA {'on' if metrics['flip_tta'] else 'off'}, median scaling "
             f"{'ON (not metric)' if metrics['median_scaling'] else 'off (metric)'}")
    return f"{header}\n{values}\n{notes}"


def save_plots(samples: list[dict[str, np.ndarray]], out: Path, max_depth: float) -> list[Path]:
    """image | truth | prediction | error grid, and AbsRel against true depth."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    errors = samples[-1]["errors"]
    grid = samples[:-1]
    paths = []
    if grid:
        fig, axes = plt.subplots(len(grid), 4, figsize=(14, 3 * len(grid)), squeeze=False)
        for row, s in zip(axes, grid):
            err = np.where(s["mask"], np.abs(s["pred"] - s["gt"]), np.nan)
            for ax, img, title, kw in zip(row, (s["image"], s["gt"], s["pred"], err),
                                          ("image", "truth (m)", "prediction (m)", "|error| (m)"),
                                          ({}, {"vmin": 0, "vmax": max_depth},
                                           {"vmin": 0, "vmax": max_depth}, {"cmap": "magma"})):
                shown = np.where(img > 0, img, np.nan) if img.ndim == 2 and title.startswith(
                    "truth") else img
                im = ax.imshow(shown, **({"cmap": "turbo"} | kw) if img.ndim == 2 else {})
                ax.set_title(title)
                ax.axis("off")
                if img.ndim == 2:
                    fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        paths.append(out / "samples.png")
        fig.savefig(paths[-1], dpi=80)
        plt.close(fig)
    if len(errors):
        edges = np.linspace(0, max_depth, 21)
        idx = np.digitize(errors[:, 0], edges) - 1
        centres, means = [], []
        for b in range(len(edges) - 1):
            sel = idx == b
            if sel.sum() > 10:
                centres.append(0.5 * (edges[b] + edges[b + 1]))
                means.append(errors[sel, 1].mean())
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(centres, means, marker="o")
        ax.set_xlabel("true depth (m)")
        ax.set_ylabel("mean AbsRel")
        ax.set_title("error against true depth")
        ax.grid(True, alpha=0.3)
        paths.append(out / "error_vs_depth.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model name/config (default: from weights)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--backbone-weights", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", default="synthetic-indoor", help="data kind (see DataConfig)")
    ap.add_argument("--root", default="")
    ap.add_argument("--depth-root", default="")
    ap.add_argument("--list", default="", help="test list file")
    ap.add_argument("--mat", default="", help="nyu_depth_v2_labeled.mat")
    ap.add_argument("--splits-mat", default="")
    ap.add_argument("--samples", type=int, default=64, help="synthetic: number of images")
    ap.add_argument("--seed", type=int, default=0, help="synthetic: seed of the split")
    ap.add_argument("--render-size", type=int, nargs=2, default=[240, 320])
    ap.add_argument("--crop", choices=("none", "eigen", "garg"), default="none")
    ap.add_argument("--max-depth", type=float, default=None, help="evaluation cap (m)")
    ap.add_argument("--flip-tta", action="store_true")
    ap.add_argument("--median-scale", action="store_true")
    ap.add_argument("--out", default="eval")
    return ap.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point."""
    args = parse_args(argv)
    data = DataConfig(kind=args.data, root=args.root, depth_root=args.depth_root,
                      val_list=args.list, mat_path=args.mat, splits_mat=args.splits_mat,
                      val_samples=args.samples, seed=args.seed, render_size=args.render_size)
    backend = TorchBackend(args.model, weights=args.weights,
                           backbone_weights=args.backbone_weights, device=args.device)
    metrics, samples = evaluate(backend, base_dataset(data, "val"), args.crop, args.flip_tta,
                                args.median_scale, args.max_depth)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plots = save_plots(samples, out, metrics["max_depth"])
    print(format_table(metrics))
    print(f"wrote {out / 'metrics.json'}" + "".join(f", {p}" for p in plots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
