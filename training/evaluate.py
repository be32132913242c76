"""Evaluate a depth model with the literature's protocol; print the table, write JSON and plots.

    python -m training.evaluate --weights demo-mirror          # its held-out split
    python -m training.evaluate --weights best.safetensors --data nyu --root NYU \
        --list nyudepthv2_test_files_with_gt.txt --crop eigen --out eval/
    python -m training.evaluate --model ViT-B-16-depthclip --backbone-weights openai ...

Synthetic data is evaluated on a named split (training/splits.py): ``heldout`` by default,
the split package_model records in a shipped model's sidecar (so this reproduces the
sidecar's numbers), or ``custom`` when --seed/--samples/... choose other scenes.  Predictions
are made at the model's input size, resized to the ground truth's resolution and compared
there, per image, then averaged over images.  Flip TTA and median scaling are off unless
asked for; the report names the split and says which were on.
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
from clip_depth_ros.config import resolve_weights
from clip_depth_ros.errors import ConfigError
from clip_depth_ros.synthetic.worlds import HELDOUT_FAMILY, WORLD_FAMILIES
from clip_depth_ros.frame import FrameContext, FrameOutputs, FrameRequest
from clip_depth_ros.trust import (ScaleAnchor, TrustSettings, add_trust_arguments,
                                  trust_settings_from_args)
from clip_depth_ros.weights import read_sidecar

from .cli_errors import OneLineParser, command_main
from .config import DATA_KIND_HELP, DATA_KINDS, DataConfig
from .data.builder import base_dataset
from .metrics import METRIC_KEYS, MetricAccumulator, eigen_crop_mask, garg_crop_mask, median_scale
from .splits import CUSTOM, HELDOUT, SPLITS, default_heldout, describe, heldout_split, split_data

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


def anchor_prediction(pred: np.ndarray, sample: dict[str, Any], settings: TrustSettings,
                      sparse_share: float, index: int) -> tuple[np.ndarray, bool]:
    """The prediction after the node's scale anchor (trust.ScaleAnchor, single frame):
    sparse_depth draws ``sparse_share`` of the valid ground-truth pixels with 1% noise (a
    simulated LiDAR / RGB-D); ground_plane uses the sample's own camera height where it has
    one (synthetic-worlds: each view's), else settings.camera_height_m.  (depth, held)."""
    sparse = None
    if settings.scale_anchor == "ground_plane" and sample.get("camera_height_m"):
        settings = replace(settings, camera_height_m=float(sample["camera_height_m"]))
    if settings.scale_anchor == "sparse_depth":
        rng = np.random.default_rng(index)
        gt, valid = sample["depth"], sample["valid_mask"]
        pick = valid & (rng.random(gt.shape) < sparse_share)
        sparse = np.full(gt.shape, np.nan, np.float32)
        sparse[pick] = gt[pick] * (1 + 0.01 * rng.standard_normal(int(pick.sum())))
    anchor = ScaleAnchor(settings)
    out = anchor(FrameOutputs(depth_m=pred.astype(np.float32), intrinsics=sample["intrinsics"]),
                 FrameContext(sample["image"], sample["intrinsics"], FrameRequest(), 0.0, sparse))
    return out.depth_m, anchor.status.source == settings.scale_anchor


def evaluate(backend: TorchBackend, dataset: Any, crop: str = "none", flip_tta: bool = False,
             use_median_scale: bool = False, max_depth: Optional[float] = None,
             keep: int = PLOTTED, split: Optional[dict[str, Any]] = None,
             trust: Optional[TrustSettings] = None, sparse_share: float = 0.01
             ) -> tuple[dict[str, Any], list[dict[str, np.ndarray]]]:
    """(averaged metrics, a few samples for plots) over a dataset of sample dicts; ``split``
    (the split's settings, see training/splits.py) is recorded with the metrics; ``trust``
    anchors each prediction's scale as the node would (``anchor_prediction``)."""
    from tqdm import tqdm
    cfg = backend.config
    cap = max_depth or cfg.max_depth
    acc = MetricAccumulator(cfg.min_depth, cap)
    kept, errors, held = [], [], 0
    for i in tqdm(range(len(dataset)), desc="evaluate", unit="img", dynamic_ncols=True):
        sample = dataset[i]
        pred = predict(backend, sample, flip_tta)
        if trust is not None and trust.scale_anchor != "none":
            pred, ok = anchor_prediction(pred, sample, trust, sparse_share, i)
            held += int(ok)
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
    if trust is not None and trust.scale_anchor != "none":
        metrics.update(scale_anchor=trust.scale_anchor, anchor_held=held / max(len(dataset), 1),
                       **({"sparse_share": sparse_share}
                          if trust.scale_anchor == "sparse_depth" else
                          {"camera_height_m": "per view" if split_has_heights(split)
                           else trust.camera_height_m}))
    if split is not None:
        metrics.update(split=split.get("name", CUSTOM), split_settings=dict(split))
    return metrics, kept + [{"errors": np.concatenate(errors) if errors else np.zeros((0, 2))}]


def split_has_heights(split: Optional[dict[str, Any]]) -> bool:
    """Whether the split's samples carry their camera height (synthetic-worlds views)."""
    return bool(split) and split.get("data") == "synthetic-worlds"


def format_table(metrics: dict[str, Any]) -> str:
    """The literature's column order, one header row and one value row."""
    header = " | ".join(f"{k:>8s}" for k in METRIC_KEYS)
    values = " | ".join(f"{metrics[k]:8.4f}" for k in METRIC_KEYS)
    notes = (f"{metrics['n_images']} images, crop {metrics['crop']}, cap {metrics['max_depth']} m,"
             f" flip TTA {'on' if metrics['flip_tta'] else 'off'}, median scaling "
             f"{'ON (not metric)' if metrics['median_scaling'] else 'off (metric)'}"
             + (f", {metrics['precision']}" if "precision" in metrics else ""))
    if "split_settings" in metrics:
        notes = f"{metrics.get('model', 'model')} on {describe(metrics['split_settings'])}\n{notes}"
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


PROG = "python -m training.evaluate"
_SPLIT_OPTIONS = ("samples", "seed", "render_size", "focal_range", "texture_scale",
                  "families")


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Command-line options."""
    kinds = "; ".join(f"{kind}: {text}" for kind, text in DATA_KIND_HELP.items())
    ap = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model name/config (default: from weights)")
    ap.add_argument("--weights", default=None,
                    help="trained parts: a bundled name (demo-mirror) or a .safetensors file")
    ap.add_argument("--backbone-weights", default=None,
                    help="open_clip tag, local CLIP weights file, or 'random' (default: the one "
                         "recorded with the weights)")
    ap.add_argument("--device", default="auto",
                    help="auto (default: CUDA when torch sees a GPU, as the node), cpu, cuda or "
                         "cuda:N")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                    help="torch precision to evaluate at, e.g. the node's (default fp32; bf16 "
                         "is what precision auto picks on a CPU with AVX512-BF16 or AMX)")
    ap.add_argument("--data", default=None, choices=DATA_KINDS, metavar="KIND",
                    help=f"data kind, one of: {kinds} (default: the split's, synthetic-indoor)")
    ap.add_argument("--split", default=None, choices=SPLITS,
                    help="synthetic data: 'heldout' (default) = the split package_model "
                         "recorded in the model's sidecar (else seed 1000, 64 images, 240x320, "
                         "the lenses/patterns the model was trained with), which reproduces "
                         "the sidecar's numbers; 'custom' = scenes chosen by --seed, "
                         "--samples, --render-size, --focal-range, --texture-scale (implied by "
                         "any of them)")
    ap.add_argument("--root", default="", help="image root (nyu, kitti, folder)")
    ap.add_argument("--depth-root", default="", help="kitti: annotated depth root")
    ap.add_argument("--list", default="", help="test list file (nyu, kitti)")
    ap.add_argument("--mat", default="", help="nyu-mat: nyu_depth_v2_labeled.mat")
    ap.add_argument("--splits-mat", default="", help="nyu-mat: splits.mat")
    ap.add_argument("--samples", type=int, default=None,
                    help="custom split: number of images (default 64)")
    ap.add_argument("--seed", type=int, default=None,
                    help="custom split: scene seed (default 0; the held-out split is 1000)")
    ap.add_argument("--render-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                    help="custom split: rendered size (default 240 320)")
    ap.add_argument("--focal-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="custom split: random focal length per image, px")
    ap.add_argument("--texture-scale", type=float, default=None,
                    help="custom split: every surface pattern this size, m")
    ap.add_argument("--families", nargs="+", default=None, metavar="FAMILY",
                    help="custom synthetic-worlds split: world families, of "
                         f"{', '.join(WORLD_FAMILIES)} (default: the training families; "
                         f"{HELDOUT_FAMILY} is the held-out one)")
    ap.add_argument("--crop", choices=("none", "eigen", "garg"), default="none",
                    help="evaluation crop (eigen: NYU, garg: KITTI)")
    ap.add_argument("--max-depth", type=float, default=None,
                    help="evaluation cap (m; default: the model's max_depth)")
    ap.add_argument("--flip-tta", action="store_true", help="average with the flipped image")
    ap.add_argument("--median-scale", action="store_true",
                    help="scale each prediction to the truth's median (not metric)")
    ap.add_argument("--out", default="eval", help="folder for metrics.json and plots")
    # no --sparse-depth-fill: copying measured pixels into the prediction is not the
    # literature's evaluation of a depth model
    add_trust_arguments(ap, "--sparse-share of the ground truth's pixels with 1%% noise "
                        "(a simulated LiDAR)", sparse_fill=False, points=False)
    ap.add_argument("--sparse-share", type=float, default=0.01,
                    help="share of valid pixels measured for sparse_depth (default: %(default)s)")
    return ap.parse_args(argv)


def choose_split(args: argparse.Namespace, sidecar: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The split these options name: the model's held-out split, a custom synthetic one, or a
    real dataset's test list (ConfigError when the options contradict each other)."""
    heldout = default_heldout(sidecar)
    custom_opts = [f"--{o.replace('_', '-')}" for o in _SPLIT_OPTIONS
                   if getattr(args, o) is not None]
    if args.data is not None and not args.data.startswith("synthetic-"):
        if args.split is not None or custom_opts:
            given = f"--split {args.split}" if args.split else custom_opts[0]
            raise ConfigError(f"{given} is for synthetic data; --data {args.data} is evaluated "
                              "on its own test list (--list / --mat / --root)")
        source = args.list or args.mat or args.root or "its test list"
        return {"name": "test", "data": args.data, "source": source}
    kind = args.data or heldout["data"]
    if args.data is not None and args.data != heldout["data"]:
        custom_opts.append(f"--data {args.data}")
    if args.split == HELDOUT and custom_opts:
        raise ConfigError(f"{custom_opts[0]} chooses a custom split, but the held-out split is "
                          f"fixed ({describe(heldout)}): drop it or use --split custom")
    if args.split == HELDOUT or (args.split is None and not custom_opts):
        return heldout
    size = args.render_size or [240, 320]
    if args.families is not None and kind != "synthetic-worlds":
        raise ConfigError(f"--families chooses world families of --data synthetic-worlds, "
                          f"not {kind}")
    return heldout_split(kind, 64 if args.samples is None else args.samples,
                         0 if args.seed is None else args.seed, size, args.focal_range,
                         args.texture_scale, name=CUSTOM, families=args.families)


def check_split(split: dict[str, Any]) -> None:
    """A synthetic split's numbers that render no images (before anything is made)."""
    if split["data"].startswith("synthetic-"):
        if split["samples"] < 1 or split["seed"] < 0 or min(split["render_size"]) < 1:
            raise ConfigError("a synthetic split needs --samples >= 1, --seed >= 0 and a "
                              f"positive --render-size; got {describe(split)}")
        unknown = [f for f in split.get("families") or () if f not in WORLD_FAMILIES]
        if unknown:
            raise ConfigError(f"unknown world families {unknown}; families: "
                              f"{', '.join(WORLD_FAMILIES)}")
        focal = split.get("focal_range")
        if focal is not None and not 0 < focal[0] <= focal[1]:
            raise ConfigError(f"--focal-range must be LO HI px with 0 < LO <= HI, not {focal}")


def dataset_for(args: argparse.Namespace, split: dict[str, Any]) -> Any:
    """The images of the split."""
    if split["data"].startswith("synthetic-"):
        return base_dataset(split_data(split), "val")
    data = DataConfig(kind=args.data, root=args.root, depth_root=args.depth_root,
                      val_list=args.list, mat_path=args.mat, splits_mat=args.splits_mat)
    return base_dataset(data, "val")


@command_main(PROG)
def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point: a wrong option, model or dataset is one line and status 2."""
    args = parse_args(argv)
    sidecar = read_sidecar(resolve_weights(args.weights)) if args.weights else None
    split = choose_split(args, sidecar)
    check_split(split)
    backend = TorchBackend(args.model, weights=args.weights,
                           backbone_weights=args.backbone_weights, device=args.device,
                           precision=args.precision)
    trust = trust_settings_from_args(args)
    if split_has_heights(split) and trust.camera_height_m > 0:
        raise ConfigError("--camera-height-m is for a fixed mount; synthetic-worlds views each "
                          "carry their own camera height, which the anchor is told")
    if (trust.scale_anchor == "ground_plane" and not trust.camera_height_m > 0
            and not split_has_heights(split)):
        raise ConfigError("--scale-anchor ground_plane needs --camera-height-m (a fixed mount, "
                          "e.g. KITTI's 1.65 m)")
    if not 0 < args.sparse_share <= 1:
        raise ConfigError(f"--sparse-share must be in (0, 1], not {args.sparse_share}")
    metrics, samples = evaluate(backend, dataset_for(args, split), args.crop, args.flip_tta,
                                args.median_scale, args.max_depth, split=split, trust=trust,
                                sparse_share=args.sparse_share)
    metrics["precision"] = args.precision
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plots = save_plots(samples, out, metrics["max_depth"])
    print(format_table(metrics))
    if "scale_anchor" in metrics:
        print(f"scale anchored with {metrics['scale_anchor']} (as the node's scale_anchor; "
              f"the fit held on {100 * metrics['anchor_held']:.0f}% of images)")
    print(f"wrote {out / 'metrics.json'}" + "".join(f", {p}" for p in plots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
