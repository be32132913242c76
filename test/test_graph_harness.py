"""The live-graph benchmark's recorder: the closed loop blocks on arrivals, it never polls
(a polling harness took CPU from the node it measured on these 2 cores)."""
from __future__ import annotations

import struct
import threading
import time

from benchmarks.graph_harness import Recorder


class _FakeNode:
    def __init__(self):
        self.callbacks = {}

    def create_subscription(self, msg_type, topic, callback, qos, raw=False):
        self.callbacks[topic] = callback


def _cdr(sec: int, nanosec: int) -> bytes:
    return b"\x00\x01\x00\x00" + struct.pack("<iI", sec, nanosec) + b"payload"


def test_wait_for_returns_when_every_topic_of_the_frame_arrived():
    node = _FakeNode()
    recorder = Recorder(node, points=True)
    key = 3 * 1_000_000_000 + 7

    def publish_later():
        time.sleep(0.05)
        node.callbacks["depth"](_cdr(3, 7))
        time.sleep(0.05)
        node.callbacks["points"](_cdr(3, 8))  # another frame's points: not enough
        time.sleep(0.05)
        node.callbacks["points"](_cdr(3, 7))

    thread = threading.Thread(target=publish_later)
    t0 = time.monotonic()
    thread.start()
    assert recorder.wait_for(key, ("depth", "points"), time.monotonic() + 5.0)
    waited = time.monotonic() - t0
    thread.join()
    assert 0.14 <= waited < 2.0
    assert key in recorder.snapshot()[0]["points"]


def test_wait_for_gives_up_at_the_deadline():
    recorder = Recorder(_FakeNode(), points=False)
    t0 = time.monotonic()
    assert not recorder.wait_for(42, ("depth",), time.monotonic() + 0.2)
    assert 0.18 <= time.monotonic() - t0 < 2.0
