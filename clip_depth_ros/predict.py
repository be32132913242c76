"""`clip-depth predict`: metric depth for one image file.

Writes the depth in metres as ``<out stem>.npy`` (float32, HxW) and a colour
picture with a colour bar in metres (``--out``, PNG unless another image extension is given).
Every user mistake (image, output path, model, weights, device, camera) is found before
anything is written and reported as one line by ``clip-depth``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from .config import DEFAULT_WEIGHTS, add_model_arguments, model_or_default
from .errors import ConfigError, MissingDependencyError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DESCRIPTION = (
    "Metric depth for one image file. Writes OUT (a colour picture with a colour bar in "
    "metres; .png added when OUT has no image extension) and OUT's stem + .npy (float32 depth "
    f"in metres). With no --model/--weights it runs the bundled {DEFAULT_WEIGHTS} model, the "
    "node's default.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register `predict`'s arguments on ``parser``."""
    parser.description = DESCRIPTION
    parser.add_argument("image", help="input image file (png, jpg, ... anything OpenCV reads)")
    parser.add_argument("--out", default="depth.png",
                        help="output picture; its stem + .npy gets the depth in metres; an "
                             "existing folder gets <image stem>_depth.png inside (default: "
                             "%(default)s)")
    add_model_arguments(parser)
    camera = parser.add_mutually_exclusive_group()
    camera.add_argument("--focal-px", type=float, default=None,
                        help="camera-aware models: focal length in pixels at the image's "
                             "resolution (default: the model's canonical camera)")
    camera.add_argument("--camera-info", default=None, metavar="FILE",
                        help="camera-aware models: a camera_info YAML/JSON (`ros2 topic echo "
                             "--once` output or a camera_calibration file); fx from P, else K "
                             "(default: the model's canonical camera)")
    from .trust import add_trust_arguments
    add_trust_arguments(parser, "the metric measurements in --sparse-depth", points=False)
    parser.add_argument("--sparse-depth", default=None, metavar="FILE",
                        help="sparse metric depth for --scale-anchor sparse_depth or "
                             "--sparse-depth-fill: a 16-bit PNG in millimetres (0 = none) or a "
                             ".npy of metres (NaN/0 = none), any resolution of the image's "
                             "aspect")
    parser.add_argument("--confidence", action="store_true",
                        help="also write <out>_confidence.npy (0..1, NaN where invalid)")
    parser.add_argument("--colormap", default="turbo",
                        help="colormap of the picture: turbo, jet, viridis, inferno, magma, "
                             "plasma or gray (default: %(default)s)")


def output_paths(out: str, image: str) -> tuple[Path, Path]:
    """(picture, .npy) paths for ``--out``: the picture gets .png unless it has an image
    extension; an existing folder gets ``<image stem>_depth.png``; the folder must exist."""
    path = Path(out).expanduser()
    if path.is_dir():
        path = path / f"{Path(image).stem}_depth.png"
    elif path.suffix.lower() == ".npy":
        path = path.with_suffix(".png")
    elif path.suffix.lower() not in IMAGE_SUFFIXES:
        path = path.with_name(path.name + ".png")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {out}: '{folder}' is a file, not a folder")
    if not folder.is_dir():
        raise ConfigError(f"--out {out}: folder '{folder}' does not exist; create it first or "
                          "choose an existing one")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"--out {out}: folder '{folder}' is not writable")
    return path, path.with_suffix(".npy")


