"""The post-model steps that make depth trustworthy: a metric scale anchored to what the robot
knows and filtered over time (:class:`ScaleAnchor`), then confidence and the removal of
untrusted and flying pixels from the point cloud (:class:`PointTrust`).  Pure numpy; the node,
``clip-depth bag``, ``clip-depth predict`` and ``training.evaluate`` put them in a
``DepthPipeline`` with the same :class:`TrustSettings`.
"""
from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .anchoring import (ANCHORS, MAX_CAMERA_HEIGHT_M, MIN_SPARSE_POINTS, ScaleEstimate,
                        apply_scale, fill_holes, fit_ground_plane, fit_sparse_scale)
from .confidence import trust_maps
from .errors import ConfigError
from .frame import FrameContext, FrameOutputs, drop_points, multiply_xyz
from .geometry import depth_to_points
from .image_codec import ConversionError, canonical_encoding, image_to_numpy
from .temporal import ScaleFilter


@dataclass
class TrustSettings:
    """The trust parameters (the node's names; all runtime-changeable)."""

    scale_anchor: str = "none"  # none | ground_plane | sparse_depth
    camera_height_m: float = 0.0  # 0 = unset
    scale_time_constant_s: float = 1.0  # 0 = no temporal filtering
    sparse_depth_fill: bool = False
    sparse_min_points: int = 20
    sparse_fit_shift: bool = False
    min_confidence: float = 0.0  # 0 = off
    edge_filter: bool = True

    def __post_init__(self) -> None:
        if self.scale_anchor not in ANCHORS:
            raise ConfigError(f"scale_anchor must be one of {', '.join(ANCHORS)}, not "
                              f"'{self.scale_anchor}'")
        if not 0 <= self.camera_height_m <= MAX_CAMERA_HEIGHT_M:
            raise ConfigError(f"camera_height_m must be within [0, {MAX_CAMERA_HEIGHT_M}] m "
                              f"(0 = unset), not {self.camera_height_m}")
        if not 0 <= self.min_confidence <= 1:
            raise ConfigError(f"min_confidence must be within [0, 1], not {self.min_confidence}")
        if not self.sparse_min_points >= MIN_SPARSE_POINTS:
            raise ConfigError(f"sparse_depth_min_points must be at least {MIN_SPARSE_POINTS}, "
                              f"not {self.sparse_min_points}")

    @property
    def uses_sparse_depth(self) -> bool:
        """Whether sparse depth is used at all: the sparse_depth anchor, or the fill."""
        return self.scale_anchor == "sparse_depth" or self.sparse_depth_fill


@dataclass
class AnchorStatus:
    """What the anchor did lately, for /diagnostics and the throttled warning."""

    source: str = "model"  # model | ground_plane | sparse_depth | last_good
    scale: float = 1.0
    support: int = 0
    fallbacks: Counter = field(default_factory=Counter)
    failing_for: int = 0  # consecutive frames whose fit failed
    last_reason: str = ""
    # sparse_depth_fill: frames left unfilled (no usable sparse_depth), by reason
    fill_skipped: Counter = field(default_factory=Counter)
    fill_missing_for: int = 0  # consecutive frames left unfilled
    fill_reason: str = ""


