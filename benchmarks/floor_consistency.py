"""Why the ground-plane anchor does (not) work for a model: how consistent its floor is.

``scale_anchor: ground_plane`` can only be as good as the model's floor.  On held-out views
with the floor in sight (truth known: the floor is found in the true cloud, a plane at the
camera's height), per split:

  own         mean |log| of the frame's scale error with the model's own metres
              (s_o = median(true / predicted) over the frame)
  anchor      the ground-plane fit as the node runs it (``anchoring.fit_ground_plane`` with
              the true camera height): share of views where it held, mean |log(s / s_o)| there
  floor bound mean |log| of median(true / predicted) over the TRUE floor pixels against s_o:
              what a floor anchor gets even when told the exact floor plane and its pixels
              (the model's floor disagrees with the rest of its own depth by this much)
  normal      angle between the plane fitted to the predicted floor points and the true floor
              (degrees; rays near the horizon make small angles large scale errors)

A benchmark prints a table; nothing here asserts.  ``python -m benchmarks.floor_consistency -h``.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clip_depth_ros.anchoring import fit_ground_plane  # noqa: E402
from clip_depth_ros.geometry import Intrinsics, depth_to_points  # noqa: E402

MIN_FLOOR_SHARE = 0.05  # views with less true floor in sight are left out


def _plane(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane n.x + d = 0 (unit n, d > 0 for a plane below the camera)."""
    centre = points.mean(axis=0)
    normal = np.linalg.svd(points - centre, full_matrices=False)[2][-1]
    offset = -float(normal @ centre)
    return (normal, offset) if offset > 0 else (-normal, -offset)


def true_floor(true: np.ndarray, camera: Intrinsics, height: float, seed: int = 0
               ) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(mask of true floor pixels, floor normal) or None: RANSAC on the true cloud for the
    plane at the camera's height (within 2 cm) with an upward normal within 40 degrees."""
    cloud = depth_to_points(np.nan_to_num(true, nan=0.0), camera)
    valid = np.isfinite(cloud).all(axis=2)
    points = cloud[valid]
    if len(points) < 100:
        return None
    rng = np.random.default_rng(seed)
    best, best_count = None, 0
    for _ in range(300):
        trio = points[rng.integers(0, len(points), 3)]
        normal = np.cross(trio[1] - trio[0], trio[2] - trio[0])
        if np.linalg.norm(normal) < 1e-9:
            continue
        normal /= np.linalg.norm(normal)
        offset = -float(normal @ trio[0])
        if offset < 0:
            normal, offset = -normal, -offset
        if -normal[1] < math.cos(math.radians(40)) or abs(offset - height) > 0.02:
            continue
        count = int((np.abs(points @ normal + offset) < 0.02).sum())
        if count > best_count:
            best, best_count = (normal, offset), count
    if best is None:
        return None
    mask = np.zeros(true.shape, bool)
    mask[valid] = np.abs(points @ best[0] + best[1]) < 0.02
    return mask, _plane(cloud[mask])[0]


def view_measures(pred: np.ndarray, true: np.ndarray, camera: Intrinsics,
                  height: float) -> Optional[dict[str, Any]]:
    """The four measures of one view (None when too little floor is in sight)."""
    valid = np.isfinite(true) & (true > 0) & np.isfinite(pred) & (pred > 0)
    found = true_floor(true, camera, height)
    if not valid.any() or found is None or found[0].sum() < MIN_FLOOR_SHARE * valid.sum():
        return None
    floor, normal = found[0] & valid, found[1]
    oracle = float(np.median(true[valid] / pred[valid]))
    fit = fit_ground_plane(pred, camera, height)
    predicted_normal = _plane(depth_to_points(pred, camera)[floor])[0]
    cosine = min(1.0, abs(float(predicted_normal @ normal)))
    return {"own": abs(math.log(oracle)), "held": fit.ok,
            "anchor": abs(math.log(fit.scale / oracle)) if fit.ok else None,
            "floor_bound": abs(math.log(float(np.median(true[floor] / pred[floor])) / oracle)),
            "normal_deg": math.degrees(math.acos(cosine))}


def run_split(backend: Any, name: str, families: Optional[tuple[str, ...]], count: int,
              seed: int) -> None:
    """Print one row: the split's views with the floor in sight."""
    from training.data.worlds import SyntheticWorldDataset
    data = SyntheticWorldDataset(count, (240, 320), seed=seed, families=families)
    rows = []
    for i in range(count):
        sample = data[i]
        true = np.where(sample["valid_mask"], sample["depth"], np.nan).astype(np.float32)
        pred = backend.infer_frame(sample["image"], sample["intrinsics"]).depth_m
        row = view_measures(pred, true, sample["intrinsics"], sample["camera_height_m"])
        if row is not None:
            rows.append(row)
    held = [r["anchor"] for r in rows if r["held"]]
    mean = (lambda key: float(np.mean([r[key] for r in rows])) if rows else float("nan"))
    print(f"{name:<16}{count:>6}{len(rows):>7}{mean('own'):>8.3f}"
          f"{100 * len(held) / max(len(rows), 1):>7.0f}%"
          f"{(np.mean(held) if held else float('nan')):>8.3f}{mean('floor_bound'):>8.3f}"
          f"{mean('normal_deg'):>8.1f}")


def main(argv: Optional[list[str]] = None) -> int:
    """Held-out worlds and halls (the package's held-out seed), one row each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="demo-mirror", help="bundled name or .safetensors "
                    "(default: %(default)s)")
    ap.add_argument("--views", type=int, default=64, help="views per split (default: "
                    "%(default)s)")
    ap.add_argument("--seed", type=int, default=1000, help="held-out seed (default: "
                    "%(default)s, the package's held-out split)")
    args = ap.parse_args(argv)
    from clip_depth_ros.backends import create_backend
    backend = create_backend("torch", model=None, weights=args.weights, fast_path="never")
    print("mean |log| scale errors against median scaling (s_o); views with the floor in sight")
    print(f"{'split':<16}{'views':>6}{'floor':>7}{'own':>8}{'held':>8}{'anchor':>8}"
          f"{'bound':>8}{'normal':>8}")
    run_split(backend, "held-out worlds", None, args.views, args.seed)
    run_split(backend, "held-out halls", ("hall",), args.views, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
