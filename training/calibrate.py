"""Calibrate DepthCLIP's bin depths on a few RGB-D frames: a new model config, no training.

    python -m training.calibrate --model ViT-B-16-depthclip --backbone-weights openai \
        --bag robot_bag/ --image-topic /camera/color/image_raw \
        --depth-topic /camera/aligned_depth_to_color/image_raw --frames 40 --out my-depthclip.json
    python -m training.calibrate --model ViT-B-16-depthclip --folder pairs/ --out my.json

DepthCLIP's depth is linear in its bin depths b: depth = sum_k p_k b_k with p the per-pixel
softmax over the depth words.  So with the words, prompts and temperature fixed, b is fitted by
least squares, min ||P b - d||^2 over the valid pixels of the frames.  P is the bin
probabilities upsampled bilinearly to the model input size -- exactly how ``forward`` turns
bin depths into its output, so the fit minimises the error of the depth the model will emit --
and d is the measured depth resized to the input size with nearest-neighbour sampling (so no
edge pixel is a blend of foreground and background).  By default the bins are constrained to
b_1 >= min_depth and b_1 <= b_2 <= ... <= b_k (the words run from near to far): the fit
solves a non-negative least squares problem in the increments (b = min_depth + cumsum(delta),
delta >= 0) -- sorting an unconstrained fit would instead reassign depths to other words.
``--unordered`` keeps only b_k >= min_depth.  The output is the same model config with
``depthclip.bins_m`` replaced and a new name; pass its path wherever a model name goes
(``create_model``, the node's ``model`` parameter, ``training.evaluate --model``).
"""
from __future__ import annotations

import argparse
import bisect
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from clip_depth_ros.backends.base import preprocess
from clip_depth_ros.backends.torch_backend import resolve_device
from clip_depth_ros.bag_reader import (IMAGE_TYPES, bag_topic_count, iter_bag_images,
                                       iter_bag_messages)
from clip_depth_ros.config import ModelConfig
from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.image_codec import image_to_numpy, message_buffer
from clip_depth_ros.model import create_model
from clip_depth_ros.model.depth_model import DepthModel
from clip_depth_ros.model.depthclip import DepthCLIPHead
from clip_depth_ros.stamps import stamp_seconds
from clip_depth_ros.weights import atomic_write

from .cli_errors import command_main
from .clipself import spread_indices

log = logging.getLogger("training")
DEPTH_TYPES = IMAGE_TYPES  # raw (16UC1, mono16, 32FC1) or compressed depth
Frame = tuple[np.ndarray, np.ndarray]  # (RGB uint8 HxWx3, depth float32 metres, 0 = invalid)


# ---------------------------------------------------------------------------- the fit
def nnls_normal(gram: np.ndarray, rhs: np.ndarray, max_iter: int = 500) -> np.ndarray:
    """argmin_{x >= 0} ||A x - y||^2 given gram = A^T A and rhs = A^T y (Lawson-Hanson)."""
    n = len(rhs)
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    tol = 1e-12 * max(1.0, float(np.abs(rhs).max(initial=0.0)))
    for _ in range(max_iter):
        grad = rhs - gram @ x  # minus the gradient of the half squared error
        if passive.all() or grad[~passive].max() <= tol:
            break
        passive[np.argmax(np.where(passive, -np.inf, grad))] = True
        while True:
            s = np.zeros(n)
            s[passive] = np.linalg.lstsq(gram[np.ix_(passive, passive)], rhs[passive],
                                         rcond=None)[0]
            if (s[passive] > 0).all():
                x = s
                break
            blocking = passive & (s <= 0)
            alpha = np.min(x[blocking] / (x[blocking] - s[blocking]))
            x = x + alpha * (s - x)
            passive &= x > tol
            x[~passive] = 0.0
    return x