class ScaleAnchor:
    """Post-model step: anchored, temporally filtered scale applied to depth and cloud."""

    changes_depth = True

    def __init__(self, settings: TrustSettings):
        self.settings = settings
        self.filter = ScaleFilter(settings.scale_time_constant_s)
        self.status = AnchorStatus()
        self._last_shift = 0.0  # the inverse-depth shift that goes with the filtered scale
        # a runtime change (the node's parameter thread) never lands inside a frame's fit
        self._lock = threading.Lock()

    def update_settings(self, settings: TrustSettings) -> None:
        """New settings (runtime change); a new anchor source, camera height or shift fit
        restarts the filter (the old scale means nothing for the new one); the fallback
        counts go on."""
        with self._lock:
            old = self.settings
            if (settings.scale_anchor, settings.camera_height_m, settings.sparse_fit_shift) != \
                    (old.scale_anchor, old.camera_height_m, old.sparse_fit_shift):
                self.filter.reset()
                self._last_shift = 0.0
                self.status = AnchorStatus(fallbacks=self.status.fallbacks,
                                           fill_skipped=self.status.fill_skipped)
            if settings.sparse_depth_fill != old.sparse_depth_fill:
                self.status.fill_missing_for = 0  # a run of unfilled frames starts anew
            self.filter.time_constant_s = settings.scale_time_constant_s
            self.settings = settings

    @property
    def active(self) -> bool:
        """Whether this step changes depth at all (an anchor, or hole filling from
        sparse_depth, which also works on the model's own scale)."""
        return self.settings.scale_anchor != "none" or self.settings.sparse_depth_fill

    def _estimate(self, outputs: FrameOutputs, ctx: FrameContext) -> ScaleEstimate:
        s = self.settings
        if s.scale_anchor == "ground_plane":
            if outputs.intrinsics is None:
                return ScaleEstimate(reason="no_camera_info")
            return fit_ground_plane(outputs.depth_m, outputs.intrinsics, s.camera_height_m)
        if ctx.sparse_depth_m is None:
            return ScaleEstimate(reason=ctx.sparse_problem or "no_sparse_depth")
        return fit_sparse_scale(outputs.depth_m, ctx.sparse_depth_m, s.sparse_min_points,
                                s.sparse_fit_shift)

    def __call__(self, outputs: FrameOutputs, ctx: FrameContext) -> FrameOutputs:
        """Fit, filter and apply the scale (the model's own with scale_anchor none), then fill
        holes from sparse_depth when asked."""
        with self._lock:
            return self._anchor(outputs, ctx)

    def _anchor(self, outputs: FrameOutputs, ctx: FrameContext) -> FrameOutputs:
        if self.settings.scale_anchor == "none":
            self.status.source, self.status.scale = "model", 1.0
            if not self.active:
                return outputs
            return self._apply(outputs, ctx, ScaleEstimate(scale=1.0, ok=False), 1.0)
        estimate = self._estimate(outputs, ctx)
        status = self.status
        if estimate.ok:
            t = ctx.stamp_s if ctx.stamp_s is not None else 0.0
            scale = self.filter.update(estimate.scale, t, estimate.log_sigma)
            self._last_shift = estimate.shift
            status.source, status.support = self.settings.scale_anchor, estimate.support
            status.failing_for, status.last_reason = 0, ""
        else:
            status.fallbacks[estimate.reason] += 1
            status.failing_for += 1
            status.last_reason = estimate.reason
            held = self.filter.scale
            scale = held if held is not None else 1.0
            status.source = "last_good" if held is not None else "model"
            status.support = estimate.support
            # a held scale of a scale-and-shift fit means something only with its shift
            estimate = ScaleEstimate(scale=scale, ok=False,
                                     shift=self._last_shift if held is not None else 0.0)
        status.scale = scale
        return self._apply(outputs, ctx, estimate, scale)

    def _apply(self, outputs: FrameOutputs, ctx: FrameContext, estimate: ScaleEstimate,
               scale: float) -> FrameOutputs:
        depth = apply_scale(outputs.depth_m, estimate, scale)
        reshaped = bool(estimate.shift)
        if self.settings.sparse_depth_fill:
            status = self.status
            if ctx.sparse_depth_m is not None:
                depth, reshaped = fill_holes(depth, ctx.sparse_depth_m), True
                status.fill_missing_for, status.fill_reason = 0, ""
            else:  # counted here too: with another anchor it is the fill's only trace
                status.fill_reason = ctx.sparse_problem or "no_sparse_depth"
                status.fill_skipped[status.fill_reason] += 1
                status.fill_missing_for += 1
        outputs.depth_m = depth
        if outputs.cloud is not None:
            request = ctx.request
            if reshaped:  # not a plain factor: back-project the new depth
                outputs.cloud[..., :3] = depth_to_points(depth, outputs.intrinsics,
                                                         request.point_stride,
                                                         request.max_range_m)
            elif scale != 1.0 or math.isfinite(request.max_range_m):
                # the model's cloud came unbounded when a range is set (pipeline): the
                # range applies to the anchored depth, here
                factor: "np.ndarray | np.float32" = np.float32(scale)
                if math.isfinite(request.max_range_m):
                    factor = np.where(outputs.cloud[..., 2] * factor <= request.max_range_m,
                                      factor, np.float32(np.nan))
                multiply_xyz(outputs.cloud, factor)
        return outputs

    def diagnostics(self) -> dict[str, Any]:
        """Key/values for /diagnostics."""
        st = self.status
        values: dict[str, Any] = {"scale_anchor": self.settings.scale_anchor,
                                  "scale_source": st.source, "scale": st.scale,
                                  "anchor_support": st.support,
                                  "scale_filter_resets": self.filter.resets,
                                  "scale_outliers_held": self.filter.held_back_total}
        values.update({f"anchor_fallback_{k}": v for k, v in sorted(st.fallbacks.items())})
        values.update({f"sparse_fill_skipped_{k}": v for k, v in sorted(st.fill_skipped.items())})
        return values


