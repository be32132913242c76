"""The depth node's side of the trust steps: parameters -> TrustSettings, the `sparse_depth`
input (decoded, checked and paired by stamp), and what /diagnostics and the log say about the
anchor.  The algorithms are the runtime core's (clip_depth_ros/trust.py); this is the adapter.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from ..camera_sync import CameraInfoPairing
from ..stamps import stamp_ns
from ..trust import PointTrust, ScaleAnchor, TrustSettings, paired_sparse_depth

TRUST_PARAMS = ("scale_anchor", "camera_height_m", "scale_time_constant_s",
                "sparse_depth_fill", "sparse_depth_min_points", "sparse_depth_shift",
                "min_confidence", "edge_filter")
WARN_AFTER_FRAMES = 10  # consecutive failed anchor fits before the (throttled) warning


def trust_settings(value: Callable[[str], Any]) -> TrustSettings:
    """TrustSettings from the node's parameters (``value(name)`` reads one)."""
    return TrustSettings(scale_anchor=value("scale_anchor"),
                         camera_height_m=float(value("camera_height_m")),
                         scale_time_constant_s=float(value("scale_time_constant_s")),
                         sparse_depth_fill=bool(value("sparse_depth_fill")),
                         sparse_min_points=int(value("sparse_depth_min_points")),
                         sparse_fit_shift=bool(value("sparse_depth_shift")),
                         min_confidence=float(value("min_confidence")),
                         edge_filter=bool(value("edge_filter")))


class TrustIO:
    """The trust steps of one node, its sparse_depth queue and their reports."""

    def __init__(self, settings: TrustSettings, tolerance_s: float):
        self.anchor = ScaleAnchor(settings)
        self.points = PointTrust(settings)
        self.sparse = CameraInfoPairing(tolerance_s, use_latest=False, maxlen=16)
        self.rejected: dict[str, int] = {}
        self.sparse_received = 0

    @property
    def steps(self) -> list:
        """The post-model steps, in order, for the pipeline."""
        return [self.anchor, self.points]

    def update(self, settings: TrustSettings, tolerance_s: float) -> None:
        """New parameter values (runtime change)."""
        self.anchor.update_settings(settings)
        self.points.settings = settings
        self.sparse.tolerance_s = tolerance_s

    def on_sparse_depth(self, msg: Any, received_ns: int) -> None:
        """Queue a sparse_depth message (decoded when a frame uses it)."""
        self.sparse_received += 1
        self.sparse.add(msg, stamp_ns(msg.header.stamp), received_ns)

    def sparse_for(self, stamp: Any, image_shape: tuple[int, int]
                   ) -> tuple[Optional[np.ndarray], str]:
        """(metres or None, why not) of the sparse_depth paired with an image's stamp; the
        reason is '' when found, else no_sparse_depth / sparse_depth_unpaired /
        bad_sparse_depth / sparse_depth_aspect."""
        if not self.anchor.settings.uses_sparse_depth:
            return None, ""
        return paired_sparse_depth(self.sparse, stamp_ns(stamp), image_shape)

    def count_rejection(self, reason: str) -> None:
        """Count a sparse_depth that could not be used, by reason."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def warning(self, sparse_topic: str) -> Optional[str]:
        """The warning to log (throttled by the caller) when the anchor keeps failing, or
        sparse_depth_fill keeps finding nothing to fill from."""
        status = self.anchor.status
        settings = self.anchor.settings
        if status.failing_for >= WARN_AFTER_FRAMES:
            return (f"scale anchor {settings.scale_anchor} failing for {status.failing_for} "
                    f"frames ({_why(status.last_reason, sparse_topic)}); using the "
                    f"{status.source} scale {status.scale:.3f}")
        if settings.sparse_depth_fill and status.fill_missing_for >= WARN_AFTER_FRAMES:
            return (f"sparse_depth_fill: {status.fill_missing_for} frames left unfilled "
                    f"({_why(status.fill_reason, sparse_topic)})")
        return None

    def diagnostics(self) -> dict[str, Any]:
        """Key/values for /diagnostics: source, scale, support, fallbacks, rejections."""
        values = self.anchor.diagnostics()
        # 4 decimals (floats show 2 on /diagnostics): steadiness is a matter of 0.1-1 %
        values["scale"] = f"{values['scale']:.4f}"
        values["sparse_depth_received"] = self.sparse_received
        values.update({f"sparse_depth_rejected_{k}": v for k, v in sorted(self.rejected.items())})
        values.update({f"points_removed_{k}": v for k, v in sorted(self.points.removed.items())})
        return values


def _why(reason: str, sparse_topic: str) -> str:
    """A fallback reason in words, for the warning."""
    return {"no_floor": "no floor found in the predicted cloud",
            "floor_hidden": "only surfaces above the floor (a box or table top) fit a plane "
                            "below the camera",
            "implausible_scale": "the only plane found would change the scale more than 3x "
                                 "(no floor in view)",
            "camera_height_unset": "camera_height_m is not set (0)",
            "too_few_sparse_points": "too few valid sparse_depth points",
            "no_sparse_depth": f"no sparse_depth received on {sparse_topic}",
            "no_camera_info": "no camera_info (the floor fit needs intrinsics)",
            "sparse_depth_unpaired": f"no sparse_depth on {sparse_topic} stamped near the "
                                     "images (their stamps; sparse_depth_tolerance_s)",
            "bad_sparse_depth": f"sparse_depth on {sparse_topic} is not 32FC1 (m) or 16UC1 (mm)",
            "sparse_depth_aspect": f"sparse_depth on {sparse_topic} does not cover the image's "
                                   "field of view (another aspect ratio)",
            }.get(reason, reason)