class BinFit:
    """Normal equations of min ||P b - d||^2, accumulated frame by frame (float64)."""

    def __init__(self, n_bins: int):
        self.gram = np.zeros((n_bins, n_bins))
        self.rhs = np.zeros(n_bins)
        self.depth_sq = 0.0
        self.pixels = 0
        self.frames = 0

    def add(self, probs: np.ndarray, depth_m: np.ndarray, valid: np.ndarray) -> None:
        """Add one frame: probs (K, H, W), depth (H, W) metres, valid (H, W) bool."""
        p = probs.reshape(len(probs), -1)[:, valid.ravel()].astype(np.float64)
        d = depth_m.ravel()[valid.ravel()].astype(np.float64)
        self.gram += p @ p.T
        self.rhs += p @ d
        self.depth_sq += float(d @ d)
        self.pixels += int(d.size)
        self.frames += 1

    def solve(self, min_depth: float, ordered: bool = True) -> np.ndarray:
        """Bin depths b >= min_depth (non-decreasing when ``ordered``) minimising the error."""
        if self.pixels == 0:
            raise ValueError("no valid depth pixels to calibrate on")
        k = len(self.rhs)
        # b = min_depth + T delta, delta >= 0; T = lower-triangular ones (cumsum) or identity
        t = np.tril(np.ones((k, k))) if ordered else np.eye(k)
        rhs = self.rhs - min_depth * self.gram.sum(axis=1)
        delta = nnls_normal(t.T @ self.gram @ t, t.T @ rhs)
        return min_depth + t @ delta

    def rmse(self, bins: Iterable[float]) -> float:
        """Root-mean-square error (m) of depth = P b over the accumulated pixels."""
        b = np.asarray(list(bins), dtype=np.float64)
        sq = b @ self.gram @ b - 2 * b @ self.rhs + self.depth_sq
        return float(np.sqrt(max(sq, 0.0) / max(self.pixels, 1)))


@torch.no_grad()
def probabilities_at_input(model: DepthModel, image: torch.Tensor) -> torch.Tensor:
    """DepthCLIP bin probabilities (B, K, H, W) upsampled to the input size as forward() does."""
    if not isinstance(model.head, DepthCLIPHead):  # the bins this fit solves for
        raise ValueError(f"calibration fits DepthCLIP bins; '{model.config.name}' is "
                         f"{model.config.method}")
    probs = model.head.bin_probabilities(model.image_encoder, image, model.text_embedding())
    if probs.shape[-2:] != image.shape[-2:]:
        probs = F.interpolate(probs, size=image.shape[-2:], mode="bilinear", align_corners=False)
    return probs


def calibrate(model: DepthModel, frames: Iterable[Frame],
              ordered: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """(fitted bin depths, report) from (RGB, depth metres) frames of any size."""
    cfg = model.config
    if cfg.camera_aware_scale:
        raise ValueError("calibrate a model with camera_aware_scale off: its bins are in a "
                         "canonical camera, which this fit does not model")
    height, width = cfg.input_hw
    fit = BinFit(len(cfg.depthclip.bins_m))
    device = next(model.parameters()).device
    for rgb, depth in frames:
        x = torch.from_numpy(preprocess(rgb, cfg)).to(device)
        probs = probabilities_at_input(model, x)[0].float().cpu().numpy()
        depth = cv2.resize(np.asarray(depth, np.float32), (width, height),
                           interpolation=cv2.INTER_NEAREST)
        valid = np.isfinite(depth) & (depth > cfg.min_depth) & (depth < cfg.max_depth)
        fit.add(probs, depth, valid)
    bins = fit.solve(cfg.min_depth, ordered)
    report = {"frames": fit.frames, "pixels": fit.pixels, "ordered": ordered,
              "bins_before_m": list(cfg.depthclip.bins_m), "bins_m": bins.tolist(),
              "rmse_before_m": fit.rmse(cfg.depthclip.bins_m), "rmse_after_m": fit.rmse(bins)}
    return bins, report


def calibrated_config(config: ModelConfig, bins: Iterable[float], name: str,
                      backbone_weights: Optional[str] = None, note: str = "") -> ModelConfig:
    """The same model with new bin depths and name; a backbone file/tag used for the fit is
    recorded as the backbone's ``pretrained`` so the config alone rebuilds that model."""
    backbone = config.backbone
    if backbone_weights:
        path = Path(backbone_weights).expanduser()
        source = str(path.resolve()) if path.exists() else backbone_weights
        if source == "random":
            log.warning("bins fitted to a random backbone only fit those exact random weights")
        backbone = dataclasses.replace(backbone, pretrained=source)
    depthclip = dataclasses.replace(config.depthclip, bins_m=[round(float(b), 6) for b in bins])
    description = f"{config.description} Bins calibrated: {note}".strip()
    return dataclasses.replace(config, name=name, backbone=backbone, depthclip=depthclip,
                               description=description)


def write_config(config: ModelConfig, path: Union[str, Path]) -> Path:
    """Write a model config JSON atomically (its path then works as a model name)."""
    path = Path(path)
    if path.suffix != ".json":
        raise ValueError(f"{path}: a model config is a .json file")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(config.to_json() + "\n"))
    return path


