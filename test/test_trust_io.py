"""The node's side of the trust steps without a ROS graph: runtime changes against frames in
flight, and the throttled warning's words (ros/trust_io.py over the core's ScaleAnchor)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from clip_depth_ros.trust import ScaleAnchor, TrustSettings
from test_trust import _outputs, _sparse, _view


def test_a_runtime_change_waits_for_the_frame_being_anchored(monkeypatch):
    # the node changes settings on its parameter thread while frames run on another: a
    # change that arrives mid-fit (here: inside the filter update) lands after the frame
    import threading
    rgb, depth, _ = _view(1, 1)
    anchor = ScaleAnchor(TrustSettings(scale_anchor="sparse_depth"))
    real, seen = anchor.filter.update, {}

    def update(*args):
        change = TrustSettings(scale_anchor="ground_plane", camera_height_m=1.0)
        seen["thread"] = threading.Thread(target=anchor.update_settings, args=(change,))
        seen["thread"].start()
        seen["thread"].join(0.3)
        seen["landed_inside"] = not seen["thread"].is_alive()
        return real(*args)

    monkeypatch.setattr(anchor.filter, "update", update)
    out, ctx = _outputs(depth * 0.5, rgb)
    anchor(out, dataclasses.replace(ctx, sparse_depth_m=_sparse(depth, 0.01, 0.0)))
    seen["thread"].join(5)
    assert seen["landed_inside"] is False and not seen["thread"].is_alive()
    assert anchor.settings.scale_anchor == "ground_plane" and anchor.status.source == "model"
    assert out.depth_m[np.isfinite(depth)].mean() == pytest.approx(
        depth[np.isfinite(depth)].mean(), rel=0.02)  # the frame finished with its own anchor


def test_the_nodes_warning_names_why_the_anchor_keeps_failing():
    # the node's throttled warning: after 10 failed fits, one sentence naming the reason and
    # the resolved sparse_depth topic, for every reason the sparse pairing gives
    from clip_depth_ros.ros.trust_io import WARN_AFTER_FRAMES, TrustIO
    rgb, depth, _ = _view(1, 1)
    for reason, words in (("no_sparse_depth", "no sparse_depth received on /robot/lidar"),
                          ("sparse_depth_unpaired", "stamped near the images"),
                          ("bad_sparse_depth", "not 32FC1 (m) or 16UC1 (mm)"),
                          ("sparse_depth_aspect", "another aspect ratio")):
        io = TrustIO(TrustSettings(scale_anchor="sparse_depth"), 0.05)
        for i in range(WARN_AFTER_FRAMES):
            assert io.warning("/robot/lidar") is None
            out, ctx = _outputs(depth, rgb)
            io.anchor(out, dataclasses.replace(ctx, sparse_problem=reason))
        text = io.warning("/robot/lidar")
        assert words in text and "/robot/lidar" in text and reason not in text
        assert io.diagnostics()[f"anchor_fallback_{reason}"] == WARN_AFTER_FRAMES


@pytest.mark.parametrize("scale_anchor", ["none", "ground_plane"])
def test_a_fill_without_sparse_depth_is_counted_and_warned(scale_anchor):
    # sparse_depth_fill with another anchor (or none): a missing sparse_depth is not an anchor
    # fallback, so only the fill's own counter and warning can say the holes stay unfilled
    from clip_depth_ros.ros.trust_io import WARN_AFTER_FRAMES, TrustIO
    rgb, depth, height = _view(1, 1)
    io = TrustIO(TrustSettings(scale_anchor=scale_anchor, camera_height_m=height,
                               sparse_depth_fill=True), 0.05)
    for i in range(WARN_AFTER_FRAMES):
        assert io.warning("/rgbd/depth") is None
        out, ctx = _outputs(depth, rgb)
        io.anchor(out, dataclasses.replace(ctx, sparse_problem="sparse_depth_unpaired"))
    text = io.warning("/rgbd/depth")
    assert text.startswith("sparse_depth_fill: 10 frames left unfilled")
    assert "stamped near the images" in text and "/rgbd/depth" in text
    values = io.diagnostics()
    assert values["sparse_fill_skipped_sparse_depth_unpaired"] == WARN_AFTER_FRAMES
    assert not any(k.startswith("anchor_fallback_sparse") for k in values)
    # one frame filled: the run of unfilled frames ends, the count stays
    out, ctx = _outputs(depth, rgb)
    io.anchor(out, dataclasses.replace(ctx, sparse_depth_m=_sparse(depth, 0.5, 0.0)))
    assert io.warning("/rgbd/depth") is None
    assert io.diagnostics()["sparse_fill_skipped_sparse_depth_unpaired"] == WARN_AFTER_FRAMES
    # switched off and on again (a runtime change): the run of unfilled frames starts anew
    for i in range(WARN_AFTER_FRAMES - 1):
        out, ctx = _outputs(depth, rgb)
        io.anchor(out, ctx)
    fill_off = TrustSettings(scale_anchor=scale_anchor, camera_height_m=height)
    io.update(fill_off, 0.05)
    io.update(TrustSettings(scale_anchor=scale_anchor, camera_height_m=height,
                            sparse_depth_fill=True), 0.05)
    out, ctx = _outputs(depth, rgb)
    io.anchor(out, ctx)
    assert io.warning("/rgbd/depth") is None and io.anchor.status.fill_missing_for == 1