class PointTrust:
    """Post-model step: confidence (when wanted) and the points it and the edge filter keep."""

    changes_depth = False

    def __init__(self, settings: TrustSettings, want_confidence: bool = False):
        self.settings = settings
        self.want_confidence = want_confidence
        self.removed = Counter()

    @property
    def active(self) -> bool:
        """Whether this step has anything to do."""
        s = self.settings
        return self.want_confidence or s.edge_filter or s.min_confidence > 0

    def __call__(self, outputs: FrameOutputs, ctx: FrameContext) -> FrameOutputs:
        """Confidence image and the point mask (points only; depth is never masked)."""
        s = self.settings
        has_cloud = outputs.cloud is not None
        need_conf = self.want_confidence or (s.min_confidence > 0 and has_cloud)
        confidence, flying = trust_maps(outputs.depth_m, outputs.model_confidence, need_conf,
                                        s.edge_filter and has_cloud)
        if confidence is not None and self.want_confidence:
            outputs.confidence = confidence  # published (else only used for the points)
        if not has_cloud:
            return outputs
        drop = flying if flying is not None else np.zeros(outputs.depth_m.shape, dtype=bool)
        self.removed["flying"] += int(np.count_nonzero(drop))
        if s.min_confidence > 0:
            low = confidence < np.float32(s.min_confidence)  # NaN (invalid depth) compares false
            self.removed["low_confidence"] += int(np.count_nonzero(low & ~drop))
            drop |= low
        stride = ctx.request.point_stride
        drop_points(outputs.cloud, drop[::stride, ::stride])
        return outputs


def anchored_scale_error(anchored_m: np.ndarray, true_m: np.ndarray) -> float:
    """median(anchored / true) over valid truth: 1.0 = the metres are right (benchmarks)."""
    valid = np.isfinite(true_m) & (true_m > 0) & np.isfinite(anchored_m) & (anchored_m > 0)
    return float(np.median(anchored_m[valid] / true_m[valid])) if valid.any() else math.nan


def add_trust_arguments(parser: Any, sparse_help: str, sparse_fill: bool = True,
                        points: bool = True) -> None:
    """The trust options of the command-line tools, named like the node's parameters
    (``sparse_fill``: the tool has a sparse-depth source whose pixels it can keep; ``points``:
    it writes point clouds, which --min-confidence and --edge-filter act on)."""
    group = parser.add_argument_group("metric scale and confidence (as the node's parameters)")
    group.add_argument("--scale-anchor", choices=ANCHORS, default="none",
                       help="none: the model's scale; ground_plane: the floor and "
                            "--camera-height-m; sparse_depth: " + sparse_help +
                            " (default: %(default)s)")
    group.add_argument("--camera-height-m", type=float, default=0.0,
                       help="camera height above the floor in metres, for ground_plane "
                            "(default: 0 = unset)")
    group.add_argument("--sparse-depth-shift", action="store_true",
                       help="sparse_depth: also fit a shift in inverse depth")
    group.add_argument("--sparse-depth-min-points", type=int, default=20,
                       help="sparse_depth: fewest valid measurements a scale fit needs "
                            "(default: %(default)s)")
    if sparse_fill:
        group.add_argument("--sparse-depth-fill", action="store_true",
                           help="keep the measured pixels of the sparse depth as measured and "
                                "fill the rest from the prediction (RGB-D hole filling; with "
                                "--scale-anchor none from the model's own metres)")
    if points:
        group.add_argument("--min-confidence", type=float, default=0.0,
                           help="drop points below this confidence (default: 0 = off)")
        group.add_argument("--edge-filter", action=argparse_bool(), default=True,
                           help="drop flying pixels from points (default: on)")


def argparse_bool() -> Any:
    """argparse's BooleanOptionalAction (imported here so the core imports no argparse)."""
    import argparse
    return argparse.BooleanOptionalAction


