"""Which camera_info describes an image: the one pairing policy of the node and the bag command.

The camera_info of nearest header stamp within a tolerance; failing that, when allowed, the
latest one received at or before the image (``received_ns`` given: a bag, where every record
has a receive time) or the latest one seen (``received_ns`` None: the live node); else none.
Pure Python: any message object goes in, stamps are integer nanoseconds.

Which topic the camera_info comes from is one rule too (:func:`camera_info_topic`, image_transport's
camera subscriber's): the ``camera_info`` next to the image, ``/camera/image_raw`` ->
``/camera/camera_info``; the bag command's ``auto`` and the node (when ``image`` is remapped and
``camera_info`` is not) follow it.
"""
from __future__ import annotations

import bisect
import threading
from collections import deque
from typing import Any, Optional


def image_namespace(image_topic: str) -> str:
    """The camera namespace of an image topic: /camera/image_raw[/compressed] -> /camera."""
    topic = image_topic.rstrip("/")
    if topic.endswith("/compressed"):
        topic = topic[: -len("/compressed")]
    return topic.rsplit("/", 1)[0] if "/" in topic else ""


def camera_info_topic(image_topic: str) -> str:
    """The camera_info topic next to an image topic: /camera/color/image_raw ->
    /camera/color/camera_info (image_transport's rule)."""
    return f"{image_namespace(image_topic)}/camera_info"


def _stamp(entry: tuple[int, int, int, Any]) -> int:
    return entry[0]


class CameraInfoPairing:
    """camera_info messages kept by stamp and by receipt, matched to images on request.

    ``tolerance_s`` and ``use_latest`` may be changed at any time (the node's parameters are
    runtime-changeable); ``maxlen`` bounds the memory (the oldest added is forgotten first).
    Safe to ``add`` from one thread while another calls ``match``.
    """

    def __init__(self, tolerance_s: float, use_latest: bool = True,
                 maxlen: Optional[int] = None):
        self.tolerance_s = float(tolerance_s)
        self.use_latest = bool(use_latest)
        self._entries: deque[tuple[int, int, int, Any]] = deque(maxlen=maxlen)
        self._seq = 0  # insertion order: ties go to the first added
        self._lock = threading.Lock()
        self._by_stamp: Optional[list[tuple[int, int, int, Any]]] = None
        self._by_receipt: list[tuple[int, int, int, Any]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, msg: Any, stamp_ns: int, received_ns: int) -> None:
        """Record one camera_info with its header stamp and receive time (ns)."""
        with self._lock:
            self._entries.append((int(stamp_ns), int(received_ns), self._seq, msg))
            self._seq += 1
            self._by_stamp = None  # sorted views are rebuilt on the next match

    def match(self, stamp_ns: int, received_ns: Optional[int] = None) -> Optional[Any]:
        """The camera_info for an image of this stamp (and receive time), or None."""
        with self._lock:
            if not self._entries:
                return None
            if self._by_stamp is None:
                self._by_stamp = sorted(self._entries, key=lambda e: (e[0], e[2]))
                self._by_receipt = sorted(self._entries, key=lambda e: (e[1], e[2]))
            by_stamp, by_receipt = self._by_stamp, self._by_receipt
        t = int(stamp_ns)
        i = bisect.bisect_left(by_stamp, t, key=_stamp)
        near = by_stamp[i:i + 1]  # the first at or after t
        if i > 0:  # the first of those just before t
            near.append(by_stamp[bisect.bisect_left(by_stamp, by_stamp[i - 1][0], key=_stamp)])
        best = min(near, key=lambda e: (abs(e[0] - t), e[2]))
        if abs(best[0] - t) <= int(round(self.tolerance_s * 1e9)):
            return best[3]
        if not self.use_latest:
            return None
        if received_ns is None:
            return by_receipt[-1][3]
        j = bisect.bisect_right(by_receipt, int(received_ns), key=lambda e: e[1])
        return by_receipt[j - 1][3] if j else None
