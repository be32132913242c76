"""The main job on its embedded default: a synthetic camera -> the depth node -> a recorder.

A procedurally rendered room (known intrinsics, exact depth) is published as image +
camera_info into a live ROS 2 graph; the depth node runs as its own process exactly as
``ros2 run`` would start it; a recorder collects depth and points and writes, into the output
folder, preview.png (image | predicted depth | true depth, with a colour bar in metres),
cloud.ply and summary.json.

DDS is confined to this machine (config/fastdds_shm.xml: shared memory only, no UDP socket;
a private domain id) for both processes; a robot's own DDS settings are never touched outside this demo.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .launcher import DEFAULT_PARAMS, NodeProcess, confine_dds


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Command-line options of the demo."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60, help="frames to publish")
    ap.add_argument("--rate", type=float, default=10.0, help="camera rate (Hz)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--seed", type=int, default=7, help="scene seed")
    ap.add_argument("--params-file", default=str(DEFAULT_PARAMS))
    ap.add_argument("--model", default=None, help="override the params file's model")
    ap.add_argument("--weights", default=None, help="override the params file's weights")
    ap.add_argument("--output", default="demo_output", help="output folder")
    ap.add_argument("--startup-timeout", type=float, default=120.0)
    return ap.parse_args(argv)


def start_node(args: argparse.Namespace, log_path: Path) -> NodeProcess:
    """The depth node as its own process, configured by the params file."""
    overrides = {name: value for name, value in (("model", args.model),
                                                 ("weights", args.weights))
                 if value is not None}
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


def preview_strip(frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                  lo: float, hi: float) -> np.ndarray:
    """Rows of image | predicted depth | true depth (BGR), depth on one shared colour scale
    of lo..hi metres, shown by a colour bar on the right."""
    import cv2

    from ..colorize import colorize_depth, with_colorbar
    rows = []
    for rgb, pred, truth in frames:
        tiles = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), colorize_depth(pred, lo, hi),
                 colorize_depth(truth, lo, hi)]
        rows.append(np.hstack(tiles))
    strip = np.vstack(rows)
    for x, label in zip((10, rgb.shape[1] + 10, 2 * rgb.shape[1] + 10),
                        ("image", "predicted depth", "true depth")):
        cv2.putText(strip, label, (x, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    return with_colorbar(strip, lo, hi)


def depth_errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """d1 and AbsRel of one prediction against the synthetic truth (metric, no scaling)."""
    valid = np.isfinite(truth) & (truth > 0) & np.isfinite(pred) & (pred > 0)
    p, g = pred[valid], truth[valid]
    ratio = np.maximum(p / g, g / p)
    return {"d1": float(np.mean(ratio < 1.25)), "abs_rel": float(np.mean(np.abs(p - g) / g))}


def main(argv: Optional[list[str]] = None) -> int:
    """Run the demo; returns a process exit code."""
    args = parse_args(argv)
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
    pairs = record["pairs"]  # list of (rgb, predicted depth, true depth, latency_ms)
    if not pairs:
        print("no depth image came back from the node", file=sys.stderr)
        return 1
    picks = [pairs[i] for i in np.linspace(0, len(pairs) - 1, min(3, len(pairs))).astype(int)]
    # one colour scale for prediction and truth: the robust range of the true depth (the
    # node's depth/colored and predict take theirs from the data the same way)
    lo, hi = (robust_range(np.concatenate([p[2].ravel() for p in picks]))
              or (0.0, float(record["max_depth"])))
    strip = preview_strip([p[:3] for p in picks], lo, hi)
    cv2.imwrite(str(out / "preview.png"), strip)
    n_points = 0
    if record["cloud"] is not None:
        n_points = write_ply(out / "cloud.ply", *record["cloud"])
    errors = [depth_errors(p[1], p[2]) for p in pairs]
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
        "cloud_points": n_points, "camera_rate_hz": args.rate,
        "image_size": f"{args.width}x{args.height}",
    }
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
    print(f"vs. true depth  d1 {summary['d1']:.3f}, AbsRel {summary['abs_rel']:.3f} (metric)")
    print(f"outputs         {out}/preview.png, {out}/cloud.ply "
          f"({summary['cloud_points']} points), {out}/summary.json, {out}/node.log")


if __name__ == "__main__":
    sys.exit(main())
