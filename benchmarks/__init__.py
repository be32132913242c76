"""Benchmarks: scripts that print tables (run with python -m benchmarks.<name>).

``clip-depth bench`` exposes them from a source checkout:

  clip-depth bench live [--rate R | --find-peak]  the node in a live graph (latency, peak rate)
  clip-depth bench model [--backends ...]         network / frame latency and throughput
  clip-depth bench stages [--models ...]          per-stage table of the node's pipeline
"""
from __future__ import annotations

import argparse
from typing import Any


def _lazy(module: str) -> Any:
    """A func for set_defaults that imports the benchmark module (torch, rclpy) only when run."""
    def run(args: argparse.Namespace) -> int:
        import importlib
        return importlib.import_module(module).run(args)
    return run


def add_subcommand(subparsers: Any) -> None:
    """Register `bench` with its three modes on a CLI's subparsers."""
    from benchmarks import live_graph  # argparse only at import
    bench = subparsers.add_parser("bench", help="benchmarks: live graph, model, pipeline stages",
                                  description="Benchmarks (from a source checkout).")
    modes = bench.add_subparsers(dest="bench_mode", required=True)
    live = modes.add_parser("live", help=live_graph.__doc__.splitlines()[0])
    live_graph.add_arguments(live)
    live.set_defaults(func=live_graph.run)
    model = modes.add_parser("model", help="model-only and frame latency / throughput per "
                             "backend, mode, precision and size")
    stages = modes.add_parser("stages", help="per-stage latency of the node's pipeline")
    # the two scripts import torch and rclpy: their options live in a light module
    from benchmarks.options import add_model_arguments, add_stages_arguments
    add_model_arguments(model)
    add_stages_arguments(stages)
    model.set_defaults(func=_lazy("benchmarks.model_latency"))
    stages.set_defaults(func=_lazy("benchmarks.pipeline_latency"))
