"""How steady the metric depth is over a camera walk: TAE and the frame-to-frame scale jitter.

Synthetic walks with exact poses from the renderer (a smooth loop through a held-out room, a
drive along a street), 640x480 at 10 Hz stamps.  Each walk runs through the node's own
``DepthPipeline`` with its post-model steps, once per anchor (none, ground_plane with the true
camera height, sparse_depth with 1% of pixels at 1% noise) and with the temporal scale filter
off and on (``scale_time_constant_s``).  Reported:

  TAE     temporal alignment error as Video Depth Anything defines it: the depth of frame i
          reprojected into frame i+1 with the true pose and intrinsics, AbsRel against the
          prediction at i+1, both directions, mean x 100
  jitter  mean |d log s| between consecutive frames, s = median(depth / true depth)
  scale   median of s over the walk (1.00 = metric)

A benchmark prints a table; nothing here asserts.  ``python -m benchmarks.temporal -h``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.trust_accuracy import (add_weights_option, reference_backend,  # noqa: E402
                                       sparse_measurements)
from clip_depth_ros.geometry import Intrinsics, depth_to_points  # noqa: E402
from clip_depth_ros.pipeline import DepthPipeline  # noqa: E402
from clip_depth_ros.synthetic import (demo_trajectory, random_indoor_scene,  # noqa: E402
                                      random_street_scene, render, street_trajectory)
from clip_depth_ros.trust import ScaleAnchor, TrustSettings  # noqa: E402

ANCHORS = ("none", "ground_plane", "sparse_depth")
RATE_HZ = 10.0


def walk(kind: str, seed: int, frames: int, focal: float) -> list[tuple]:
    """(rgb, true depth, pose) along a smooth synthetic walk."""
    camera = Intrinsics(focal, focal, 319.5, 239.5, 640, 480)
    if kind == "indoor":
        scene = random_indoor_scene(seed)
        # a slow stretch of the room loop: frames of a 8x longer trajectory
        poses = demo_trajectory(scene, frames * 8)[:frames]
    else:
        scene = random_street_scene(seed)
        poses = street_trajectory(scene, frames)
    return [(*render(scene, pose, camera), pose) for pose in poses], camera


def reprojection_absrel(depth_a: np.ndarray, pose_a: Any, depth_b: np.ndarray, pose_b: Any,
                        camera: Intrinsics, valid_b: np.ndarray) -> float:
    """AbsRel of frame a's depth moved into frame b against frame b's depth (valid pixels)."""
    points = depth_to_points(depth_a, camera).reshape(-1, 3)
    keep = np.isfinite(points).all(axis=1)
    world = points[keep] @ pose_a.rotation().T + pose_a.position
    in_b = (world - pose_b.position) @ pose_b.rotation()
    z = in_b[:, 2]
    front = z > 1e-3
    u = np.round(camera.fx * in_b[front, 0] / z[front] + camera.cx).astype(int)
    v = np.round(camera.fy * in_b[front, 1] / z[front] + camera.cy).astype(int)
    inside = (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    u, v, z = u[inside], v[inside], z[front][inside]
    target = depth_b[v, u]
    ok = valid_b[v, u] & np.isfinite(target) & (target > 0)
    return float(np.mean(np.abs(z[ok] - target[ok]) / target[ok])) if ok.any() else np.nan


def run_walk(backend: Any, frames: list[tuple], camera: Intrinsics, anchor: str,
             time_constant: float, cap: float) -> dict[str, float]:
    """TAE, jitter and median scale of one walk under one anchor setting."""
    height = float(frames[0][2].position[2])
    step = ScaleAnchor(TrustSettings(scale_anchor=anchor, camera_height_m=height,
                                     scale_time_constant_s=time_constant))
    pipeline = DepthPipeline(backend, steps=[step])
    depths, scales = [], []
    for i, (rgb, true, pose) in enumerate(frames):
        sparse = sparse_measurements(true, 0.01, i) if anchor == "sparse_depth" else None
        out = pipeline.process(rgb, camera, stamp_s=i / RATE_HZ, sparse_depth_m=sparse)
        valid = np.isfinite(true) & (true > 1e-3) & (true <= cap)
        depths.append(out.depth_m)
        scales.append(float(np.median(out.depth_m[valid] / true[valid])))
    tae = []
    for i in range(len(frames) - 1):
        (_, ta, pa), (_, tb, pb) = frames[i], frames[i + 1]
        valid_a = np.isfinite(ta) & (ta > 1e-3) & (ta <= cap)
        valid_b = np.isfinite(tb) & (tb > 1e-3) & (tb <= cap)
        tae.append(reprojection_absrel(depths[i], pa, depths[i + 1], pb, camera, valid_b))
        tae.append(reprojection_absrel(depths[i + 1], pb, depths[i], pa, camera, valid_a))
    log_s = np.log(scales)
    return {"tae": float(100 * np.nanmean(tae)), "jitter": float(np.mean(np.abs(np.diff(log_s)))),
            "scale": float(np.median(scales))}


def main(argv: Optional[list[str]] = None) -> int:
    """Run the walks, print the table (and write JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_weights_option(ap)
    ap.add_argument("--frames", type=int, default=30, help="frames per walk (default: "
                    "%(default)s)")
    ap.add_argument("--focal", type=float, default=525.0, help="focal length in px at 640x480 "
                    "(default: %(default)s)")
    ap.add_argument("--time-constant", type=float, default=1.0, help="scale_time_constant_s "
                    "of the filtered runs (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=5100, help="scene seed (default: %(default)s)")
    ap.add_argument("--streets", action=argparse.BooleanOptionalAction, default=True,
                    help="also the street walk (default: on)")
    ap.add_argument("--json", type=Path, default=None, help="write results here")
    args = ap.parse_args(argv)
    backend = reference_backend(args.weights)
    results = []
    kinds = [("indoor", 10.0)] + ([("street", 80.0)] if args.streets else [])
    print(f"{'walk':<8}{'anchor':<14}{'filter':>8}{'TAE':>8}{'jitter':>9}{'scale':>8}")
    for kind, cap in kinds:
        frames, camera = walk(kind, args.seed, args.frames, args.focal)
        for anchor in ANCHORS:
            for tau in (0.0, args.time_constant):
                row = run_walk(backend, frames, camera, anchor, tau, cap)
                results.append({"walk": kind, "anchor": anchor, "time_constant_s": tau, **row})
                label = "off" if tau == 0 else f"{tau:g} s"
                print(f"{kind:<8}{anchor:<14}{label:>8}{row['tae']:8.2f}{row['jitter']:9.4f}"
                      f"{row['scale']:8.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"weights": args.weights, "frames": args.frames,
                                         "focal_px": args.focal, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