def read_camera_info(path: str) -> Any:
    """A camera_info file as fields k, p, width, height (ROS 2 echo, ROS 1 or calibration)."""
    try:
        text = Path(path).expanduser().read_text()
    except OSError as exc:
        raise ConfigError(f"--camera-info {path}: cannot read it ({exc.strerror})") from None
    try:
        if Path(path).suffix.lower() == ".json":
            docs = [json.loads(text)]
        else:
            try:
                import yaml
            except ImportError:
                raise MissingDependencyError("--camera-info as YAML needs PyYAML (pip install "
                                             "pyyaml), or give it as .json") from None
            docs = list(yaml.safe_load_all(text))
    except ValueError as exc:  # json and yaml errors (yaml's derive from YAMLError, below)
        raise ConfigError(f"--camera-info {path}: not valid JSON ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - yaml.YAMLError without importing yaml here
        raise ConfigError(f"--camera-info {path}: not valid YAML ({str(exc).splitlines()[0]})"
                          ) from None
    data = next((d for d in docs if isinstance(d, dict)), None)  # echo: first of "---" docs
    if data is None:
        raise ConfigError(f"--camera-info {path}: no camera_info mapping in it")

    def matrix(*keys: str) -> list[float]:
        for key in keys:
            value = data.get(key)
            if isinstance(value, dict):  # camera_calibration: {rows, cols, data}
                value = value.get("data")
            if isinstance(value, list) and value:
                return value
        return []

    return SimpleNamespace(k=matrix("k", "K", "camera_matrix"),
                           p=matrix("p", "P", "projection_matrix"),
                           width=int(data.get("width", data.get("image_width", 0)) or 0),
                           height=int(data.get("height", data.get("image_height", 0)) or 0))


def camera_intrinsics(args: argparse.Namespace, width: int, height: int) -> Optional[Any]:
    """Intrinsics for the image from --focal-px or --camera-info (scaled to the image); None
    when neither is given."""
    from .geometry import Intrinsics
    from .image_codec import camera_info_to_intrinsics
    if args.focal_px is not None:
        if not (args.focal_px > 0 and args.focal_px < float("inf")):
            raise ConfigError(f"--focal-px must be a focal length in pixels > 0, got "
                              f"{args.focal_px:g}")
        return Intrinsics(args.focal_px, args.focal_px, (width - 1) / 2.0, (height - 1) / 2.0,
                          width, height)
    if args.camera_info is None:
        return None
    msg = read_camera_info(args.camera_info)
    if not msg.width or not msg.height:  # a size-less file describes this image
        msg.width, msg.height = width, height
    try:
        intrinsics = camera_info_to_intrinsics(msg)
    except ValueError:
        intrinsics = None
    if intrinsics is None:
        raise ConfigError(f"--camera-info {args.camera_info}: no valid focal length in P or K "
                          "(need p or k with fx > 0)")
    if abs(intrinsics.width * height - intrinsics.height * width) > max(width, height):
        raise ConfigError(f"--camera-info {args.camera_info} describes a {intrinsics.width}x"
                          f"{intrinsics.height} image, the image is {width}x{height} (another "
                          "aspect ratio: not the same camera image)")
    return intrinsics.scaled_to(width, height)


def _camera_note(config: Any, intrinsics: Any, width: int) -> Optional[str]:
    """One line on how the camera enters the depth, or None when there is nothing to say."""
    if config.camera_aware_scale and intrinsics is None:
        canonical = config.canonical_focal_px * width / config.input_hw[1]
        return (f"model {config.name} is camera-aware and no --focal-px/--camera-info was "
                f"given: assuming its canonical camera (f = {canonical:.0f} px at this "
                "image's width); depth is metric only for that lens")
    if not config.camera_aware_scale and intrinsics is not None:
        return (f"model {config.name} is not camera-aware: the focal length does not change "
                "its depth")
    return None


def read_sparse_depth(path: str) -> Any:
    """Sparse metric depth from a file: .npy metres or a 16-bit PNG in millimetres."""
    import cv2
    import numpy as np
    if not Path(path).is_file():
        raise ConfigError(f"--sparse-depth '{path}' does not exist")
    if path.endswith(".npy"):
        metres = np.load(path, allow_pickle=False).astype(np.float32)
    else:
        raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
            raise ConfigError(f"--sparse-depth '{path}' must be a .npy of metres or a "
                              "single-channel 16-bit PNG in millimetres")
        metres = raw.astype(np.float32) / 1000.0
    if metres.ndim != 2:
        raise ConfigError(f"--sparse-depth '{path}' must be one channel, got {metres.shape}")
    if not metres.size:
        raise ConfigError(f"--sparse-depth '{path}' is empty ({metres.shape})")
    metres[~(np.isfinite(metres) & (metres > 0))] = np.nan
    return metres


def run(args: argparse.Namespace) -> int:
    """`clip-depth predict`: check everything, infer, write .npy + picture, print a summary."""
    import logging

    import cv2
    import numpy as np

    from .backends import create_backend
    # our own format before open_clip's first root-logger call installs "WARNING:root:..."
    logging.basicConfig(format="clip-depth predict: %(message)s")
    from .colorize import COLORMAPS, colorize_depth, robust_range, with_colorbar
    if args.colormap not in COLORMAPS:
        raise ConfigError(f"--colormap {args.colormap!r} is not one of "
                          f"{', '.join(sorted(COLORMAPS))}")
    if Path(args.image).is_dir():
        raise ConfigError(f"image '{args.image}' is a folder; give one image file")
    if not Path(args.image).is_file():
        raise ConfigError(f"image '{args.image}' does not exist")
    bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(f"cannot read image '{args.image}': not an image OpenCV decodes "
                          f"(e.g. {', '.join(s[1:] for s in IMAGE_SUFFIXES)})")
    picture_path, npy_path = output_paths(args.out, args.image)
    height, width = bgr.shape[:2]
    intrinsics = camera_intrinsics(args, width, height)
    from .pipeline import DepthPipeline
    from .trust import (PointTrust, ScaleAnchor, sparse_covers_image,
                        sparse_source_problem, trust_settings_from_args)
    settings = trust_settings_from_args(args)
    problem = sparse_source_problem(settings, bool(args.sparse_depth), "--sparse-depth FILE")
    if problem:
        raise ConfigError(problem)
    sparse = read_sparse_depth(args.sparse_depth) if args.sparse_depth else None
    if sparse is not None and not sparse_covers_image(sparse.shape, (height, width)):
        raise ConfigError(f"--sparse-depth '{args.sparse_depth}' is {sparse.shape[1]}x"
                          f"{sparse.shape[0]}, not of the image's aspect ({width}x{height}); "
                          "it must cover the same field of view at any resolution")
    if settings.scale_anchor == "ground_plane" and (intrinsics is None
                                                    or not settings.camera_height_m > 0):
        raise ConfigError("--scale-anchor ground_plane needs --camera-height-m and the lens "
                          "(--focal-px or --camera-info)")
    model, weights = model_or_default(args.model, args.weights)
    backend = create_backend("torch", model=model, weights=weights,
                             backbone_weights=args.backbone_weights, device=args.device,
                             precision=args.precision)
    note = _camera_note(backend.config, intrinsics, width)
    if note:
        print(f"clip-depth predict: {note}", file=sys.stderr)
    anchor = ScaleAnchor(settings)
    trust = PointTrust(settings, want_confidence=args.confidence)
    outputs = DepthPipeline(backend, steps=[anchor, trust]).process(
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), intrinsics, stamp_s=0.0, sparse_depth_m=sparse)
    depth = outputs.depth_m
    backend.close()
    if settings.scale_anchor != "none":
        st = anchor.status
        print(f"clip-depth predict: scale {st.scale:.3f} from {st.source}"
              + (f" ({st.last_reason})" if st.last_reason else f" ({st.support} points)"),
              file=sys.stderr)
    if args.confidence:
        np.save(npy_path.with_name(npy_path.stem + "_confidence.npy"), outputs.confidence)
    lo, hi = robust_range(depth) or (backend.config.min_depth, backend.config.max_depth)
    picture = with_colorbar(colorize_depth(depth, lo, hi, args.colormap), lo, hi, args.colormap)
    if not cv2.imwrite(str(picture_path), picture):
        raise ConfigError(f"could not write {picture_path} (OpenCV has no writer for it)")
    np.save(npy_path, depth)
    print(f"depth {width}x{height}: {np.nanmin(depth):.2f}-{np.nanmax(depth):.2f} m, median "
          f"{np.nanmedian(depth):.2f} m, colours {lo:.2f}-{hi:.2f} m -> {picture_path}, "
          f"{npy_path} (metres)")
    return 0