# ---------------------------------------------------------------------------- frame sources
def folder_frames(folder: Union[str, Path], frames: int = 40,
                  depth_scale: float = 1000.0) -> Iterator[Frame]:
    """rgb/NAME.(png|jpg) + depth/NAME.png (16-bit, depth_scale units per metre) or .npy
    (metres) pairs, evenly thinned to ``frames``."""
    from .data.datasets import FolderPairsDataset
    # intrinsics are not used by the fit; a placeholder spares an intrinsics.json
    data = FolderPairsDataset(str(folder), depth_scale, intrinsics=Intrinsics(1, 1, 0, 0, 1, 1))
    if len(data) == 0:
        raise ValueError(f"{folder}: no rgb/ + depth/ pairs")
    for i in spread_indices(len(data), frames):
        sample = data[i]
        yield sample["image"], sample["depth"]


def decode_depth_message(msg: Any, depth_scale: float = 1000.0) -> np.ndarray:
    """Depth in metres (0 = invalid) from 16UC1/mono16 (units of 1/depth_scale m, REP 118: mm)
    or 32FC1 (m) images, or compressedDepth / png-compressed 16-bit images."""
    if hasattr(msg, "format"):
        data = np.frombuffer(message_buffer(msg.data), np.uint8)
        if "compressedDepth" in msg.format:
            if "32FC1" in msg.format:
                raise ValueError("32FC1 compressedDepth (quantised inverse depth) is not "
                                 "supported; record 16UC1 or raw depth")
            data = data[12:]  # compressed_depth_image_transport's ConfigHeader
        raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
            raise ValueError(f"compressed depth ({msg.format!r}) is not a 16-bit single-channel "
                             "image")
        depth = raw.astype(np.float32) / np.float32(depth_scale)
    elif msg.encoding in ("16UC1", "mono16"):
        depth = image_to_numpy(msg).astype(np.float32) / np.float32(depth_scale)
    elif msg.encoding == "32FC1":
        depth = image_to_numpy(msg).copy()
    else:
        raise ValueError(f"depth encoding {msg.encoding!r} is not supported (16UC1, mono16, "
                         "32FC1, compressedDepth)")
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0))


def _stamp_s(msg: Any, log_time_ns: int) -> float:
    """The header stamp in seconds; the bag's log time when the header is empty."""
    seconds = stamp_seconds(msg.header.stamp)
    return seconds if seconds > 0 else log_time_ns * 1e-9


