"""Lens check: does a model give the same metres for one room through a wide and a long lens?

    python -m training.lens_check --weights demo-mirror --texture-scale 0.3
    python -m training.lens_check --weights demo-mirror --plot lens.png

Each room is rendered from one pose through two pinhole lenses of one sensor (640x480; by
default 400 and 800 px focal length, principal point in the centre), so the long lens sees
the central part of the wide lens's field at twice the magnification.  Per room the table
gives the median, over that shared field, of (depth through the long lens) / (depth through
the wide lens), the long-lens map resampled onto the wide lens's pixels: 1.00 means the lens
does not change the metres.  The truth's ratio is printed too (1.00 up to resampling), and
each lens's median predicted / true depth over its whole image.
A plain model cannot know the lens; a camera-aware one (camera_aware_scale) is told it by the
intrinsics.  ``--plot`` writes the predictions and the ratio maps side by side.
"""
from __future__ import annotations

import argparse
import sys
from typing import Iterable, Iterator, Optional, Sequence

import cv2
import numpy as np

from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.synthetic import demo_trajectory, random_indoor_scene, render

from .cli_errors import command_main

SIZE = (640, 480)  # width, height
ROOMS = (3, 11, 17, 23)  # the rooms of test/test_camera_aware.py


def lens(focal_px: float) -> Intrinsics:
    """A centred pinhole camera of the check's sensor."""
    width, height = SIZE
    return Intrinsics(focal_px, focal_px, (width - 1) / 2, (height - 1) / 2, width, height)


