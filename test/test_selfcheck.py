"""The deployment self-check: an exported backend whose depth differs from torch is refused."""
from __future__ import annotations

import numpy as np
import pytest

from clip_depth_ros.backends.selfcheck import (check_against_torch, deployment_check,
                                               depth_parity, probe_frame)
from clip_depth_ros.errors import DeploymentCheckError
from clip_depth_ros.frame import FrameOutputs


class _Scaled:
    """A stand-in backend whose depth is a fixed map times a factor (or with NaN)."""

    name = "fake"

    def __init__(self, factor: float = 1.0, nan: bool = False):
        self.factor, self.nan, self.closed = factor, nan, False

    def infer_frame(self, image_rgb, intrinsics=None, request=None) -> FrameOutputs:
        height, width = image_rgb.shape[:2]
        depth = np.linspace(1.0, 5.0, height * width, dtype=np.float32).reshape(height, width)
        depth = depth * np.float32(self.factor)
        if self.nan:
            depth[0, 0] = np.nan
        return FrameOutputs(depth_m=depth)

    def close(self) -> None:
        self.closed = True


def test_the_probe_frame_is_fixed():
    a, b = probe_frame(), probe_frame()
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (480, 640, 3) and a[1].fx == 525.0


def test_matching_depth_passes_and_the_reference_is_freed():
    reference = _Scaled(1.0)
    report = deployment_check(_Scaled(1.005), lambda: reference, tolerance=0.02)
    assert report.median_rel == pytest.approx(0.005, rel=1e-3) and reference.closed


def test_a_graph_of_another_model_is_not_compared_and_says_so():
    """onnx_path's graph is another model than `weights` (the default demo weights, say):
    comparing them would refuse a good graph, so the check is skipped with a clear line."""
    class _Named(_Scaled):
        def __init__(self, name, factor=1.0):
            super().__init__(factor)
            self.config = type("Cfg", (), {"name": name})()

    reference = _Named("demo-mirror")
    assert deployment_check(_Named("tiny-depthclip", 3.0), lambda: reference) is None
    assert reference.closed
    # the same model is compared (and refused when off)
    with pytest.raises(DeploymentCheckError):
        deployment_check(_Named("demo-mirror", 1.5), lambda: _Named("demo-mirror"))
    assert check_against_torch(_Scaled(), {"weights": None}).startswith(
        "deployment check skipped: no weights")


@pytest.mark.parametrize("backend", [_Scaled(1.10), _Scaled(1.0, nan=True)],
                         ids=["10% off", "non-finite"])
def test_wrong_depth_is_refused_with_one_clear_error(backend):
    with pytest.raises(DeploymentCheckError, match="differs from the torch reference"):
        depth_parity(backend, _Scaled(1.0), tolerance=0.02)
