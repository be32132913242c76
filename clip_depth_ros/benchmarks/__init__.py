"""Benchmarks: scripts that print tables, shipped with the package (`clip-depth bench`).

  clip-depth bench live [--rate R | --find-peak]  the node in a live graph (latency, peak rate)
  clip-depth bench model [--backends ...]         network / frame latency and throughput
  clip-depth bench stages [--models ...]          per-stage table of the node's pipeline

This module and :mod:`.options` are argparse only: the measuring modules (torch, rclpy) are
imported when their mode runs.  Like ``ros/``, this package sits on top of the runtime core and
may use the ROS adapter; nothing in the core imports it.  In a checkout the top-level
``benchmarks/`` folder keeps ``python -m benchmarks.<name>`` working as thin entry points.
"""
from __future__ import annotations

import argparse
import importlib
from typing import Callable

# bench mode -> (the module that measures, one-line help)
MODES = {
    "live": ("live_graph", "the depth node in a live graph: latency, throughput, peak rate"),
    "model": ("model_latency", "model-only and frame latency / throughput per backend, mode, "
              "precision and size"),
    "stages": ("pipeline_latency", "per-stage latency of the node's pipeline"),
}


def _options(mode: str) -> Callable[[argparse.ArgumentParser], None]:
    """The function that adds a mode's options, from a module light enough to import now."""
    from . import options
    if mode == "live":
        from . import live_graph  # argparse only at import; rclpy loads when it runs
        return live_graph.add_arguments
    return {"model": options.add_model_arguments, "stages": options.add_stages_arguments}[mode]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`clip-depth bench` and its modes (registered by the CLI's lazy command table)."""
    parser.description = "Benchmarks: each prints a table (targets reported, never enforced)."
    modes = parser.add_subparsers(dest="bench_mode", required=True, metavar="MODE")
    for mode, (_, help_text) in MODES.items():
        _options(mode)(modes.add_parser(mode, help=help_text, description=help_text))


def run(args: argparse.Namespace) -> int:
    """Run the chosen mode: its module (torch, rclpy) is imported only now."""
    module = importlib.import_module(f"{__name__}.{MODES[args.bench_mode][0]}")
    return module.run(args)
