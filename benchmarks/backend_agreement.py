"""How far each backend/precision's depth is from float32 torch, and from the truth.

On rendered world views (every family, the held-out hall included; random lens and sensor;
seeds the demo model never trained on), each configuration runs the full frame path
(``infer``: preprocess, network, resize back) at the view's resolution and lens.  Per view:
the median relative deviation from float32 torch's depth, and d1 / AbsRel against the
rendered depth.  Prints one table (median, mean and worst view of the deviation; d1 / AbsRel
over all views) and optionally writes JSON.

    python -m benchmarks.backend_agreement --views-per-family 4
    python -m benchmarks.backend_agreement --configs torch:bf16 openvino:bf16 onnxruntime:fp32
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

import numpy as np

from clip_depth_ros.backends import create_backend, resolve_precision
from clip_depth_ros.errors import ClipDepthError, ConfigError, OneLineParser
from clip_depth_ros.synthetic.worlds import WORLD_FAMILIES, random_world, world_view
from training.metrics import eval_depth

SEED_BASE = 90_000  # far above the demo model's training seeds


def parse_config(text: str) -> tuple[str, str]:
    """'backend:precision' -> (backend, precision)."""
    backend, _, precision = text.partition(":")
    if not backend or not precision:
        raise argparse.ArgumentTypeError(f"expected BACKEND:PRECISION, got '{text}'")
    try:
        return backend, resolve_precision(backend, precision)
    except ConfigError as exc:  # an unknown backend, or a precision it does not run
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="python -m benchmarks.backend_agreement", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="demo-mirror",
                    help="bundled weights name or .safetensors file (default demo-mirror)")
    ap.add_argument("--configs", nargs="+", type=parse_config,
                    default=[("torch", "bf16"), ("openvino", "bf16")],
                    help="BACKEND:PRECISION pairs compared with torch:fp32 (default "
                         "torch:bf16 openvino:bf16)")
    ap.add_argument("--views-per-family", type=int, default=4,
                    help="views of each of the six world families (default 4)")
    ap.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"),
                    help="rendered image size (default 640 480)")
    ap.add_argument("--json", default="", help="also write the rows here")
    return ap


def views(per_family: int, width: int, height: int):
    """(family, rgb, true depth, intrinsics) for per_family views of each family."""
    for k, family in enumerate(WORLD_FAMILIES):
        for i in range(per_family):
            seed = SEED_BASE + 100 * k + i
            rgb, depth, intrinsics, _ = world_view(family, seed, 0, width, height,
                                                   world=random_world(family, seed))
            yield family, rgb, depth, intrinsics


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    reference = create_backend("torch", model=None, weights=args.weights, precision="fp32")
    backends = {f"{b}:{p}": create_backend(b, model=None, weights=args.weights, precision=p)
                for b, p in args.configs}
    rows: dict[str, dict[str, list]] = {name: {"dev": [], "d1": [], "absrel": []}
                                        for name in ["torch:fp32", *backends]}
    width, height = args.size
    for family, rgb, true, intrinsics in views(args.views_per_family, width, height):
        ref = reference.infer(rgb, intrinsics)
        for name, backend in [("torch:fp32", reference), *backends.items()]:
            depth = ref if backend is reference else backend.infer(rgb, intrinsics)
            rows[name]["dev"].append(float(np.median(np.abs(depth / ref - 1.0))))
            metrics = eval_depth(depth, true, max_depth=backend.config.max_depth)
            rows[name]["d1"].append(metrics["d1"])
            rows[name]["absrel"].append(metrics["abs_rel"])
        print(f"  {family}: " + ", ".join(f"{n} {100 * r['dev'][-1]:.3f}%"
                                         for n, r in rows.items() if n != "torch:fp32"),
              flush=True)
    out = []
    for name, r in rows.items():
        dev = np.asarray(r["dev"])
        out.append({"config": name, "views": len(dev), "dev_median_pct": 100 * np.median(dev),
                    "dev_mean_pct": 100 * dev.mean(), "dev_worst_pct": 100 * dev.max(),
                    "d1": float(np.mean(r["d1"])), "absrel": float(np.mean(r["absrel"]))})
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.views_per_family < 1:
        parser.error("--views-per-family must be at least 1")
    try:
        rows = run(args)
    except ClipDepthError as exc:  # a user's mistake (weights not found, ...): one line
        parser.error(str(exc))
    print(f"\n{'config':<18} {'views':>5} {'median dev':>11} {'mean dev':>9} {'worst view':>11}"
          f" {'d1':>7} {'AbsRel':>7}")
    for row in rows:
        print(f"{row['config']:<18} {row['views']:>5} {row['dev_median_pct']:>10.3f}% "
              f"{row['dev_mean_pct']:>8.3f}% {row['dev_worst_pct']:>10.3f}% {row['d1']:>7.4f} "
              f"{row['absrel']:>7.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
