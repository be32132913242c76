"""`clip-depth bag`: the command line around :mod:`clip_depth_ros.bag` (options, the default
model, the camera note, Ctrl-C, one-line errors and the summary).

Every user mistake (paths, topics, options, model) is found before anything is written and
printed as one line with exit status 2.  Ctrl-C stops after the current frame and keeps what
was converted as a finished, readable bag (exit status 130, one line saying so); a second
Ctrl-C stops at once and keeps nothing.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from .backends.base import DepthBackend
from .bag import FORMATS, TOPIC_OPTIONS, BagJob, convert, output_topics, prepare
from .bag_reader import BagError
from .config import add_model_arguments, model_or_default
from .trust import MAX_SPARSE_TOLERANCE_S, SPARSE_TOLERANCE_S


@contextmanager
def interrupt_flag() -> Iterator[Callable[[], bool]]:
    """A function that says whether Ctrl-C was pressed: the first press only sets the flag
    (the work stops at the next check and finishes cleanly), a second raises
    KeyboardInterrupt at once.  Outside the main thread (no signal handlers) it stays False."""
    pressed: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if pressed:
            raise KeyboardInterrupt
        pressed.append(True)
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `clip-depth bag` options."""
    parser.description = (
        "Depth for a rosbag2 recording (sqlite3 or MCAP): a new bag with the input's records "
        "and, per image, depth, depth/camera_info and optionally points, stamped like the "
        "node's outputs. The bag appears only when finished; Ctrl-C keeps what was converted "
        "as a finished bag (press twice to keep nothing).")
    parser.add_argument("input", help="rosbag2 directory, or a single .mcap / .db3 file")
    parser.add_argument("output", help="new bag directory (must not exist)")
    parser.add_argument("--image-topic", default="/camera/image_raw",
                        help="Image or CompressedImage topic (default: %(default)s)")
    parser.add_argument("--camera-info-topic", default="auto",
                        help="CameraInfo topic; 'auto' = <image ns>/camera_info when the bag "
                             "has it, 'none' = depth only (default: %(default)s)")
    add_model_arguments(parser)
    outputs = parser.add_argument_group("outputs")
    for key, what in (("depth", "depth images"), ("info", "depth camera_info"),
                      ("points", "point clouds"), ("confidence", "confidence images")):
        default = output_topics("/<ns>/image")[key].replace("/<ns>", "<image ns>")
        outputs.add_argument(TOPIC_OPTIONS[key], default=None, metavar="TOPIC",
                             help=f"topic of the {what} (default: {default})")
    outputs.add_argument("--copy-input", action=argparse.BooleanOptionalAction, default=True,
                         help="copy every record of the input bag into the output, so it "
                              "replays the camera with its depth (default: on)")
    outputs.add_argument("--points", action=argparse.BooleanOptionalAction, default=False,
                         help="also write point clouds (needs camera_info). Off by default: "
                              "depth + depth/camera_info already define them (depth_image_proc "
                              "rebuilds them at playback), and a full-resolution xyzrgb cloud "
                              "is 16 bytes a pixel, 4x the depth image (a 640x480 frame: "
                              "4.9 MB); with --points, --stride 4 makes them 16x smaller")
    outputs.add_argument("--confidence", action="store_true",
                         help="also write the node's depth/confidence: 32FC1 in [0, 1] (1 = "
                              "most trusted, NaN where depth is invalid), ranking pixels by "
                              "expected error")
    outputs.add_argument("--points-rgb", action=argparse.BooleanOptionalAction, default=True,
                         help="xyzrgb points (else xyz) (default: on)")
    outputs.add_argument("--stride", type=int, default=1,
                         help="point cloud decimation: every Nth row and column (1 = organized "
                              "cloud of the full image, as the node) (default: %(default)s)")
    parser.add_argument("--camera-info-tolerance", type=float, default=0.01,
                        help="pair camera_info within this many seconds of the image stamp "
                             "(default: %(default)s)")
    latest = parser.add_mutually_exclusive_group()
    latest.add_argument("--use-latest-camera-info", dest="use_latest_camera_info",
                        action="store_true", default=True,
                        help="with no camera_info within the tolerance, use the latest one "
                             "recorded before the image, as the node's use_latest_camera_info "
                             "(default)")
    latest.add_argument("--no-latest-camera-info", dest="use_latest_camera_info",
                        action="store_false",
                        help="pair camera_info by stamp only: frames without one within the "
                             "tolerance get depth only")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="storage of the output (default: the input's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from .trust import add_trust_arguments
    add_trust_arguments(parser, "the metric measurements on --sparse-depth-topic")
    parser.add_argument("--sparse-depth-topic", default=None,
                        help="sparse_depth input for --scale-anchor sparse_depth or "
                             "--sparse-depth-fill: an Image topic (32FC1 m or 16UC1 mm, NaN/0 = "
                             "none), paired by stamp")
    parser.add_argument("--sparse-depth-tolerance-s", type=float, default=SPARSE_TOLERANCE_S,
                        help="pair an image with the sparse_depth message stamped within this "
                             "many seconds, as the node's sparse_depth_tolerance_s (default: "
                             "%(default)s)")
    parser.add_argument("--scale-time-constant-s", type=float, default=1.0,
                        help="temporal scale filter over the image stamps, as the node's "
                             "scale_time_constant_s (default: %(default)s; 0 = off)")


