"""Model latency and throughput per backend, mode, precision and image size (ros2_benchmark-style).

Two timings per row, both with device synchronisation:

  model  the network alone on a prepared (1, 3, h, w) input: ``TorchBackend.run`` /
         the onnxruntime / OpenVINO / TensorRT session; with ``graphs`` the forward is captured once as a
         CUDA graph and replayed.  Batch > 1 rows time the torch forward on a (B, 3, h, w)
         batch and report images/s (the exported graphs have a fixed batch of 1).
  frame  uint8 image in -> metric depth (numpy, image resolution) out through the backend's
         ``infer``: upload, resize, normalise, network, resize back, download.

torch modes: ``eager`` (numpy pre/post on the CPU, torch ops on CUDA), ``fast`` (preallocated
buffers, pre/post on the device; on CUDA with CUDA graphs), ``compile`` (torch.compile on top of
fast).  Models other than shipped weights get random backbone weights: latency does not depend
on the weight values.  Prints a table, optionally writes JSON; targets are reported, never
enforced.  ``clip-depth bench model --help``.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from typing import Any, Callable, Optional

import numpy as np
import torch

from .options import BACKENDS, TORCH_MODES, add_model_arguments
from .pipeline_latency import header_line, load_average, machine_info
from ..backends import create_backend
from ..backends.torch_backend import resolve_device
from ..preprocessing import camera_inputs, preprocess
from ..config import list_bundled_weights
from ..synthetic import demo_trajectory, random_indoor_scene, render
from ..geometry import Intrinsics

def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def percentiles(ms: list[float]) -> dict[str, float]:
    """p50 / p95 / p99 / mean milliseconds."""
    values = np.asarray(ms)
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "p99": float(np.percentile(values, 99)), "mean": float(values.mean())}


def time_calls(fn: Callable[[], Any], sync: Callable[[], None], iters: int,
               warmup: int) -> list[float]:
    """Milliseconds of ``iters`` synchronised calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def sample_frame(width: int, height: int) -> tuple[np.ndarray, Intrinsics]:
    """A rendered room at the requested size (real image statistics, deterministic)."""
    focal = width / (2.0 * math.tan(math.radians(30.0)))
    camera = Intrinsics(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0, width, height)
    scene = random_indoor_scene(1)
    rgb, _ = render(scene, demo_trajectory(scene, 4)[1], camera)
    return rgb, camera


def build(backend: str, model: str, mode: str, device: str, precision: str, threads: int,
          cache_dir: str) -> Any:
    """The backend for one row (shipped weights by name, else random backbone weights)."""
    if model in list_bundled_weights():
        spec: dict[str, Any] = {"model": None, "weights": model}
    else:
        spec = {"model": model, "backbone_weights": "random"}
    if backend == "torch":
        return create_backend("torch", **spec, device=device, precision=precision,
                              threads=threads, fast_path="never" if mode == "eager" else "always",
                              cuda_graphs=True, compile=mode == "compile")
    kwargs = dict(spec, device=device, precision=precision, cache_dir=cache_dir)
    if backend in ("onnxruntime", "openvino"):
        kwargs["threads"] = threads
    return create_backend(backend, **kwargs)


