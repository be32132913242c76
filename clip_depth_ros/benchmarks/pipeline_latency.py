"""Per-stage latency of one frame through the depth node's pipeline; prints a table per run.

The stages are the ones ``DepthNode._process`` runs for an rgb8 image with camera_info and
subscribers on every output (points with rgb at stride 1, colored depth), called through the
real functions so the numbers follow the code:

  convert      image_to_rgb8 + camera_info_to_intrinsics, as the node does
  preprocess   check, resize, normalise (HostFrameBackend.infer_frame)
  model        TorchBackend.predict (the network and its camera contract)
  resize back  depth back to the image size
  points       the xyzrgb cloud body at stride 1 (frame.host_outputs)
  colorize     colorize_depth
  message fill frame.frame_messages: 32FC1 + bgr8 images, xyzrgb PointCloud2, CameraInfo
  device pass  (device path only) all of preprocess..colorize in one asynchronous pass

Models are built with random backbone weights (latency does not depend on weight values).
A benchmark is a script that prints a table, not a test: the 8 ms target is reported, never
enforced.  Usage: ``clip-depth bench stages --help``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import tempfile
import time
from typing import Any

import cv2
import numpy as np
import torch
from std_msgs.msg import Header

from .options import add_stages_arguments, parse_size  # noqa: F401
from ..backends import create_backend, first_that_serves
from ..backends.torch_backend import TorchBackend, resolve_device
from ..config import list_bundled_weights
from ..frame import frame_messages
from ..geometry import Intrinsics
from ..pipeline import DepthPipeline
from ..ros.params import PARAMS_BY_NAME, backend_candidates
from ..ros.conversions import (
    RosMessageKit, camera_info_to_intrinsics, image_to_rgb8, intrinsics_to_camera_info,
    numpy_to_image)

# FrameOutputs.timings_ms keys -> this table's stage names ('inference': the device path's
# single asynchronous pass)
_STAGE_NAMES = {"postprocess": "resize back", "inference": "device pass"}
TARGET_SIZE = (640, 480)
TARGET_MS = 8.0
WEIGHTS_NOTE = ("backbone_weights='random' (no pretrained weights on this machine); "
                "latency does not depend on the weight values")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_stages_arguments(parser)
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        parser.error("--iters must be >= 1 and --warmup >= 0")
    return args


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_info(device: str, precision: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu": cpu_model(), "cores": cores, "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(), "numpy": np.__version__,
        "device": device, "precision": precision,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
    }
    return info


def header_line(info: dict[str, Any]) -> str:
    """One line describing the machine and settings."""
    gpu = f" | GPU {info['gpu']}" if info["gpu"] else " | no GPU used"
    return (f"machine: {info['cpu']} | {info['cores']} cores | torch {info['torch']} "
            f"({info['torch_threads']} threads) | opencv {info['opencv']} "
            f"({info['opencv_threads']} threads) | numpy {info['numpy']} | "
            f"device {info['device']} | precision {info['precision']}{gpu}")


def make_frame(width: int, height: int) -> tuple[Any, Any, Header]:
    """An rgb8 Image and a matching CameraInfo (~60 degree horizontal FOV), as a driver sends."""
    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 1_700_000_000, 0
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    noise = rng.integers(0, 64, size=(height, width, 3)).astype(np.float32)
    rgb = np.clip(ramp + noise, 0, 255).astype(np.uint8)
    focal = width / (2.0 * math.tan(math.radians(30.0)))
    camera = Intrinsics(fx=focal, fy=focal, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0,
                        width=width, height=height)
    return (numpy_to_image(rgb, "rgb8", header),
            intrinsics_to_camera_info(camera, header), header)


def time_one_frame(pipeline: DepthPipeline, image_msg: Any, info_msg: Any,
                   header: Header) -> dict[str, float]:
    """Milliseconds per stage for one frame, exactly as DepthNode._process runs it: convert,
    ``DepthPipeline.process`` (its own stage timings) and the shared message fan-out."""
    t0 = time.perf_counter()
    rgb = image_to_rgb8(image_msg)
    intrinsics = camera_info_to_intrinsics(info_msg)
    t1 = time.perf_counter()
    outputs = pipeline.process(rgb, intrinsics, want_points=True, want_rgb=True,
                               want_colored=True)
    t2 = time.perf_counter()
    messages = frame_messages(outputs, header, info_msg, RosMessageKit)
    t3 = time.perf_counter()
    del messages
    stages = {"convert": (t1 - t0) * 1e3}
    stages.update({_STAGE_NAMES.get(k, k): v for k, v in outputs.timings_ms.items()})
    stages["message fill"] = (t3 - t2) * 1e3
    stages["total"] = (t3 - t0) * 1e3
    if "model" in stages:
        stages["total without model"] = stages["total"] - stages["model"]
    return stages


def summarise(samples: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50 / p95 / mean per stage over the timed frames."""
    out = {}
    for name in samples[0]:
        values = np.array([s[name] for s in samples])
        out[name] = {"p50": float(np.percentile(values, 50)),
                     "p95": float(np.percentile(values, 95)), "mean": float(values.mean())}
    return out


