"""camera_info pairing (the node's and the bag command's one policy) and stamp helpers,
without ROS: plain objects stand in for the messages."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from clip_depth_ros.camera_sync import CameraInfoPairing
from clip_depth_ros.stamps import stamp_from_ns, stamp_ns, stamp_seconds

S = 1_000_000_000


def info(name: str) -> SimpleNamespace:
    return SimpleNamespace(name=name)


def test_nearest_stamp_within_tolerance_wins_over_the_latest():
    pairing = CameraInfoPairing(tolerance_s=0.01)
    a, b = info("a"), info("b")
    pairing.add(a, 10 * S, received_ns=1_000)
    pairing.add(b, 20 * S, received_ns=2_000)
    assert pairing.match(10 * S + 5_000_000, received_ns=5_000) is a  # 5 ms away
    assert pairing.match(20 * S - 10_000_000) is b  # exactly at the tolerance
    assert pairing.match(10 * S - 5_000_000, received_ns=500) is a  # before any receipt


def test_latest_received_at_or_before_the_image_when_no_stamp_is_near():
    pairing = CameraInfoPairing(tolerance_s=0.01)
    a, b = info("a"), info("b")
    pairing.add(b, 20 * S, received_ns=2_000)  # added out of receipt order (a bag's index)
    pairing.add(a, 10 * S, received_ns=1_000)
    assert pairing.match(15 * S, received_ns=1_500) is a
    assert pairing.match(15 * S, received_ns=2_000) is b  # received at the same time counts
    assert pairing.match(15 * S, received_ns=9_000) is b
    assert pairing.match(15 * S, received_ns=500) is None  # none received yet


def test_without_a_receive_time_the_latest_seen_is_used():
    pairing = CameraInfoPairing(tolerance_s=0.001)
    a, b = info("a"), info("b")
    pairing.add(a, 30 * S, received_ns=1)
    pairing.add(b, 10 * S, received_ns=2)  # older stamp, seen last
    assert pairing.match(20 * S) is b


def test_use_latest_off_pairs_by_stamp_only():
    pairing = CameraInfoPairing(tolerance_s=0.01, use_latest=False)
    a = info("a")
    pairing.add(a, 10 * S, received_ns=1)
    assert pairing.match(10 * S) is a
    assert pairing.match(11 * S) is None
    assert pairing.match(11 * S, received_ns=5) is None


def test_policy_can_change_at_run_time():
    pairing = CameraInfoPairing(tolerance_s=0.001, use_latest=False)
    a = info("a")
    pairing.add(a, 10 * S, received_ns=1)
    assert pairing.match(10 * S + 50_000_000) is None
    pairing.tolerance_s = 0.1
    assert pairing.match(10 * S + 50_000_000) is a
    pairing.tolerance_s, pairing.use_latest = 0.001, True
    assert pairing.match(12 * S) is a


def test_empty_and_bounded():
    pairing = CameraInfoPairing(tolerance_s=1.0, maxlen=2)
    assert pairing.match(0) is None and len(pairing) == 0
    msgs = [info(str(i)) for i in range(3)]
    for i, msg in enumerate(msgs):
        pairing.add(msg, i * 10 * S, received_ns=i)
    assert len(pairing) == 2
    assert pairing.match(0) is msgs[2]  # the first one was forgotten: the latest seen
    pairing.use_latest = False
    assert pairing.match(0) is None
    assert pairing.match(10 * S) is msgs[1] and pairing.match(20 * S) is msgs[2]


def test_ties_go_to_the_first_added():
    pairing = CameraInfoPairing(tolerance_s=1.0)
    first, second, above = info("first"), info("second"), info("above")
    pairing.add(first, 10 * S, received_ns=1)
    pairing.add(second, 10 * S, received_ns=2)  # same stamp, republished
    pairing.add(above, 12 * S, received_ns=3)
    assert pairing.match(11 * S) is first  # 1 s either side: the first added of the nearest
    assert pairing.match(10 * S) is first


@pytest.mark.parametrize("sec, nanosec", [(0, 0), (1_700_000_000, 999_999_999), (5, 1)])
def test_stamp_helpers_round_trip(sec, nanosec):
    stamp = SimpleNamespace(sec=sec, nanosec=nanosec)
    ns = stamp_ns(stamp)
    assert ns == sec * S + nanosec
    assert stamp_seconds(stamp) == pytest.approx(sec + nanosec * 1e-9, abs=1e-6)
    again = stamp_from_ns(ns, SimpleNamespace)
    assert (again.sec, again.nanosec) == (sec, nanosec)
