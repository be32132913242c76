"""Command-line options of the benchmark scripts, importable without torch or rclpy (the
`clip-depth` CLI builds its `bench` parsers from them)."""
from __future__ import annotations

import argparse
from pathlib import Path

TORCH_MODES = ("eager", "fast", "compile")
BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x480, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return width, height


def add_model_arguments(ap: argparse.ArgumentParser) -> None:
    """benchmarks/model_latency.py options (also `clip-depth bench model`)."""
    ap.add_argument("--models", nargs="+", default=["demo-mirror"],
                    help="model config names, or shipped weights names (demo-mirror)")
    ap.add_argument("--backends", nargs="+", choices=BACKENDS, default=["torch", "onnxruntime"])
    ap.add_argument("--modes", nargs="+", choices=TORCH_MODES, default=["eager", "fast"],
                    help="torch execution modes (see the module docstring)")
    ap.add_argument("--device", default="auto",
                    help="auto (CUDA when torch sees a GPU, as the node; default), cpu, cuda or "
                         "cuda:N")
    ap.add_argument("--precisions", nargs="+", choices=("fp32", "fp16", "bf16"),
                    default=["fp32"])
    ap.add_argument("--sizes", nargs="+", type=parse_size, default=[(640, 480)],
                    help="camera image sizes for the frame timing")
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1],
                    help="torch forward batch sizes for throughput (1 = latency rows only)")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = library default)")
    ap.add_argument("--cache-dir", default=str(Path("/tmp") / "clip_depth_bench_engines"),
                    help="where onnxruntime/tensorrt keep exported graphs and engines")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")


def add_stages_arguments(parser: argparse.ArgumentParser) -> None:
    """benchmarks/pipeline_latency.py options (also `clip-depth bench stages`)."""
    parser.add_argument("--models", nargs="+", default=["tiny-mirror", "ViT-B-32-mirror"])
    parser.add_argument("--sizes", nargs="+", type=parse_size,
                        default=[(640, 480), (1280, 720)], help="WIDTHxHEIGHT of the input")
    parser.add_argument("--iters", type=int, default=30, help="timed frames per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed frames first")
    parser.add_argument("--threads", type=int, default=0,
                        help="inference threads (torch intra-op, openvino / onnxruntime "
                             "sessions; 0 = the library's default)")
    parser.add_argument("--backend", choices=("auto", "torch", "onnxruntime", "openvino"),
                        default="auto",
                        help="auto (default) = what the node's backend:=auto runs here "
                             "(openvino on a CPU with native bf16 where installed, else torch)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto (default) = CUDA when torch sees a GPU, as the node")
    parser.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                        help="auto = what the node's precision:=auto runs on this machine "
                             "(torch: bf16 on a CPU with AVX512-BF16 or AMX, else fp32)")
    parser.add_argument("--fast-path", choices=("auto", "always", "never"), default="never",
                        help="torch fast path (device pre/post, points, colours; CUDA graphs "
                        "on cuda): its device pass is timed as one stage")
    parser.add_argument("--trust", action="store_true",
                        help="a rendered room through the trust steps too (ground-plane anchor "
                             "+ temporal filter, confidence, min_confidence, edge filter), each "
                             "timed as its own stage")
    parser.add_argument("--json", metavar="PATH", help="also write all results as JSON here")
