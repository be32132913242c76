"""Export a depth model to ONNX and check the graph against torch before anyone deploys it.

    python -m training.export --model ViT-B-32-mirror --weights best.safetensors \
        --backbone-weights openai --out model.onnx [--opset 17] [--tolerance-m 0.001]

The graph comes from :func:`clip_depth_ros.export_onnx.export_onnx` (fixed 1x3xHxW input,
text side folded into constants, config in the metadata and in ``model.json``).  Right after
the export, onnxruntime (CPU) runs random images and a synthetic room against torch; a depth
difference above the tolerance, a graph that still holds the text tower, or metadata that
differs from the config fails the export (exit status 1, files removed).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from clip_depth_ros.backends.base import normalize_nchw, resize_to_input
from clip_depth_ros.config import ModelConfig
from clip_depth_ros.export_onnx import (DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME,
                                        config_from_metadata, export_onnx, graph_summary,
                                        sidecar_path)
from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.model import create_model

DEFAULT_TOLERANCE_M = 1e-3


class ExportCheckError(RuntimeError):
    """The exported graph does not match torch or the export contract."""


def sample_inputs(config: ModelConfig, n_random: int = 3, synthetic: bool = True,
                  seed: int = 0) -> list[np.ndarray]:
    """Normalised 1x3xHxW batches: random uint8 images and a rendered synthetic room."""
    height, width = config.input_hw
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n_random)]
    if synthetic:
        from clip_depth_ros.synthetic import demo_trajectory, random_indoor_scene, render
        scene = random_indoor_scene(seed)
        f_px = config.canonical_focal_px
        intrinsics = Intrinsics(f_px, f_px, (width - 1) / 2, (height - 1) / 2, width, height)
        rgb, _ = render(scene, demo_trajectory(scene, 1)[0], intrinsics)
        images.append(resize_to_input(rgb, config))
    return [normalize_nchw(image, config) for image in images]


def onnx_parity(model: torch.nn.Module, onnx_path: Path, inputs: Sequence[np.ndarray],
                tolerance_m: float = DEFAULT_TOLERANCE_M) -> float:
    """Max |depth_onnxruntime - depth_torch| in metres over ``inputs``; raises
    :class:`ExportCheckError` above ``tolerance_m`` (or on NaN)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    device = next(model.parameters()).device
    max_diff = 0.0
    for batch in inputs:
        with torch.no_grad():
            expected = model(torch.from_numpy(batch).to(device)).float().cpu().numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        if got.shape != expected.shape:
            raise ExportCheckError(f"onnxruntime output {got.shape} != torch {expected.shape}")
        diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
        max_diff = diff if not np.isfinite(diff) else max(max_diff, diff)
        if not np.isfinite(max_diff):
            break
    if not max_diff <= tolerance_m:  # also catches NaN
        raise ExportCheckError(f"{onnx_path}: onnxruntime differs from torch by {max_diff:.3g} m "
                               f"(tolerance {tolerance_m:.3g} m)")
    return max_diff


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
    if summary["inputs"] != {INPUT_NAME: [1, 3, height, width]}:
        problems.append(f"inputs {summary['inputs']} != {INPUT_NAME} [1, 3, {height}, {width}]")
    if summary["outputs"] != {OUTPUT_NAME: [1, 1, height, width]}:
        problems.append(f"outputs {summary['outputs']} != {OUTPUT_NAME} [1, 1, {height}, {width}]")
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
                     inputs: Optional[Sequence[np.ndarray]] = None) -> dict[str, Any]:
    """Export, check the graph and the onnxruntime/torch parity; on failure remove the files
    and raise :class:`ExportCheckError`.  Returns the report."""
    path = export_onnx(model, out, opset)
    try:
        report = check_graph(model, path, opset)
        inputs = sample_inputs(model.config) if inputs is None else inputs
        report["max_abs_diff_m"] = onnx_parity(model, path, inputs, tolerance_m)
    except Exception:
        path.unlink(missing_ok=True)
        sidecar_path(path).unlink(missing_ok=True)
        raise
    report.update(onnx=str(path), sidecar=str(sidecar_path(path)), samples=len(inputs),
                  tolerance_m=tolerance_m)
    return report


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Command-line arguments."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model name or config JSON (default: the "
                    "config recorded with --weights)")
    ap.add_argument("--weights", default=None, help="trained parts (.safetensors + sidecar)")
    ap.add_argument("--backbone-weights", default=None, help="open_clip tag, local CLIP weights "
                    "file, or 'random'")
    ap.add_argument("--out", required=True, type=Path, help="output .onnx (model.json beside)")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    ap.add_argument("--tolerance-m", type=float, default=DEFAULT_TOLERANCE_M,
                    help="max abs depth difference onnxruntime vs torch, metres")
    return ap.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    """Export + check; exit status 1 when a check fails."""
    args = parse_args(argv)
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
