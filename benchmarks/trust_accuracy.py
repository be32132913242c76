"""Metric accuracy with each scale anchor, and how well the confidence ranks errors.

Held-out synthetic rooms and streets (scene seeds the bundled models never trained on),
640x480 at several focal lengths: the model runs once per view, then the node's own
post-model steps (``trust.ScaleAnchor``, single frames, no temporal filter) anchor it with

  none          the model's own scale
  ground_plane  the true camera height (the renderer's pose)
  sparse 0.1% / 0.5% / 1%   that share of pixels measured, 1% multiplicative noise
  oracle        median scaling to the truth (the ceiling no anchor can beat)

Printed per split and lens: metric d1 and AbsRel (mean over views), the median
anchored/true scale, and how often the anchor held.  Confidence (``confidence.depth_confidence``
with the model's own term): the sparsification curve (AbsRel of the kept pixels as the least
confident are removed), its AUSE against the oracle ordering by true error, and the share of
views where the more confident half has the lower AbsRel; the same once more on the
prediction median-scaled to the truth ("shape": how well it ranks the errors an anchor
cannot remove, the frame's scale error set aside).  ``--plot`` draws the curves.
A benchmark prints tables; nothing here asserts.  ``python -m benchmarks.trust_accuracy -h``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clip_depth_ros.confidence import depth_confidence  # noqa: E402
from clip_depth_ros.frame import FrameContext, FrameRequest  # noqa: E402
from clip_depth_ros.geometry import Intrinsics  # noqa: E402
from clip_depth_ros.synthetic import random_pose, random_scene, render  # noqa: E402
from clip_depth_ros.trust import ScaleAnchor, TrustSettings  # noqa: E402

METHODS = ("none", "ground_plane", "sparse 0.1%", "sparse 0.5%", "sparse 1%", "oracle")
CAP_M = {"indoor": 10.0, "street": 80.0}
FRACTIONS = np.linspace(0.0, 0.9, 10)


def views(kind: str, count: int, seed: int, focal: float) -> list[tuple]:
    """(rgb, true depth, camera height, intrinsics) of held-out views at 640x480."""
    camera = Intrinsics(focal, focal, 319.5, 239.5, 640, 480)
    out = []
    for i in range(count):
        scene = random_scene(kind, seed + i)
        pose = random_pose(scene, np.random.default_rng([seed, i]))
        rgb, depth = render(scene, pose, camera)
        out.append((rgb, depth, float(pose.position[2]), camera))
    return out


def metrics(pred: np.ndarray, true: np.ndarray, cap: float) -> tuple[float, float, float]:
    """(d1, AbsRel, median pred/true) over valid truth below the cap."""
    valid = np.isfinite(true) & (true > 1e-3) & (true <= cap) & np.isfinite(pred) & (pred > 0)
    p, t = pred[valid], true[valid]
    ratio = np.maximum(p / t, t / p)
    return float((ratio < 1.25).mean()), float(np.mean(np.abs(p - t) / t)), \
        float(np.median(p / t))


def sparse_measurements(true: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A sparse metric depth image: ``share`` of valid pixels, 1% noise, NaN elsewhere."""
    rng = np.random.default_rng(seed)
    sparse = np.full(true.shape, np.nan, np.float32)
    pick = (rng.random(true.shape) < share) & np.isfinite(true) & (true > 0)
    sparse[pick] = true[pick] * (1 + 0.01 * rng.standard_normal(int(pick.sum())))
    return sparse


def anchored(method: str, pred: np.ndarray, view: tuple, seed: int) -> tuple[np.ndarray, bool]:
    """The depth after ``method``'s anchor (through trust.ScaleAnchor, as the node runs it)."""
    rgb, true, height, camera = view
    if method == "oracle":
        return pred * np.float32(oracle_scale(pred, true, np.inf)), True
    if method == "none":
        return pred, True
    settings = TrustSettings(scale_anchor="ground_plane" if method == "ground_plane"
                             else "sparse_depth", camera_height_m=height,
                             scale_time_constant_s=0.0)
    sparse = None if method == "ground_plane" else sparse_measurements(
        true, float(method.split()[1].rstrip("%")) / 100, seed)  # "sparse 0.5%": 0.005
    step = ScaleAnchor(settings)
    from clip_depth_ros.frame import FrameOutputs
    out = step(FrameOutputs(depth_m=pred.copy(), intrinsics=camera),
               FrameContext(rgb, camera, FrameRequest(), 0.0, sparse))
    return out.depth_m, step.status.source == settings.scale_anchor


def sparsification(pred: np.ndarray, true: np.ndarray, conf: np.ndarray,
                   cap: float) -> tuple[np.ndarray, np.ndarray]:
    """AbsRel of the kept pixels as FRACTIONS of the least confident (and, for the oracle,
    of the largest errors) are removed."""
    valid = np.isfinite(true) & (true > 1e-3) & (true <= cap) & np.isfinite(conf)
    err = np.abs(pred[valid] - true[valid]) / true[valid]
    by_conf, by_err = err[np.argsort(conf[valid])], np.sort(err)[::-1]
    n = len(err)
    curve = np.array([by_conf[int(f * n):].mean() for f in FRACTIONS])
    oracle = np.array([by_err[int(f * n):].mean() for f in FRACTIONS])
    return curve, oracle