def camera_note(job: BagJob, config: Any, points: bool) -> Optional[str]:
    """One line when the bag has no camera_info: what is not written, and for a camera-aware
    model that its camera-aware scale is off (it assumes its canonical camera)."""
    if job.camera_info_topic is not None:
        return None
    line = f"no camera_info for {job.image_topic}: writing depth only" + (
        ", no points" if points else "")
    if config.camera_aware_scale:
        ratio = config.canonical_focal_px / config.input_hw[1]
        line += (f"; model {config.name} is camera-aware and its camera-aware scale is off: it "
                 f"assumes its canonical camera (f = {ratio:.2f} x the image width), so depth "
                 "is metric only for that lens (--camera-info-topic names the real one)")
    return line


def bag_trust(args: argparse.Namespace) -> Any:
    """The node's trust settings from the bag options (BagError on a mistake)."""
    import dataclasses

    from .errors import ConfigError
    from .trust import sparse_source_problem, trust_settings_from_args
    try:
        trust = dataclasses.replace(trust_settings_from_args(args),
                                    scale_time_constant_s=args.scale_time_constant_s)
    except ConfigError as exc:
        raise BagError(str(exc)) from None
    problem = sparse_source_problem(trust, bool(args.sparse_depth_topic),
                                    "--sparse-depth-topic")
    if problem:
        raise BagError(problem)
    if trust.scale_anchor == "ground_plane" and not trust.camera_height_m > 0:
        raise BagError("--scale-anchor ground_plane needs --camera-height-m")
    if not 0 <= args.sparse_depth_tolerance_s <= MAX_SPARSE_TOLERANCE_S:
        raise BagError(f"--sparse-depth-tolerance-s must be within [0, "
                       f"{MAX_SPARSE_TOLERANCE_S:g}] s (the node's range), not "
                       f"{args.sparse_depth_tolerance_s:g}")
    return trust


def run(args: argparse.Namespace,
        backend_factory: Optional[Callable[..., DepthBackend]] = None) -> int:
    """`clip-depth bag`: check, load the model, convert, print a summary; 2 on a clear error,
    130 when interrupted (one line saying what was kept)."""
    if args.stride < 1:
        print("clip-depth bag: error: --stride must be >= 1", file=sys.stderr)
        return 2
    chosen = {key: getattr(args, TOPIC_OPTIONS[key][2:].replace("-", "_")) for key in
              TOPIC_OPTIONS}
    try:
        job = prepare(args.input, args.output, args.image_topic, args.camera_info_topic,
                      args.format, copy_input=args.copy_input, points=args.points,
                      topics=chosen, confidence=args.confidence)
        if backend_factory is None:
            from .backends import create_backend
            backend_factory = create_backend
        model, weights = model_or_default(args.model, args.weights)
        try:
            backend = backend_factory("torch", model=model, weights=weights,
                                      backbone_weights=args.backbone_weights,
                                      device=args.device, precision=args.precision)
        except Exception as exc:  # any load failure: one clear line, no traceback
            raise BagError(f"could not load the model: {' '.join(str(exc).split())}") from None
        note = camera_note(job, backend.config, args.points)
        if note:
            print(f"clip-depth bag: {note}", file=sys.stderr)
        trust = bag_trust(args)
        with interrupt_flag() as stop:
            report = convert(job, backend, points=args.points, points_rgb=args.points_rgb,
                             stride=args.stride, tolerance_s=args.camera_info_tolerance,
                             use_latest_camera_info=args.use_latest_camera_info,
                             progress=not args.no_progress, stop=stop, trust=trust,
                             sparse_topic=args.sparse_depth_topic,
                             sparse_tolerance_s=args.sparse_depth_tolerance_s)
    except BagError as exc:
        print(f"clip-depth bag: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"clip-depth bag: interrupted: nothing written ({args.output} not created)",
              file=sys.stderr)
        return 130
    if report.interrupted:
        if report.depth == 0:
            print(f"clip-depth bag: interrupted before the first frame: nothing written "
                  f"({job.output} not created)", file=sys.stderr)
        else:
            print(f"clip-depth bag: interrupted after {report.frames} of {job.frame_count} "
                  f"frames: {job.output} is a finished, readable bag of those "
                  f"({report.depth} depth{', and the input up to there' if job.copy_input else ''}"
                  "); delete it to convert again", file=sys.stderr)
        return 130
    skipped = sum(report.skipped.values())
    print(f"{report.frames} frames from {job.image_topic} -> {job.output} ({job.storage}): "
          f"{report.depth} depth, {report.camera_info} camera_info, {report.points} points"
          + (f", {report.confidence} confidence" if "confidence" in job.topics else "")
          + (f", {report.copied} input records copied" if job.copy_input else "")
          + (f"; skipped {skipped} ({report.first_problem})" if skipped else ""))
    anchor = report.anchor
    if anchor.get("scale_anchor", "none") != "none":
        fallbacks = ", ".join(f"{k[len('anchor_fallback_'):]} {v}" for k, v in anchor.items()
                              if k.startswith("anchor_fallback_"))
        print(f"scale anchor {anchor['scale_anchor']}: last scale {anchor['scale']:.3f} from "
              f"{anchor['scale_source']}" + (f"; fallbacks: {fallbacks}" if fallbacks else ""))
    return 0
