"""The main job on its embedded default: a synthetic camera -> the depth node -> a recorder.

A procedurally rendered room (known intrinsics, exact depth) is published as image +
camera_info into a live ROS 2 graph from a camera at a known height (1.4 m, like one on a
robot); the depth node runs as its own process exactly as ``ros2 run`` would start it, with
``scale_anchor: ground_plane`` told that height; a recorder collects depth, confidence and
points and writes, into the output folder, preview.png (image | depth | confidence | true
depth, with a colour bar in metres), cloud.ply and summary.json.  d1 / AbsRel are printed for
the anchored depth the node published and for the model's own scale (the same model run
offline on the same frames after the node stopped).

DDS is confined to this machine (config/fastdds_shm.xml: shared memory only, no UDP socket;
a private domain id) for both processes; a robot's own DDS settings are never touched outside this demo.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import ConfigError, OneLineParser
from .launcher import DEFAULT_PARAMS, NodeProcess, confine_dds


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The demo's options (``demo`` and ``clip-depth demo``)."""
    ap.add_argument("--frames", type=int, default=60, help="frames to publish (default 60)")
    ap.add_argument("--rate", type=float, default=10.0, help="camera rate, Hz (default 10)")
    ap.add_argument("--width", type=int, default=640, help="image width (default 640)")
    ap.add_argument("--height", type=int, default=480, help="image height (default 480)")
    ap.add_argument("--seed", type=int, default=7, help="scene seed (default 7)")
    ap.add_argument("--camera-height", type=float, default=1.4,
                    help="the camera's height above the floor, m, which the node's "
                         "ground_plane anchor is told (default 1.4)")
    ap.add_argument("--scale-anchor", choices=("ground_plane", "none"), default="ground_plane",
                    help="the node's scale_anchor (default ground_plane)")
    ap.add_argument("--params-file", default=str(DEFAULT_PARAMS),
                    help="the node's parameters (default: the package's config/depth.yaml)")
    ap.add_argument("--model", default=None, help="override the params file's model")
    ap.add_argument("--weights", default=None, help="override the params file's weights")
    ap.add_argument("--output", default="demo_output", help="output folder (default "
                    "demo_output)")
    ap.add_argument("--startup-timeout", type=float, default=120.0,
                    help="seconds to wait for the node to come up (default 120)")