def lens_views(rooms: Sequence[int] = ROOMS, wide_px: float = 400.0, tele_px: float = 800.0,
               texture_scale_m: Optional[float] = None
               ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(room, wide rgb, wide truth, tele rgb, tele truth): one pose per room, two lenses."""
    for seed in rooms:
        scene = random_indoor_scene(seed, texture_scale_m)
        pose = demo_trajectory(scene, 8)[seed % 8]
        yield (seed, *render(scene, pose, lens(wide_px)), *render(scene, pose, lens(tele_px)))


def shared_field(wide: np.ndarray, tele: np.ndarray,
                 zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """(wide map cropped to the long lens's field, long-lens map resampled onto those pixels).

    zoom = tele focal / wide focal (> 1), both centred on one sensor.
    """
    if zoom < 1:
        raise ValueError(f"zoom must be >= 1 (tele focal / wide focal), got {zoom}")
    height, width = wide.shape
    cw, ch = int(round(width / zoom)), int(round(height / zoom))
    x0, y0 = (width - cw) // 2, (height - ch) // 2
    centre = wide[y0:y0 + ch, x0:x0 + cw]
    tele_small = cv2.resize(np.ascontiguousarray(tele, np.float32), (cw, ch),
                            interpolation=cv2.INTER_AREA)
    return centre, tele_small


def overlap_ratio(wide: np.ndarray, tele: np.ndarray, zoom: float = 2.0) -> float:
    """Median of tele / wide depth over the shared field of view (NaN if nothing valid)."""
    centre, tele_small = shared_field(wide, tele, zoom)
    valid = np.isfinite(centre) & np.isfinite(tele_small) & (centre > 0) & (tele_small > 0)
    if not valid.any():
        return float("nan")
    return float(np.median(tele_small[valid] / centre[valid]))


def camera_height(room: int) -> float:
    """The height of the camera :func:`lens_views` puts in ``room`` (what a robot knows)."""
    return float(demo_trajectory(random_indoor_scene(room), 8)[room % 8].position[2])


def check(backend, views: Iterable[tuple], wide_px: float = 400.0,
          tele_px: float = 800.0, scale_anchor: str = "none") -> list[dict]:
    """Per room of ``views`` (from :func:`lens_views` with the same lenses): truth and model
    ratios, each lens's error, and the maps for plotting.  ``scale_anchor`` ground_plane:
    each prediction first goes through the node's anchor told the camera's height (a fit
    that does not hold leaves the model's scale; ``held`` counts the lenses where it held)."""
    zoom = tele_px / wide_px
    rows = []
    for room, w_rgb, w_true, t_rgb, t_true in views:
        w_pred = backend.infer(w_rgb, lens(wide_px))
        t_pred = backend.infer(t_rgb, lens(tele_px))
        held = 0
        if scale_anchor != "none":
            from clip_depth_ros.trust import TrustSettings

            from .evaluate import anchor_prediction
            settings = TrustSettings(scale_anchor=scale_anchor,
                                     camera_height_m=camera_height(room))
            anchored = []
            for rgb, pred, focal in ((w_rgb, w_pred, wide_px), (t_rgb, t_pred, tele_px)):
                sample = {"image": rgb, "intrinsics": lens(focal), "depth": pred,
                          "valid_mask": np.isfinite(pred)}
                depth, ok = anchor_prediction(pred, sample, settings, 0.0, room)
                anchored.append(depth)
                held += int(ok)
            w_pred, t_pred = anchored
        rows.append({"room": room, "truth": overlap_ratio(w_true, t_true, zoom),
                     "model": overlap_ratio(w_pred, t_pred, zoom),
                     "wide_error": overlap_ratio(w_true, w_pred, 1.0),
                     "tele_error": overlap_ratio(t_true, t_pred, 1.0), "wide_rgb": w_rgb,
                     "tele_rgb": t_rgb, "wide_pred": w_pred, "tele_pred": t_pred,
                     "wide_true": w_true, "zoom": zoom, "held": held})
    return rows


def plot(rows: list[dict], path: str, title: str) -> None:
    """One row per room: the two images, both predictions of the shared field, their ratio."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(rows), 5, figsize=(17, 2.9 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows):
        centre, tele_small = shared_field(row["wide_pred"], row["tele_pred"], row["zoom"])
        truth, _ = shared_field(row["wide_true"], row["wide_true"], row["zoom"])
        vmax = float(np.nanpercentile(truth[np.isfinite(truth)], 99))
        ratio = tele_small / np.maximum(centre, 1e-6)
        panels = [(row["wide_rgb"], "wide lens", {}), (row["tele_rgb"], "long lens", {}),
                  (centre, "wide lens: depth of the shared field", {"vmin": 0, "vmax": vmax}),
                  (tele_small, "long lens: same field", {"vmin": 0, "vmax": vmax}),
                  (ratio, f"long / wide (median {row['model']:.2f})",
                   {"vmin": 0.5, "vmax": 1.5, "cmap": "coolwarm"})]
        for ax, (img, name, kw) in zip(ax_row, panels):
            im = ax.imshow(img, **kw)
            ax.set_title(f"room {row['room']}: {name}", fontsize=8)
            ax.axis("off")
            if kw:
                fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


@command_main("python -m training.lens_check")
def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="demo-mirror",
                    help="bundled name or weights file (default demo-mirror)")
    ap.add_argument("--model", default=None, help="model name when the weights carry none")
    ap.add_argument("--wide", type=float, default=400.0, help="wide lens focal length (px)")
    ap.add_argument("--tele", type=float, default=800.0, help="long lens focal length (px)")
    ap.add_argument("--rooms", type=int, nargs="+", default=list(ROOMS))
    ap.add_argument("--texture-scale", type=float, default=None,
                    help="give every surface pattern this size in metres (default: random)")
    ap.add_argument("--scale-anchor", choices=("none", "ground_plane"), default="none",
                    help="anchor each prediction's scale as the node does, ground_plane told "
                         "the camera's height (default none: the model's own scale)")
    ap.add_argument("--plot", default=None, help="write the maps to this PNG")
    args = ap.parse_args(argv)
    if not 0 < args.wide < args.tele:
        ap.error("need 0 < --wide < --tele")
    from clip_depth_ros.backends.torch_backend import TorchBackend
    backend = TorchBackend(args.model, weights=args.weights)
    views = lens_views(args.rooms, args.wide, args.tele, args.texture_scale)
    rows = check(backend, views, args.wide, args.tele, args.scale_anchor)
    aware = "on" if backend.config.camera_aware_scale else "off"
    print(f"model {backend.config.name} (camera-aware scale {aware}), lenses {args.wide:g} / "
          f"{args.tele:g} px at {SIZE[0]}x{SIZE[1]}, surface patterns "
          f"{args.texture_scale if args.texture_scale else 'random'}")
    print(f"{'room':>6} {'truth':>7} {'model':>7} {'wide/true':>10} {'tele/true':>10}")
    for row in rows:
        print(f"{row['room']:>6} {row['truth']:>7.3f} {row['model']:>7.3f} "
              f"{row['wide_error']:>10.3f} {row['tele_error']:>10.3f}")
    median = float(np.median([row["model"] for row in rows]))
    wide_median = float(np.median([row["wide_error"] for row in rows]))
    tele_median = float(np.median([row["tele_error"] for row in rows]))
    print(f"{'median':>6} {'':>7} {median:>7.3f} {wide_median:>10.3f} {tele_median:>10.3f}   "
          "(1.00 = the lens does not change the metres)")
    spread = float(np.mean([abs(np.log(row["model"])) for row in rows]))
    print(f"mean |log long/wide| {spread:.3f}; rooms within 5%: "
          f"{np.mean([abs(row['model'] - 1) <= 0.05 for row in rows]):.0%}")
    if args.scale_anchor != "none":
        print(f"scale_anchor {args.scale_anchor} held on "
              f"{sum(row['held'] for row in rows)} of {2 * len(rows)} predictions")
    if args.plot:
        plot(rows, args.plot, f"{backend.config.name}: long / wide lens, median {median:.2f}")
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
