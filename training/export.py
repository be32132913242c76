"""Export a depth model to ONNX and check the graph against torch before anyone deploys it.

    python -m training.export --model ViT-B-32-mirror --weights best.safetensors \
        --backbone-weights openai --out model.onnx [--opset 17] [--tolerance-m 0.001]

The graph comes from :func:`clip_depth_ros.export_onnx.export_onnx` (fixed 1x3xHxW input,
text side folded into constants, config in the metadata and in a JSON sidecar beside the
graph with the same stem: ``--out model.onnx`` writes ``model.json``; a JSON of that name that
is not an export's, e.g. the sidecar of ``model.safetensors`` in the same folder, is never
overwritten: choose another --out).  Right after
the export, onnxruntime (CPU) runs random images and a synthetic room against torch; a depth
difference above the tolerance, a graph that still holds the text tower, or metadata that
differs from the config fails the export (exit status 1, files removed).  A wrong option,
model or weights file is one line and exit status 2, with nothing written.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from clip_depth_ros.config import ModelConfig
from clip_depth_ros.errors import ConfigError
from clip_depth_ros.export_onnx import (DEFAULT_OPSET, DEFAULT_TOLERANCE_M, INPUT_NAME,
                                        OUTPUT_NAME, ExportCheckError, check_forward,
                                        config_from_metadata, export_onnx, graph_inputs,
                                        graph_outputs,
                                        graph_summary, probe_feeds, sidecar_path)
from clip_depth_ros.model import create_model

from .cli_errors import OneLineParser, command_main

__all__ = ["ExportCheckError", "check_graph", "export_and_check", "main"]

PROG = "python -m training.export"


def _text_tower_params(config: ModelConfig) -> tuple[int, tuple[int, int]]:
    """Parameter count of the CLIP text tower and the shape of its token embedding."""
    from clip_depth_ros.model.factory import _open_clip
    cfg = _open_clip().get_model_config(config.backbone.name)
    text, embed_dim = cfg["text_cfg"], cfg["embed_dim"]
    width, layers = text.get("width", 512), text.get("layers", 12)
    vocab, context = text.get("vocab_size", 49408), text.get("context_length", 77)
    hidden = int(width * text.get("mlp_ratio", 4.0))
    per_layer = 4 * width * width + 4 * width + 2 * width * hidden + hidden + width + 4 * width
    total = vocab * width + context * width + layers * per_layer + 2 * width + width * embed_dim
    return total, (vocab, width)


def check_graph(model: torch.nn.Module, onnx_path: Path, opset: int) -> dict[str, Any]:
    """Opset, fixed I/O shapes, metadata == config and no text tower left in the graph."""
    config: ModelConfig = model.config
    summary = graph_summary(onnx_path)
    height, width = config.input_hw
    problems = []
    if summary["opset"] < max(17, opset):
        problems.append(f"opset {summary['opset']} < {max(17, opset)}")
    expected_inputs = {name: [1] for name in graph_inputs(config)}
    expected_inputs[INPUT_NAME] = [1, 3, height, width]
    if summary["inputs"] != expected_inputs:
        problems.append(f"inputs {summary['inputs']} != {expected_inputs}")
    expected_outputs = {name: [1, 1, height, width] for name in graph_outputs(config)}
    if summary["outputs"] != expected_outputs:
        problems.append(f"outputs {summary['outputs']} != {expected_outputs}")
    if config_from_metadata(summary["metadata"]) != config:
        problems.append("the model config in the ONNX metadata differs from the model's")
    text_params, token_shape = _text_tower_params(config)
    if list(token_shape) in summary["initializer_shapes"]:
        problems.append(f"a token-embedding-sized initializer {list(token_shape)} is in the graph")
    tensors = list(model.image_encoder.parameters()) + list(model.image_encoder.buffers()) \
        + list(model.head.parameters()) + list(model.head.buffers())
    runtime_bytes = sum(t.numel() for t in tensors) * 4
    image_bytes = sum(p.numel() for p in model.image_encoder.parameters()) * 4
    full_clip_bytes = image_bytes + text_params * 4
    if summary["initializer_bytes"] > 1.05 * runtime_bytes + 2**20:
        problems.append(f"initializers {summary['initializer_bytes']} B exceed the image tower + "
                        f"head ({runtime_bytes} B): text-side weights left in the graph?")
    if summary["file_bytes"] >= full_clip_bytes:
        problems.append(f"file {summary['file_bytes']} B is not below the full CLIP size "
                        f"({full_clip_bytes} B)")
    if problems:
        raise ExportCheckError(f"{onnx_path}: " + "; ".join(problems))
    return {"opset": summary["opset"], "input_shape": summary["inputs"][INPUT_NAME],
            "file_bytes": summary["file_bytes"], "runtime_bytes": runtime_bytes,
            "full_clip_bytes": full_clip_bytes, "ops": summary["ops"]}


def export_and_check(model: torch.nn.Module, out: Path, opset: int = DEFAULT_OPSET,
                     tolerance_m: float = DEFAULT_TOLERANCE_M,
                     feeds: Optional[Sequence[dict[str, np.ndarray]]] = None) -> dict[str, Any]:
    """Export (the exporter checks onnxruntime against torch on its probe feeds), then check
    the graph's shape and size and, given ``feeds``, parity on them too; on failure remove the
    files and raise :class:`ExportCheckError`.  Returns the report."""
    path = export_onnx(model, out, opset, check=True, tolerance_m=tolerance_m)
    feeds = list(probe_feeds(model.config) if feeds is None else feeds)
    try:
        report = check_graph(model, path, opset)
        report["max_abs_diff_m"] = check_forward(model, path, feeds, tolerance_m)
    except Exception:
        path.unlink(missing_ok=True)
        sidecar_path(path).unlink(missing_ok=True)
        raise
    report.update(onnx=str(path), sidecar=str(sidecar_path(path)), samples=len(feeds),
                  tolerance_m=tolerance_m)
    return report


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Command-line arguments."""
    ap = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model name or config JSON (default: the "
                    "config recorded with --weights)")
    ap.add_argument("--weights", default=None, help="trained parts (.safetensors + sidecar)")
    ap.add_argument("--backbone-weights", default=None, help="open_clip tag, local CLIP weights "
                    "file, or 'random'")
    ap.add_argument("--out", required=True, type=Path,
                    help="output graph, a .onnx path; its sidecar is the same path with .json "
                         "(model.onnx -> model.json beside it), and an existing JSON of that "
                         "name that is not an export's (a weights sidecar) is never overwritten")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                    help=f"ONNX opset, >= 17 (default {DEFAULT_OPSET})")
    ap.add_argument("--tolerance-m", type=float, default=DEFAULT_TOLERANCE_M,
                    help="max abs depth difference onnxruntime vs torch, metres")
    return ap.parse_args(argv)


