"""The deployment self-check: does an exported graph or engine give the torch model's depth?

Users of TensorRT depth nodes report engines that silently give wrong depth after a TensorRT
or JetPack upgrade.  At configure time the node runs the chosen backend and a torch reference
of the same weights on one fixed probe frame (a rendered room through a 640x480, 525 px camera)
and refuses to activate when the median relative depth difference exceeds a tolerance.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ..errors import DeploymentCheckError
from ..geometry import Intrinsics
from .base import DepthBackend

log = logging.getLogger("clip_depth_ros")

PROBE_SIZE = (640, 480)
PROBE_FOCAL_PX = 525.0
DEFAULT_TOLERANCE = 0.02  # median |a - b| / b; fp16 engines stay well inside, broken ones not


@dataclass(frozen=True)
class ParityReport:
    """How far the backend's probe depth is from the torch reference's."""

    median_rel: float
    p95_rel: float
    tolerance: float

    def __str__(self) -> str:
        return (f"median relative depth difference {self.median_rel:.2%} (p95 "
                f"{self.p95_rel:.2%}, tolerance {self.tolerance:.2%})")


def probe_frame(seed: int = 7) -> tuple[np.ndarray, Intrinsics]:
    """A deterministic rendered room and its camera (the same on every machine)."""
    from ..synthetic import demo_trajectory, random_indoor_scene, render
    width, height = PROBE_SIZE
    camera = Intrinsics(PROBE_FOCAL_PX, PROBE_FOCAL_PX, (width - 1) / 2, (height - 1) / 2,
                        width, height)
    scene = random_indoor_scene(seed)
    rgb, _ = render(scene, demo_trajectory(scene, 2)[1], camera)
    return rgb, camera


def depth_parity(backend: DepthBackend, reference: DepthBackend,
                 tolerance: float = DEFAULT_TOLERANCE) -> ParityReport:
    """Compare both backends' depth on the probe frame; raise DeploymentCheckError beyond
    ``tolerance`` (or on non-finite depth)."""
    rgb, camera = probe_frame()
    got = backend.infer_frame(rgb, camera).depth_m.astype(np.float64)
    want = reference.infer_frame(rgb, camera).depth_m.astype(np.float64)
    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-6)
    report = ParityReport(float(np.median(rel)), float(np.percentile(rel, 95)), tolerance)
    if not np.isfinite(got).all() or not report.median_rel <= tolerance:
        raise DeploymentCheckError(
            f"backend {backend.name} gives depth that differs from the torch reference: "
            f"{report}; the graph or engine does not match the weights (stale cache, other "
            f"TensorRT version?): delete its cache entry, or set deployment_check false to "
            f"run it anyway")
    return report


def _model_name(backend: DepthBackend) -> Optional[str]:
    return getattr(getattr(backend, "config", None), "name", None)


def deployment_check(backend: DepthBackend, make_reference: Callable[[], DepthBackend],
                     tolerance: float = DEFAULT_TOLERANCE) -> Optional[ParityReport]:
    """:func:`depth_parity` against a reference built by ``make_reference`` (freed after);
    None when the two are different models (a graph file of another model than the
    weights: nothing to compare)."""
    reference = make_reference()
    try:
        names = (_model_name(backend), _model_name(reference))
        if None not in names and names[0] != names[1]:
            return None
        report = depth_parity(backend, reference, tolerance)
    finally:
        reference.close()
    log.info("deployment check passed: %s", report)
    return report


def check_against_torch(backend: DepthBackend, options: dict[str, Any],
                        tolerance: float = DEFAULT_TOLERANCE) -> str:
    """The node's check of an exported backend (``options``: its create_backend keyword
    arguments) against the torch model of the same weights, on the CPU in fp32: the line to
    log; raises :class:`DeploymentCheckError` beyond ``tolerance``."""
    if not options.get("weights"):
        return "deployment check skipped: no weights to build a torch reference from"
    from . import create_backend  # the registry imports no backend module at import time
    reference = dict(model=options.get("model"), weights=options["weights"],
                     backbone_weights=options.get("backbone_weights"), device="cpu",
                     precision="fp32", fast_path="never")
    report = deployment_check(backend, lambda: create_backend("torch", **reference), tolerance)
    if report is None:
        return (f"deployment check skipped: the graph is model {_model_name(backend)}, the "
                f"weights {options['weights']} are another model; nothing to compare it with "
                "(set weights to the graph's own to check it)")
    return f"deployment check against torch passed: {report}"