def trust_settings_from_args(args: Any) -> TrustSettings:
    """TrustSettings from :func:`add_trust_arguments` options (ConfigError when invalid);
    no temporal filter: the tools see single frames or independent samples."""
    return TrustSettings(scale_anchor=args.scale_anchor, camera_height_m=args.camera_height_m,
                         scale_time_constant_s=0.0, sparse_fit_shift=args.sparse_depth_shift,
                         sparse_min_points=args.sparse_depth_min_points,
                         sparse_depth_fill=bool(getattr(args, "sparse_depth_fill", False)),
                         min_confidence=getattr(args, "min_confidence", 0.0),
                         edge_filter=getattr(args, "edge_filter", True))


def sparse_source_problem(settings: TrustSettings, source_given: bool, option: str) -> str:
    """Why a tool's sparse-depth source option (``option``: --sparse-depth FILE,
    --sparse-depth-topic) does not go with ``settings`` (--scale-anchor sparse_depth and
    --sparse-depth-fill need it, and nothing else uses it: a user giving it expects it to
    count), or ''."""
    if settings.scale_anchor == "sparse_depth" and not source_given:
        return f"--scale-anchor sparse_depth needs {option}"
    if settings.sparse_depth_fill and not source_given:
        return f"--sparse-depth-fill needs {option}"
    if source_given and not settings.uses_sparse_depth:
        name = option.split()[0]
        return (f"{name} is only used with --scale-anchor sparse_depth or --sparse-depth-fill; "
                f"add one, or leave {name} out")
    return ""


# sparse_depth is paired with an image stamped within this (the node's
# sparse_depth_tolerance_s and `clip-depth bag --sparse-depth-tolerance-s`), up to the maximum
SPARSE_TOLERANCE_S = 0.05
MAX_SPARSE_TOLERANCE_S = 10.0
SPARSE_ASPECT_TOLERANCE = 0.02  # relative: a sparse image must cover the image's field


def sparse_covers_image(sparse_shape: tuple[int, ...], image_shape: tuple[int, ...]) -> bool:
    """Whether a sparse depth image of ``sparse_shape`` (rows, cols) has the aspect of the
    image (any resolution of the same field of view, scaled like camera_info)."""
    if not (sparse_shape[0] and sparse_shape[1] and image_shape[0] and image_shape[1]):
        return False  # an empty image covers nothing
    aspect = image_shape[1] / image_shape[0]
    return abs(sparse_shape[1] / sparse_shape[0] - aspect) <= SPARSE_ASPECT_TOLERANCE * aspect


SPARSE_DEPTH_ENCODINGS = ("32FC1", "16UC1")


def sparse_depth_to_metres(msg: Any) -> np.ndarray:
    """A sparse metric depth Image (32FC1 metres with NaN, 0 or inf = no measurement, or
    16UC1 millimetres with 0 = none) as float32 metres with NaN where nothing was measured."""
    name = canonical_encoding(msg.encoding)
    if name not in SPARSE_DEPTH_ENCODINGS:
        raise ConversionError(f"sparse_depth must be {' or '.join(SPARSE_DEPTH_ENCODINGS)} "
                              f"(metres / millimetres), not {msg.encoding!r}")
    raw = image_to_numpy(msg)
    if name == "16UC1":
        metres = raw.astype(np.float32) * np.float32(1e-3)
    else:
        metres = np.array(raw, dtype=np.float32)
    metres[~(np.isfinite(metres) & (metres > 0))] = np.nan
    return metres


def paired_sparse_depth(pairing: Any, stamp_ns: int, image_shape: tuple[int, int]
                        ) -> tuple[Optional[np.ndarray], str]:
    """(metres, '') of the sparse_depth message ``pairing`` (a CameraInfoPairing of them)
    pairs with an image stamp, or (None, why): no_sparse_depth (none received),
    sparse_depth_unpaired, bad_sparse_depth (encoding), sparse_depth_aspect -- the reasons the
    node, the bag command and diagnostics share."""
    if not len(pairing):
        return None, "no_sparse_depth"
    msg = pairing.match(stamp_ns)
    if msg is None:
        return None, "sparse_depth_unpaired"
    try:
        metres = sparse_depth_to_metres(msg)
    except ConversionError:
        return None, "bad_sparse_depth"
    if not sparse_covers_image(metres.shape, image_shape):
        return None, "sparse_depth_aspect"
    return metres, ""
