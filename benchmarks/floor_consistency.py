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

from benchmarks.trust_accuracy import add_weights_option, reference_backend  # noqa: E402
from clip_depth_ros.anchoring import (fit_ground_plane, fit_plane,  # noqa: E402
                                      planes_through)
from clip_depth_ros.geometry import Intrinsics, depth_to_points  # noqa: E402

MIN_FLOOR_SHARE = 0.05  # views with less true floor in sight are left out


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
    normals, offsets = planes_through(points, rng.integers(0, len(points), size=(300, 3)))
    plausible = np.flatnonzero((-normals[:, 1] >= math.cos(math.radians(40)))
                               & (np.abs(offsets - height) <= 0.02))
    if not len(plausible):
        return None
    counts = [int((np.abs(points @ normals[k] + offsets[k]) < 0.02).sum()) for k in plausible]
    best = plausible[int(np.argmax(counts))]
    mask = np.zeros(true.shape, bool)
    mask[valid] = np.abs(points @ normals[best] + offsets[best]) < 0.02
    return mask, fit_plane(cloud[mask])[0]


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
    predicted_normal = fit_plane(depth_to_points(pred, camera)[floor])[0]
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
    add_weights_option(ap)
    ap.add_argument("--views", type=int, default=64, help="views per split (default: "
                    "%(default)s)")
    ap.add_argument("--seed", type=int, default=1000, help="held-out seed (default: "
                    "%(default)s, the package's held-out split)")
    args = ap.parse_args(argv)
    backend = reference_backend(args.weights)
    print("mean |log| scale errors against median scaling (s_o); views with the floor in sight")
    print(f"{'split':<16}{'views':>6}{'floor':>7}{'own':>8}{'held':>8}{'anchor':>8}"
          f"{'bound':>8}{'normal':>8}")
    run_split(backend, "held-out worlds", None, args.views, args.seed)
    run_split(backend, "held-out halls", ("hall",), args.views, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