def minor_faults() -> int:
    """Minor page faults of this process so far (fresh large buffers fault page by page)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def trust_steps(height_m: float) -> list:
    """The node's post-model steps with everything on: ground-plane anchor with the temporal
    filter, confidence, min_confidence and the edge filter."""
    from ..trust import PointTrust, ScaleAnchor, TrustSettings
    settings = TrustSettings(scale_anchor="ground_plane", camera_height_m=height_m,
                             scale_time_constant_s=1.0, min_confidence=0.2, edge_filter=True)
    return [ScaleAnchor(settings), PointTrust(settings, want_confidence=True)]


def room_frame(width: int, height: int) -> tuple[Any, Any, Header, float]:
    """A rendered room (a real floor for the anchor) as Image + CameraInfo, and its camera
    height."""
    from ..synthetic import demo_trajectory, random_indoor_scene, render
    focal = width / (2.0 * math.tan(math.radians(30.0)))
    camera = Intrinsics(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0, width, height)
    scene = random_indoor_scene(5007)
    pose = demo_trajectory(scene, 8)[2]
    header = Header(frame_id="camera_optical_frame")
    rgb, _ = render(scene, pose, camera)
    return (numpy_to_image(rgb, "rgb8", header), intrinsics_to_camera_info(camera, header),
            header, float(pose.position[2]))


def bench_run(backend: TorchBackend, size: tuple[int, int], iters: int,
              warmup: int, trust: bool = False) -> tuple[dict[str, dict[str, float]], float]:
    """Warm up, then time ``iters`` frames of ``size``; (stats, minor page faults per frame).
    ``trust``: a rendered room through the post-model steps too (their stages are timed)."""
    if trust:
        image_msg, info_msg, header, height_m = room_frame(*size)
        pipeline = DepthPipeline(backend, steps=trust_steps(height_m))
    else:
        image_msg, info_msg, header = make_frame(*size)
        pipeline = DepthPipeline(backend)
    for _ in range(warmup):
        time_one_frame(pipeline, image_msg, info_msg, header)
    faults = minor_faults()
    samples = [time_one_frame(pipeline, image_msg, info_msg, header) for _ in range(iters)]
    return summarise(samples), (minor_faults() - faults) / iters


def load_average() -> float:
    """1-minute load average (NaN where unavailable); other work on the cores skews timings."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return math.nan


def format_table(model: str, input_size: str, size: tuple[int, int],
                 stats: dict[str, dict[str, float]], iters: int, faults: float) -> str:
    """A fixed-width table of p50 / p95 / mean milliseconds per stage."""
    title = (f"{model} (model input {input_size}) at {size[0]}x{size[1]}, "
             f"{iters} frames, ms (load average after: {load_average():.2f})")
    lines = [title, f"{'stage':<22}{'p50':>9}{'p95':>9}{'mean':>9}", "-" * 49]
    for name, row in stats.items():
        if name == "total":
            lines.append("-" * 49)
        lines.append(f"{name:<22}{row['p50']:>9.2f}{row['p95']:>9.2f}{row['mean']:>9.2f}")
    lines.append(f"minor page faults per frame: {faults:.0f}")
    return "\n".join(lines)