def graphed_forward(model: torch.nn.Module, batch: torch.Tensor) -> Callable[[], Any]:
    """The model forward on a static input captured as a CUDA graph; returns its replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(side):
        for _ in range(3):
            model(batch)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        model(batch)
    return graph.replay


def model_call(impl: Any, backend: str, mode: str, batch_size: int) -> Callable[[], Any]:
    """A zero-argument call of the network alone on a prepared input."""
    cfg = impl.config
    height, width = cfg.input_hw
    if backend == "torch":
        batch = torch.randn(batch_size, 3, height, width, device=impl.device).to(impl.dtype)
        if mode != "eager" and impl.device.type == "cuda" and impl.cuda_graphs:
            return graphed_forward(impl._infer, batch)

        def forward() -> Any:
            with torch.inference_mode():
                return impl._infer(batch)
        return forward
    rgb = np.zeros((height, width, 3), np.uint8)
    prepared = preprocess(rgb, cfg)
    camera = camera_inputs(None, width)
    return lambda: impl.predict(prepared, *camera)


def bench_row(args: argparse.Namespace, backend: str, model: str, mode: str,
              precision: str) -> list[dict[str, Any]]:
    """All rows (sizes x batch sizes) of one built backend."""
    t0 = time.perf_counter()
    impl = build(backend, model, mode, args.device, precision, args.threads, args.cache_dir)
    built_s = time.perf_counter() - t0
    sync = _sync(args.device)
    desc = impl.describe()
    base = {"model": model, "backend": backend, "mode": mode if backend == "torch" else "-",
            "precision": precision, "model_input": desc.get("input_size"),
            "build_s": built_s, "describe": desc}
    rows = []
    cuda = args.device.startswith("cuda")
    for batch_size in args.batch_sizes:
        if batch_size > 1 and backend != "torch":
            continue
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        ms = time_calls(model_call(impl, backend, mode, batch_size), sync, args.iters,
                        args.warmup)
        stats = percentiles(ms)
        row = dict(base, size="-", batch=batch_size, model_ms=stats,
                   images_per_s=1e3 * batch_size / stats["mean"])
        if cuda:
            row["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        rows.append(row)
    for size in args.sizes:
        rgb, camera = sample_frame(*size)
        ms = time_calls(lambda: impl.infer(rgb, camera), sync, args.iters, args.warmup)
        stats = percentiles(ms)
        rows.append(dict(base, size=f"{size[0]}x{size[1]}", batch=1, frame_ms=stats,
                         images_per_s=1e3 / stats["mean"]))
    impl.close()
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """Fixed-width table."""
    head = (f"{'model':<22}{'backend':<12}{'mode':<9}{'prec':<6}{'input':<9}{'image':<10}"
            f"{'batch':>6}{'what':>7}{'p50':>9}{'p95':>9}{'p99':>9}{'img/s':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        what, stats = ("model", r["model_ms"]) if "model_ms" in r else ("frame", r["frame_ms"])
        lines.append(f"{r['model']:<22}{r['backend']:<12}{r['mode']:<9}{r['precision']:<6}"
                     f"{r['model_input'] or '-':<9}{r['size']:<10}{r['batch']:>6}{what:>7}"
                     f"{stats['p50']:>9.2f}{stats['p95']:>9.2f}{stats['p99']:>9.2f}"
                     f"{r['images_per_s']:>9.1f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Every model x backend x mode x precision; table on stdout, JSON on request."""
    if args.iters < 1 or args.warmup < 0 or min(args.batch_sizes) < 1:
        raise SystemExit("--iters and --batch-sizes must be >= 1, --warmup >= 0")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    args.device = str(resolve_device(args.device))
    device_kind = "cuda" if args.device.startswith("cuda") else "cpu"
    info = machine_info(device_kind, ",".join(args.precisions))
    print(header_line(info))
    print(f"load average (1 min) before: {load_average():.2f}; {args.warmup} warm-up + "
          f"{args.iters} timed calls per row\n", flush=True)
    rows, skipped = [], []
    for model in args.models:
        for backend in args.backends:
            for precision in args.precisions:
                for mode in (args.modes if backend == "torch" else ["-"]):
                    label = f"{model} {backend} {mode} {precision}"
                    try:
                        new = bench_row(args, backend, model, mode, precision)
                    except (ImportError, RuntimeError, ValueError) as exc:
                        skipped.append(f"{label}: {type(exc).__name__}: {exc}")
                        continue
                    rows.extend(new)
                    print(f"[{label}: built in {new[0]['build_s']:.1f} s]", flush=True)
    print()
    print(format_rows(rows) if rows else "no rows measured")
    for line in skipped:
        print(f"not measured: {line}")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process: {peak_rss:.0f} MiB; load average (1 min) after: "
          f"{load_average():.2f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": rows, "skipped": skipped,
                                         "peak_rss_mib": peak_rss}, indent=2, default=str))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """`clip-depth bench model` (also `python -m benchmarks.model_latency` in a checkout)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
