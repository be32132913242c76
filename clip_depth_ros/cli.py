"""`clip-depth`: small command-line tools around the runtime core.

clip-depth models                      list the bundled model configs
clip-depth predict IMAGE [--model M --weights W --out depth.png]   depth for one image file
clip-depth bag INPUT OUTPUT [--image-topic T ...]   depth, camera_info, points for a rosbag2
clip-depth bench live|model|stages ...       benchmarks
clip-depth node state|transition|param|diagnostics|hz ...   talk to a running depth node
clip-depth demo [--frames N --output DIR]   the main demo: synthetic camera -> live node

Subcommands in LAZY_COMMANDS are registered by name and one-line help only; their module
(rosbags, rclpy, torch, the benchmarks) is imported only when that subcommand is chosen, so
`clip-depth --help` and `clip-depth models` import no ROS and no benchmark code.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Optional


def _models(args: argparse.Namespace) -> int:
    """`clip-depth models`: the configs, then the bundled weights with one labelled score."""
    from .config import (DEFAULT_WEIGHTS, get_model_config, list_bundled_weights, list_models,
                         resolve_weights)
    from .weights import read_sidecar
    bundled = list_bundled_weights()
    rows = [("MODEL", "METHOD", "BACKBONE", "INPUT", "DEPTH", "WEIGHTS", "DESCRIPTION")]
    for name in list_models():
        cfg = get_model_config(name)
        height, width = cfg.input_hw
        rows.append((name, cfg.method, cfg.backbone.name, f"{width}x{height}",
                     f"{cfg.min_depth:g}-{cfg.max_depth:g} m",
                     "bundled" if name in bundled else (cfg.backbone.pretrained or "none"),
                     cfg.description))
    print("model configs:")
    _print_table(rows)
    print("\nbundled weights (the `weights` parameter, --weights; * = the default of the node, "
          "predict and bag):")
    rows = [("", "WEIGHTS", "MODEL", "d1", "AbsRel", "MEASURED ON")]
    for name in bundled:
        meta = read_sidecar(resolve_weights(name))
        score = headline_metrics(meta.get("metadata", {}))
        d1, abs_rel, split = score if score else ("-", "-", "no recorded evaluation")
        rows.append(("*" if name == DEFAULT_WEIGHTS else "", name, meta["config"]["name"],
                     d1, abs_rel, split))
    _print_table(rows)
    return 0


def headline_metrics(metadata: dict) -> Optional[tuple[str, str, str]]:
    """(d1, AbsRel, split label) of a weights sidecar's metadata: the held-out evaluation
    when recorded (with its data, size and seed), else the training validation, labelled so."""
    heldout = metadata.get("heldout_eval") or {}
    metrics, split = heldout.get("metrics"), heldout.get("split") or {}
    if metrics and "d1" in metrics and "abs_rel" in metrics:
        data = str(split.get("data", "?")).replace("synthetic-indoor", "synthetic rooms").replace(
            "synthetic-worlds", "synthetic worlds")
        label = (f"held-out {data} ({split.get('samples', metrics.get('n_images', '?'))}, "
                 f"seed {split.get('seed', '?')})")
        return f"{metrics['d1']:.3f}", f"{metrics['abs_rel']:.3f}", label
    metrics = metadata.get("metrics") or {}
    if "d1" in metrics and "abs_rel" in metrics:
        count = metrics.get("n_images")
        label = "training validation" + (f" ({count})" if count else "")
        return f"{metrics['d1']:.3f}", f"{metrics['abs_rel']:.3f}", label
    return None


def _print_table(rows: list[tuple[str, ...]]) -> None:
    """Left-aligned columns as wide as their longest cell; the last column runs free."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        print("  ".join(cells).rstrip())


# name -> (module with add_arguments(parser) and run(args), one-line help)
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("clip_depth_ros.predict", "depth for one image file (.npy in metres + picture)"),
    "bag": ("clip_depth_ros.bag_cli", "depth (+ camera_info, points) for a rosbag2 recording"),
    "bench": ("clip_depth_ros.benchmarks", "benchmarks: live graph, model, pipeline stages"),
    "node": ("clip_depth_ros.ros.tools", "talk to a running depth node without the ros2 CLI: "
             "lifecycle state, parameters, /diagnostics, topic rate"),
    "demo": ("clip_depth_ros.ros.demo", "the main demo (what `make demo` runs): a synthetic "
             "camera through a live depth node; preview, point cloud, d1 with and without the "
             "anchor"),
}


def _chosen_command(argv: list[str]) -> Optional[str]:
    """The subcommand named on the command line (the first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _add_lazy_commands(sub: Any, chosen: Optional[str]) -> None:
    """Register LAZY_COMMANDS; only the chosen one gets its options (and its imports)."""
    for name, (module_name, help_text) in LAZY_COMMANDS.items():
        parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(parser)
            parser.set_defaults(func=module.run)


def build_parser(argv: Optional[list[str]] = None) -> argparse.ArgumentParser:
    """The clip-depth argument parser for ``argv`` (the lazy subcommand it names is loaded)."""
    from .errors import OneLineParser  # a user's mistake is one line, also for argparse's own
    parser = OneLineParser(prog="clip-depth", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list bundled model configs").set_defaults(func=_models)
    _add_lazy_commands(sub, _chosen_command(sys.argv[1:] if argv is None else argv))
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of `clip-depth`."""
    args = build_parser(argv).parse_args(argv)
    from .errors import ClipDepthError
    try:
        return args.func(args)
    except ClipDepthError as exc:  # a user's mistake: one line, no traceback
        message = " ".join(str(exc).split())
        print(f"clip-depth {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