def check_args(args: argparse.Namespace) -> None:
    """ConfigError (one line) for option values the demo cannot run with."""
    if args.frames < 1 or args.rate <= 0 or args.width < 16 or args.height < 16:
        raise ConfigError("--frames must be >= 1, --rate > 0 and --width/--height >= 16")
    from ..synthetic import random_indoor_scene
    ceiling = float(random_indoor_scene(args.seed).room.size[2])
    if not 0.1 <= args.camera_height <= ceiling - 0.1:
        raise ConfigError(f"--camera-height must be 0.1-{ceiling - 0.1:.2f} m (inside the "
                          f"room of --seed {args.seed}, {ceiling:.2f} m high), not "
                          f"{args.camera_height}")
    output = Path(args.output)  # made at run time: its nearest existing part must be a folder
    existing = next(p for p in (output.absolute(), *output.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"--output '{output}': '{existing}' is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise ConfigError(f"--output '{output}': folder '{existing}' is not writable")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Command-line options of the demo, checked (a mistake: one line, exit 2)."""
    ap = OneLineParser(prog="demo", description=__doc__.splitlines()[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        check_args(args)
    except ConfigError as exc:
        ap.error(str(exc))
    return args


def start_node(args: argparse.Namespace, log_path: Path) -> NodeProcess:
    """The depth node as its own process, configured by the params file."""
    overrides: dict[str, Any] = {name: value for name, value in (("model", args.model),
                                                                 ("weights", args.weights))
                                 if value is not None}
    overrides.update(scale_anchor=args.scale_anchor, camera_height_m=float(args.camera_height))
    return NodeProcess(args.params_file, overrides, log_path).start()


def write_ply(path: Path, points_xyz: np.ndarray, rgb: Optional[np.ndarray]) -> int:
    """Binary little-endian PLY of the finite points (with colours when given); returns count."""
    pts = points_xyz.reshape(-1, 3)
    keep = np.isfinite(pts).all(axis=1)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if rgb is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rows = np.zeros(int(keep.sum()), dtype=fields)
    for i, axis in enumerate("xyz"):
        rows[axis] = pts[keep, i]
    if rgb is not None:
        cols = rgb.reshape(-1, 3)[keep]
        rows["red"], rows["green"], rows["blue"] = cols[:, 0], cols[:, 1], cols[:, 2]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(rows)}"]
    header += [f"property float {a}" for a in "xyz"]
    if rgb is not None:
        header += [f"property uchar {c}" for c in ("red", "green", "blue")]
    with open(path, "wb") as handle:
        handle.write(("\n".join(header + ["end_header"]) + "\n").encode())
        handle.write(rows.tobytes())
    return len(rows)


def preview_strip(frames: list[tuple], lo: float, hi: float) -> np.ndarray:
    """Rows of image | predicted depth | confidence | true depth (BGR): depth on one shared
    colour scale of lo..hi metres, shown by a colour bar on the right; confidence in grey
    from black to white over the range its values span in these frames (named in the
    column's label; NaN = invalid depth, black), where the node published it, else that
    column is left out."""
    import cv2

    from ..colorize import colorize_depth, with_colorbar
    with_confidence = all(len(f) > 3 and f[3] is not None for f in frames)
    c_lo, c_hi = 0.0, 1.0
    if with_confidence:
        values = np.concatenate([f[3][np.isfinite(f[3])].ravel() for f in frames])
        if values.size:
            c_lo, c_hi = float(np.percentile(values, 1)), float(np.percentile(values, 99))
            c_hi = c_hi if c_hi > c_lo else c_lo + 1e-6
    rows = []
    for frame in frames:
        rgb, pred, truth = frame[:3]
        tiles = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), colorize_depth(pred, lo, hi)]
        if with_confidence:
            scaled = np.clip((frame[3] - c_lo) / (c_hi - c_lo), 0, 1)
            grey = (np.nan_to_num(scaled) * 255).astype(np.uint8)
            grey = cv2.resize(grey, (rgb.shape[1], rgb.shape[0]),
                              interpolation=cv2.INTER_NEAREST)
            tiles.append(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
        tiles.append(colorize_depth(truth, lo, hi))
        rows.append(np.hstack(tiles))
    strip = np.vstack(rows)
    labels = ["image", "depth (m)"]
    labels += [f"confidence {c_lo:.2f}-{c_hi:.2f}"] if with_confidence else []
    labels += ["true depth (m)"]
    for k, label in enumerate(labels):
        cv2.putText(strip, label, (k * rgb.shape[1] + 10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                    (255, 255, 255), 2)
    return with_colorbar(strip, lo, hi)


def depth_errors(pred: np.ndarray, truth: np.ndarray,
                 median_scaled: bool = False) -> dict[str, float]:
    """d1 and AbsRel of one prediction against the synthetic truth (metric; with
    ``median_scaled`` the prediction is first scaled to the truth's median)."""
    valid = np.isfinite(truth) & (truth > 0) & np.isfinite(pred) & (pred > 0)
    p, g = pred[valid], truth[valid]
    if median_scaled and p.size:
        p = p * (np.median(g) / np.median(p))
    ratio = np.maximum(p / g, g / p)
    return {"d1": float(np.mean(ratio < 1.25)), "abs_rel": float(np.mean(np.abs(p - g) / g))}


def model_scale_depth(record: dict[str, Any], rgbs: list[np.ndarray]) -> list[np.ndarray]:
    """The model's own metric depth (no anchor) for the frames, from the model the node ran,
    run here after the node has stopped (so the live numbers were not slowed down)."""
    from ..backends.torch_backend import TorchBackend
    # the weights' own recorded config, as the node used it (no model name to compare)
    backend = TorchBackend(None if record["weights"] else record["model"] or None,
                           weights=record["weights"] or None, device="cpu")
    return [backend.infer(rgb, record["intrinsics"]) for rgb in rgbs]


def main(argv: Optional[list[str]] = None) -> int:
    """Run the demo (the ``demo`` executable); returns a process exit code."""
    return _run_checked(parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the demo with parsed options (``clip-depth demo``: a mistake raises ConfigError)."""
    check_args(args)
    return _run_checked(args)


def _run_checked(args: argparse.Namespace) -> int:
    """The demo itself, on options ``check_args`` accepted (checked once, by either caller)."""
    confine_dds()
    from .demo_graph import run_graph  # rclpy is imported only after DDS is confined

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    node = start_node(args, out / "node.log")
    try:
        record = run_graph(args, node.proc)
    finally:
        node.stop()
    if record is None:
        print(f"the depth node did not come up; see {out / 'node.log'}", file=sys.stderr)
        return 1
    return write_outputs(args, out, record)


def write_outputs(args: argparse.Namespace, out: Path, record: dict[str, Any]) -> int:
    """Preview strip, point cloud and summary from what the recorder collected."""
    import cv2

    from ..colorize import robust_range
    pairs = record["pairs"]  # (rgb, predicted depth, true depth, latency_ms, confidence)
    if not pairs:
        print("no depth image came back from the node", file=sys.stderr)
        return 1
    picks = [pairs[i] for i in np.linspace(0, len(pairs) - 1, min(3, len(pairs))).astype(int)]
    # one colour scale for prediction and truth: the robust range of the true depth (the
    # node's depth/colored and predict take theirs from the data the same way)
    lo, hi = (robust_range(np.concatenate([p[2].ravel() for p in picks]))
              or (0.0, float(record["max_depth"])))
    strip = preview_strip([(p[0], p[1], p[2], p[4]) for p in picks], lo, hi)
    cv2.imwrite(str(out / "preview.png"), strip)
    n_points = 0
    if record["cloud"] is not None:
        n_points = write_ply(out / "cloud.ply", *record["cloud"])
    errors = [depth_errors(p[1], p[2]) for p in pairs]
    structure = [depth_errors(p[1], p[2], median_scaled=True) for p in pairs]
    own = None
    if args.scale_anchor != "none" and record["weights"]:
        model_depth = model_scale_depth(record, [p[0] for p in pairs])
        own = [depth_errors(d, p[2]) for d, p in zip(model_depth, pairs)]
        # what the anchor did to each frame: published depth / the model's own depth
        scales = [float(np.nanmedian(p[1][p[1] > 0] / d[p[1] > 0]))
                  for d, p in zip(model_depth, pairs) if (p[1] > 0).any()]
    latency = np.array([p[3] for p in pairs])
    span = record["last_output_t"] - record["first_output_t"]
    summary = {
        "model": record["model"], "weights": record["weights"],
        "frames_published": args.frames, "depth_received": len(pairs),
        "points_received": record["n_points_msgs"],
        "frames_dropped": args.frames - len(pairs),
        "output_fps": (len(pairs) - 1) / span if span > 0 else 0.0,
        "latency_p50_ms": float(np.percentile(latency, 50)),
        "latency_p95_ms": float(np.percentile(latency, 95)),
        "d1": float(np.mean([e["d1"] for e in errors])),
        "abs_rel": float(np.mean([e["abs_rel"] for e in errors])),
        "median_scaled_d1": float(np.mean([e["d1"] for e in structure])),
        "scale_anchor": args.scale_anchor, "camera_height_m": args.camera_height,
        "confidence_received": sum(p[4] is not None for p in pairs),
        "cloud_points": n_points, "camera_rate_hz": args.rate,
        "image_size": f"{args.width}x{args.height}",
    }
    if own is not None:
        summary.update(model_scale_d1=float(np.mean([e["d1"] for e in own])),
                       model_scale_abs_rel=float(np.mean([e["abs_rel"] for e in own])),
                       anchor_scale_median=float(np.median(scales)) if scales else 1.0,
                       anchor_scale_p5_p95=[float(np.percentile(scales, q)) if scales else 1.0
                                            for q in (5, 95)])
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary, out)
    return 0


def print_summary(summary: dict[str, Any], out: Path) -> None:
    """A short human-readable report."""
    print("\n=== clip_depth_ros demo ===")
    if not summary["weights"]:
        print("NOTE: no trained weights were given: the model has RANDOM weights, so the depth "
              "below is plumbing, not a prediction.")
    print(f"model           {summary['model']}  weights: {summary['weights'] or 'none (random)'}")
    print(f"frames          {summary['depth_received']} depth / {summary['frames_published']} "
          f"published at {summary['camera_rate_hz']:.0f} Hz ({summary['image_size']}), "
          f"{summary['frames_dropped']} dropped, {summary['points_received']} point clouds")
    print(f"throughput      {summary['output_fps']:.1f} fps")
    print(f"latency         p50 {summary['latency_p50_ms']:.1f} ms, "
          f"p95 {summary['latency_p95_ms']:.1f} ms (image published -> depth received)")
    anchored = summary["scale_anchor"] != "none"
    print(f"vs. true depth  d1 {summary['d1']:.3f}, AbsRel {summary['abs_rel']:.3f} (metric, "
          + (f"scale_anchor {summary['scale_anchor']} at {summary['camera_height_m']:g} m)"
             if anchored else "the model's own scale)"))
    if "model_scale_d1" in summary:
        lo, hi = summary["anchor_scale_p5_p95"]
        print(f"without anchor  d1 {summary['model_scale_d1']:.3f}, AbsRel "
              f"{summary['model_scale_abs_rel']:.3f} (the model's own scale; the anchor scaled "
              f"it by {summary['anchor_scale_median']:.3f}, 5-95% {lo:.3f}-{hi:.3f})")
    print(f"structure only  d1 {summary['median_scaled_d1']:.3f} (each frame median-scaled to "
          f"the truth)")
    print(f"outputs         {out}/preview.png, {out}/cloud.ply "
          f"({summary['cloud_points']} points), {out}/summary.json, {out}/node.log")


if __name__ == "__main__":
    sys.exit(main())