def target_check(model: str, stats: dict[str, dict[str, float]]) -> str:
    """The issue's target: everything but the model at 640x480 within 8 ms (reported only)."""
    if "total without model" not in stats:  # fast path: the model is inside the device pass
        p50, p95 = stats["total"]["p50"], stats["total"]["p95"]
        return (f"image message in -> messages out ({model}, fast path, {TARGET_SIZE[0]}x"
                f"{TARGET_SIZE[1]}): p50 {p50:.2f} ms (p95 {p95:.2f}), model included")
    p50 = stats["total without model"]["p50"]
    p95 = stats["total without model"]["p95"]
    verdict = "within" if p50 <= TARGET_MS else "OVER"
    return (f"target check ({model}, {TARGET_SIZE[0]}x{TARGET_SIZE[1]}): everything but the "
            f"model p50 {p50:.2f} ms (p95 {p95:.2f}) vs {TARGET_MS:.0f} ms target: {verdict}")


def stage_backends(args: argparse.Namespace) -> list[str]:
    """The backends to try: the node's own rule (``backend_candidates``) for these options,
    the node's defaults for the rest."""
    given = {"backend": args.backend, "device": args.device, "torch_fast_path": args.fast_path}
    return backend_candidates(lambda name: given.get(name, PARAMS_BY_NAME[name].default))


def build_backend(name: str, spec: dict[str, Any], args: argparse.Namespace) -> Any:
    """One backend for the table; exported ones export into a temporary folder (random
    backbones must not fill the user's engine cache)."""
    if name == "torch":
        return TorchBackend(**spec, device=args.device, precision=args.precision,
                            threads=args.threads, fast_path=args.fast_path)
    with tempfile.TemporaryDirectory(prefix="bench_stages_") as cache:
        return create_backend(name, **spec, device=args.device, precision=args.precision,
                              threads=args.threads, cache_dir=cache)


def main(argv: list[str] | None = None) -> int:
    """`clip-depth bench stages` (also `python -m benchmarks.pipeline_latency` in a checkout)."""
    return run(parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run every model x size, print the tables and the target check; 0 unless setup fails."""
    if args.iters < 1 or args.warmup < 0:
        raise SystemExit("--iters must be >= 1 and --warmup >= 0")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    args.device = resolve_device(args.device).type
    if args.precision == "auto":
        args.precision = TorchBackend.auto_precision(args.device)
    info = machine_info(args.device, args.precision)
    print(header_line(info))
    print(f"load average (1 min) before: {load_average():.2f}")
    print(f"weights: {WEIGHTS_NOTE}")
    print(f"frames: rgb8 Image + CameraInfo in; outputs: depth 32FC1, depth/camera_info, "
          f"points xyzrgb (stride 1), depth/colored bgr8; {args.warmup} warm-up frames\n")
    results, checks = [], []
    for model in args.models:
        t0 = time.perf_counter()
        # shipped weights by name (their floor makes the anchor's work real), else random
        spec = ({"model": None, "weights": model} if model in list_bundled_weights()
                else {"model": model, "backbone_weights": "random"})
        backend = first_that_serves(stage_backends(args), lambda name: build_backend(
            name, spec, args), lambda text, exc: print(f"[{text}]"))
        input_size = backend.describe()["input_size"]
        print(f"[{model}: {backend.name} {backend.precision}, built in "
              f"{time.perf_counter() - t0:.1f} s]")
        for size in args.sizes:
            stats, faults = bench_run(backend, size, args.iters, args.warmup, args.trust)
            print(format_table(model, input_size, size, stats, args.iters, faults) + "\n")
            results.append({"model": model, "model_input": input_size,
                            "size": f"{size[0]}x{size[1]}", "stages_ms": stats,
                            "minor_faults_per_frame": faults})
            if tuple(size) == TARGET_SIZE:
                checks.append(target_check(model, stats))
        backend.close()
    for line in checks or [f"target check: not run ({TARGET_SIZE[0]}x{TARGET_SIZE[1]} "
                           "not among --sizes)"]:
        print(line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"machine": info, "weights": WEIGHTS_NOTE, "iters": args.iters,
                       "warmup": args.warmup, "results": results}, handle, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