@command_main(PROG)
def main(argv: Optional[list[str]] = None) -> int:
    """Export + check; exit status 1 when a check fails, 2 for a wrong option or model."""
    args = parse_args(argv)
    if args.out.suffix != ".onnx":
        raise ConfigError(f"--out {args.out}: give a .onnx path (its sidecar is the same path "
                          "with .json)")
    if args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a folder; give a .onnx file path")
    if args.tolerance_m < 0:
        raise ConfigError(f"--tolerance-m must be >= 0 m, not {args.tolerance_m}")
    model = create_model(args.model, weights=args.weights, backbone_weights=args.backbone_weights)
    try:
        report = export_and_check(model, args.out, args.opset, args.tolerance_m)
    except ExportCheckError as exc:
        print(f"EXPORT FAILED (files removed): {exc}", file=sys.stderr)
        return 1
    mib = 2.0 ** 20
    print(f"exported {model.config.name} -> {report['onnx']} (+ {report['sidecar']})")
    print(f"  opset {report['opset']}, input {report['input_shape']}, "
          f"{report['file_bytes'] / mib:.1f} MiB (full CLIP {report['full_clip_bytes'] / mib:.1f} "
          f"MiB, image tower + head {report['runtime_bytes'] / mib:.1f} MiB)")
    print(f"  onnxruntime vs torch: max abs depth diff {report['max_abs_diff_m']:.3g} m over "
          f"{report['samples']} samples (tolerance {report['tolerance_m']:.3g} m)")
    print(json.dumps({k: v for k, v in report.items() if k != "ops"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
