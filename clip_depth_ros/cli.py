"""`clip-depth`: small command-line tools around the runtime core.

clip-depth models                      list the bundled model configs
clip-depth predict IMAGE [--model M --weights W --out depth.png]   depth for one image file
clip-depth bag INPUT OUTPUT [--image-topic T ...]   depth, camera_info, points for a rosbag2
clip-depth bench live|model|stages ...       benchmarks (source checkout; see benchmarks/)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Optional


def _models(args: argparse.Namespace) -> int:
    from .config import get_model_config, list_bundled_weights, list_models, resolve_weights
    from .weights import read_sidecar
    print("model configs:")
    for name in list_models():
        cfg = get_model_config(name)
        height, width = cfg.input_hw
        print(f"{name:22s} {cfg.method:10s} {cfg.backbone.name:14s} {width}x{height}  "
              f"{cfg.min_depth:g}-{cfg.max_depth:g} m  {cfg.description}")
    print("bundled weights (use as the `weights` parameter):")
    for name in list_bundled_weights():
        meta = read_sidecar(resolve_weights(name))
        metrics = meta.get("metadata", {}).get("metrics", {})
        summary = ", ".join(f"{k} {metrics[k]:.3f}" for k in ("d1", "abs_rel") if k in metrics)
        print(f"{name:22s} model {meta['config']['name']}  {summary}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from .backends import create_backend
    from .colorize import colorize_depth
    bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if bgr is None:
        print(f"cannot read image {args.image}", file=sys.stderr)
        return 2
    backend = create_backend("torch", model=args.model, weights=args.weights,
                             backbone_weights=args.backbone_weights, device=args.device)
    depth = backend.infer(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    np.save(args.out.rsplit(".", 1)[0] + ".npy", depth)
    cfg = backend.config
    cv2.imwrite(args.out, colorize_depth(depth, cfg.min_depth, float(np.percentile(depth, 99))))
    print(f"depth {depth.shape[1]}x{depth.shape[0]}: {depth.min():.2f}-{depth.max():.2f} m, "
          f"median {np.median(depth):.2f} m -> {args.out} (+ .npy in metres)")
    return 0


def _bag_module():
    from . import bag  # numpy/cv2 only at import; rosbags and torch load when a bag runs
    return bag


def _no_bench(args: argparse.Namespace) -> int:
    print("clip-depth bench needs the source checkout's benchmarks/ folder: run it from the "
          "repository root (python -m benchmarks.live_graph / model_latency / "
          "pipeline_latency ...)", file=sys.stderr)
    return 2


def _bench_subcommand() -> Optional[Callable[[Any], None]]:
    """The benchmarks ship with the source tree (benchmarks/), not the wheel: found on the
    path, or in the current directory when it is the checkout's root."""
    try:
        from benchmarks import add_subcommand
    except ImportError:
        root = Path.cwd()
        if not ((root / "benchmarks" / "__init__.py").is_file()
                and (root / "clip_depth_ros").is_dir()):
            return None
        sys.path.insert(0, str(root))
        try:
            from benchmarks import add_subcommand
        except ImportError:
            return None
    return add_subcommand


def build_parser() -> argparse.ArgumentParser:
    """The clip-depth argument parser."""
    parser = argparse.ArgumentParser(prog="clip-depth", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list bundled model configs").set_defaults(func=_models)
    pred = sub.add_parser("predict", help="depth for one image file")
    pred.add_argument("image")
    pred.add_argument("--model", default=None)
    pred.add_argument("--weights", default=None)
    pred.add_argument("--backbone-weights", default=None)
    pred.add_argument("--device", default="cpu")
    pred.add_argument("--out", default="depth.png")
    pred.set_defaults(func=_predict)
    bag = sub.add_parser("bag", help="depth (+ camera_info, points) for a rosbag2 recording")
    _bag_module().add_arguments(bag)
    bag.set_defaults(func=_bag_module().run)
    add_bench = _bench_subcommand()
    if add_bench is None:
        fallback = sub.add_parser("bench", help="benchmarks (run from a source checkout)")
        fallback.add_argument("rest", nargs=argparse.REMAINDER)
        fallback.set_defaults(func=_no_bench)
    else:
        add_bench(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of `clip-depth`."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