def bag_frames(bag: Union[str, Path], image_topic: str, depth_topic: str, frames: int = 40,
               depth_scale: float = 1000.0, max_dt: float = 0.05) -> list[Frame]:
    """(RGB, depth) pairs from a bag: ``frames`` images spread over the image topic, each with
    the depth message nearest in header stamp (within max_dt seconds, else skipped).

    The depth must be registered to the colour image (e.g. RealSense aligned_depth_to_color).
    """
    count = bag_topic_count(bag, image_topic)
    bag_topic_count(bag, depth_topic, DEPTH_TYPES)  # a wrong depth topic fails before decoding
    keep = set(spread_indices(count, frames))
    chosen = [(_stamp_s(msg, time_ns), rgb)
              for msg, rgb, time_ns in iter_bag_images(bag, image_topic, keep)]
    depth_stamps = [_stamp_s(msg, time_ns)
                    for msg, time_ns in iter_bag_messages(bag, depth_topic, DEPTH_TYPES)]
    order = sorted(range(len(depth_stamps)), key=depth_stamps.__getitem__)
    stamps = [depth_stamps[i] for i in order]
    wanted: dict[int, list[int]] = {}  # depth message number -> chosen image numbers
    for n, (stamp, _) in enumerate(chosen):
        j = bisect.bisect_left(stamps, stamp)
        near = min((k for k in (j - 1, j) if 0 <= k < len(stamps)),
                   key=lambda k: abs(stamps[k] - stamp), default=None)
        if near is not None and abs(stamps[near] - stamp) <= max_dt:
            wanted.setdefault(order[near], []).append(n)
    pairs: dict[int, Frame] = {}
    depths = iter_bag_messages(bag, depth_topic, DEPTH_TYPES, keep=wanted)
    for m, (msg, _) in zip(sorted(wanted), depths):  # kept records come in bag order
        depth = decode_depth_message(msg, depth_scale)
        for n in wanted[m]:
            pairs[n] = (chosen[n][1], depth)
    if len(pairs) < len(chosen):
        log.warning("%d of %d frames had no depth within %.3f s and were skipped",
                    len(chosen) - len(pairs), len(chosen), max_dt)
    if not pairs:
        raise ValueError(f"no image on {image_topic} has a depth message on {depth_topic} "
                         f"within {max_dt} s")
    return [pairs[n] for n in sorted(pairs)]


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-B-16-depthclip", help="DepthCLIP model name or JSON")
    ap.add_argument("--backbone-weights", default=None,
                    help="open_clip tag or CLIP weights file (recorded in the output config)")
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--bag", help="rosbag2 with an image and a registered depth topic")
    source.add_argument("--folder", help="folder with rgb/ and depth/ pairs")
    ap.add_argument("--image-topic", default=None)
    ap.add_argument("--depth-topic", default=None)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--depth-scale", type=float, default=1000.0,
                    help="16-bit depth units per metre (1000 = millimetres)")
    ap.add_argument("--max-dt", type=float, default=0.05, help="bag: image-depth stamp gap (s)")
    ap.add_argument("--unordered", action="store_true",
                    help="do not constrain the bins to grow from near to far words")
    ap.add_argument("--name", default=None, help="name of the new model (default: from --out)")
    ap.add_argument("--device", default="auto",
                    help="auto (default: CUDA when torch sees a GPU), cpu, cuda or cuda:N")
    ap.add_argument("--out", required=True, help="model config JSON to write")
    return ap.parse_args(argv)


@command_main("python -m training.calibrate")
def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.bag and not (args.image_topic and args.depth_topic):
        raise SystemExit("--bag needs --image-topic and --depth-topic")
    model = create_model(args.model, backbone_weights=args.backbone_weights,
                         device=resolve_device(args.device))
    if args.bag:
        frames = bag_frames(args.bag, args.image_topic, args.depth_topic, args.frames,
                            args.depth_scale, args.max_dt)
        source = f"{args.bag} {args.image_topic} + {args.depth_topic}"
    else:
        frames = folder_frames(args.folder, args.frames, args.depth_scale)
        source = str(args.folder)
    bins, report = calibrate(model, frames, ordered=not args.unordered)
    note = (f"{report['frames']} frames of {source}, RMSE {report['rmse_before_m']:.3f} -> "
            f"{report['rmse_after_m']:.3f} m.")
    config = calibrated_config(model.config, bins, args.name or Path(args.out).stem,
                               args.backbone_weights, note)
    write_config(config, args.out)
    print(json.dumps(report, indent=2))
    print(f"wrote {args.out}: use it as the model (create_model('{args.out}'), node parameter "
          f"model:={args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