def oracle_scale(pred: np.ndarray, true: np.ndarray, cap: float) -> float:
    """median(true / pred) over the valid pixels: the frame's scale error."""
    valid = np.isfinite(true) & (true > 1e-3) & (true <= cap) & np.isfinite(pred) & (pred > 0)
    return float(np.median(true[valid] / pred[valid])) if valid.any() else 1.0


def evaluate(backend: Any, kind: str, count: int, seed: int, focal: float) -> dict[str, Any]:
    """One split at one lens: per method d1 / AbsRel / scale / held, and the confidence."""
    cap = CAP_M[kind]
    rows = {m: [] for m in METHODS}
    curves, oracles, halves, shape_halves, shape_ause = [], [], [], [], []
    for i, view in enumerate(views(kind, count, seed, focal)):
        rgb, true, _, camera = view
        out = backend.infer_frame(rgb, camera)
        for method in METHODS:
            depth, held = anchored(method, out.depth_m, view, seed + i)
            rows[method].append((*metrics(depth, true, cap), held))
        conf = depth_confidence(out.depth_m, out.model_confidence)
        curve, oracle = sparsification(out.depth_m, true, conf, cap)
        curves.append(curve)
        oracles.append(oracle)
        halves.append(curve[5] < curve[0])  # the more confident half beats all pixels
        shape, shape_oracle = sparsification(out.depth_m * oracle_scale(out.depth_m, true, cap),
                                             true, conf, cap)
        shape_halves.append(shape[5] < shape[0])
        shape_ause.append(np.trapezoid(shape - shape_oracle, FRACTIONS))
    table = {m: {"d1": float(np.mean([r[0] for r in v])),
                 "abs_rel": float(np.mean([r[1] for r in v])),
                 "median_scale": float(np.median([r[2] for r in v])),
                 "held": float(np.mean([r[3] for r in v]))} for m, v in rows.items()}
    curve, oracle = np.mean(curves, axis=0), np.mean(oracles, axis=0)
    return {"kind": kind, "focal_px": focal, "views": count, "methods": table,
            "sparsification": curve.tolist(), "oracle_sparsification": oracle.tolist(),
            "ause": float(np.trapezoid(curve - oracle, FRACTIONS)),
            "confident_half_better": float(np.mean(halves)),
            "shape_ause": float(np.mean(shape_ause)),
            "shape_confident_half_better": float(np.mean(shape_halves))}


def print_result(result: dict[str, Any]) -> None:
    """One table per split and lens."""
    print(f"\n{result['kind']} x{result['views']} at {result['focal_px']:.0f} px (640x480)")
    print(f"{'anchor':<14}{'d1':>8}{'AbsRel':>9}{'scale':>8}{'held':>7}")
    for method, row in result["methods"].items():
        print(f"{method:<14}{row['d1']:8.3f}{row['abs_rel']:9.3f}{row['median_scale']:8.3f}"
              f"{100 * row['held']:6.0f}%")
    print(f"confidence: AUSE {result['ause']:.4f}, more confident half better on "
          f"{100 * result['confident_half_better']:.0f}% of views; median-scaled: AUSE "
          f"{result['shape_ause']:.4f}, better on "
          f"{100 * result['shape_confident_half_better']:.0f}%")


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Sparsification curves (confidence vs oracle) per split and lens."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.4), squeeze=False)
    for ax, res in zip(axes[0], results):
        ax.plot(100 * FRACTIONS, res["sparsification"], "o-", label="by confidence")
        ax.plot(100 * FRACTIONS, res["oracle_sparsification"], "k--", label="by true error")
        ax.set_title(f"{res['kind']} {res['focal_px']:.0f} px, AUSE {res['ause']:.3f}")
        ax.set_xlabel("least trusted pixels removed (%)")
        ax.set_ylabel("AbsRel of the rest")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def add_weights_option(ap: argparse.ArgumentParser) -> None:
    """--weights: the model every trust benchmark measures."""
    ap.add_argument("--weights", default="demo-mirror", help="bundled name or .safetensors "
                    "(default: %(default)s)")


def reference_backend(weights: str) -> Any:
    """The torch backend on the plain numpy frame path, as the benchmarks measure a model."""
    from clip_depth_ros.backends import create_backend
    return create_backend("torch", model=None, weights=weights, fast_path="never")


def main(argv: Optional[list[str]] = None) -> int:
    """Run the splits and lenses, print the tables (and write JSON / a plot)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_weights_option(ap)
    ap.add_argument("--rooms", type=int, default=24, help="held-out rooms (default: %(default)s)")
    ap.add_argument("--streets", type=int, default=8, help="held-out streets (default: "
                    "%(default)s; 0 = none)")
    ap.add_argument("--focals", type=float, nargs="+", default=[300.0, 525.0, 800.0],
                    help="focal lengths in px at 640x480 (default: 300 525 800)")
    ap.add_argument("--seed", type=int, default=5000, help="first held-out scene seed "
                    "(training used other seeds; default: %(default)s)")
    ap.add_argument("--json", type=Path, default=None, help="write all results here")
    ap.add_argument("--plot", type=Path, default=None, help="sparsification curves (PNG)")
    args = ap.parse_args(argv)
    backend = reference_backend(args.weights)
    results = []
    for kind, count in (("indoor", args.rooms), ("street", args.streets)):
        for focal in args.focals if count else []:
            results.append(evaluate(backend, kind, count, args.seed, focal))
            print_result(results[-1])
    if args.json:
        args.json.write_text(json.dumps({"weights": args.weights, "results": results},
                                        indent=2))
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
