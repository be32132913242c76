"""A short soak of the depth node process at twice the rate it can process (depth reliable).

Uses the benchmark's own player/recorder (benchmarks/graph_harness.py) so the test and
``python -m benchmarks.soak`` measure the same way.  Checks behaviour, never speed: the node
survives, keeps only the latest frame (and counts what it drops), publishes the depth of every
frame it processes, and its resident memory stays flat after the warm-up.
"""
from __future__ import annotations

import pytest

import rclpy

from benchmarks.graph_harness import LiveGraph  # noqa: E402
from benchmarks.soak import run_soak  # noqa: E402

FRAMES = 400
pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    """One soak run (the node process is gone afterwards; what it reported stays)."""
    log = tmp_path_factory.mktemp("soak") / "node.log"
    with LiveGraph(640, 480, log_path=log) as graph:
        result = run_soak(graph, FRAMES, factor=2.0, window=100, warmup_s=3.0)
    result["log"] = log.read_text()[-3000:]
    return result


def test_node_survives_the_soak(soak):
    assert soak["node_alive"], f"the node process died; log:\n{soak['log']}"
    assert soak["run"]["published"] == FRAMES


def test_latest_frame_only_and_drops_counted(soak):
    node = soak["run"]["node"]
    assert node["frames_received"] > 0, "the node received no frame"
    assert node["frames_processed"] < node["frames_received"]
    assert node["frames_dropped"] > 0
    # every frame the node took in is accounted for, give or take the one in flight
    accounted = node["frames_processed"] + node["frames_dropped"] + node["rejected"]
    assert abs(node["frames_received"] - accounted) <= 1, node


def test_every_processed_frame_is_published(soak):
    run = soak["run"]
    processed = run["node"]["frames_processed"]
    assert processed > 0
    assert abs(run["depth_messages"] - processed) <= 2, (
        f"{run['depth_messages']} depth messages received for {processed} frames processed")
    # and each depth carries the stamp of a frame we sent
    assert run["depth_received"] >= run["depth_messages"] - 2


def test_memory_stays_flat(soak):
    rss = soak["rss_kib"]
    assert rss["start"] > 0 and rss["end"] > 0
    assert rss["growth_pct"] < 5.0, rss
