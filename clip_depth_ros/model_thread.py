"""One thread that owns the model: it loads the backend, then runs every frame (no ROS here).

Why one thread for both: torch runs its CPU operators on an OpenMP team that belongs to the
thread that starts them.  When the model is loaded and warmed up on one thread (a ROS
executor's, in on_configure) and frames run on another (the worker), each thread gets its own
team; libgomp then manages more threads than there are cores and stops spin-waiting between
operators (its "throttled" spin count), so every operator pays a thread wake-up.  Measured on
this project's 2-core machine with the bundled model at 640x480: 23 ms per frame when one
thread does everything, 28-36 ms when loading and frames are split over two threads
(BENCHMARKS.md).  The thread also keeps only the latest frame (:class:`LatestFrameSlot`).

Each ``start`` gets its own queue and stop flag: a thread that outlives a ``stop`` (a frame
still running when the wait ran out) can never serve the next start's frames.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Callable, Generic, Optional, TypeVar

from .pipeline import LatestFrameSlot

# libgomp's spin before a waiting OpenMP thread sleeps, for a node process (see
# quiet_openmp_between_frames), well under a millisecond
NODE_GOMP_SPINCOUNT = "10000"

T = TypeVar("T")
B = TypeVar("B")


def quiet_openmp_between_frames() -> bool:
    """Make torch's OpenMP threads sleep soon after the model instead of spinning on.

    libgomp's threads spin 300,000 times (milliseconds) before sleeping after each parallel
    region; that keeps them warm between the model's operators, and after the model's last
    operator it keeps a core busy while this process builds and publishes the outputs and DDS
    delivers them (on 2 cores the subscriber's process and the DDS threads wait for a core).
    10,000 still bridges the gaps between operators (300 does not: 16% slower; BENCHMARKS.md,
    eighth session).  Only a process that has not loaded torch yet and whose environment sets
    neither GOMP_SPINCOUNT nor OMP_WAIT_POLICY is changed (the user's choice wins).  True
    when it set the variable."""
    if "torch" in sys.modules or "GOMP_SPINCOUNT" in os.environ \
            or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["GOMP_SPINCOUNT"] = NODE_GOMP_SPINCOUNT
    return True


class ModelThread(Generic[T]):
    """Load a model and process queued items on one daemon thread.

    ``handle(item)`` runs for each item taken from the one-slot queue; an exception from it is
    passed to ``on_error(exc)`` and the thread goes on (a bug in one frame must not stop the
    stream)."""

    def __init__(self, handle: Callable[[T], None], on_error: Callable[[Exception], None],
                 name: str = "depth_worker", poll_s: float = 0.2):
        self._handle = handle
        self._on_error = on_error
        self._name = name
        self._poll_s = poll_s
        self.slot: LatestFrameSlot[T] = LatestFrameSlot()
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()

    @property
    def alive(self) -> bool:
        """True while a thread of this object runs (also one that has not stopped yet)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self, load: Callable[[], B], timeout: Optional[float] = None,
              discard: Optional[Callable[[B], None]] = None) -> B:
        """Run ``load()`` on a new thread and return its result, then serve the queue.

        An exception from ``load`` ends the thread and is raised here, in the caller.  After
        ``timeout`` s without a result: TimeoutError, and whatever ``load`` returns later is
        handed to ``discard`` (e.g. to free its memory), never served."""
        if self.alive:
            raise RuntimeError("the model thread of the previous configuration is still "
                               "running (a frame did not finish); try again when it has")
        loaded, lock, box = threading.Event(), threading.Lock(), {}
        slot, stop = LatestFrameSlot(), threading.Event()

        def run() -> None:
            try:
                value = load()
            except BaseException as exc:  # handed to the caller, who decides
                box["error"] = exc
                loaded.set()
                return
            with lock:
                late = stop.is_set()
                if not late:
                    box["value"] = value
            if late:  # the caller gave up waiting
                if discard is not None:
                    discard(value)
                return
            loaded.set()
            self._serve(slot, stop)

        self.slot, self._stop = slot, stop
        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()
        if not loaded.wait(timeout):
            with lock:
                stop.set()
                value = box.pop("value", None)
            slot.close()
            if value is not None and discard is not None:  # loaded just as the wait ended
                discard(value)
            raise TimeoutError(f"loading the model took longer than {timeout} s")
        if "error" in box:
            self.stop()
            raise box["error"]
        return box["value"]

    def put(self, item: T) -> bool:
        """Queue an item (replacing a waiting one); True when one was replaced."""
        return self.slot.put(item)

    def stop(self, timeout: Optional[float] = 10.0) -> bool:
        """Stop taking items; wait up to ``timeout`` s for the item in progress.  False when
        the thread is still running then (it ends after that item; ``start`` refuses until
        it has)."""
        thread = self._thread
        self._stop.set()
        self.slot.close()
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout=timeout)
        if thread.is_alive():
            return False
        if self._thread is thread:
            self._thread = None
        return True

    def _serve(self, slot: LatestFrameSlot[T], stop: threading.Event) -> None:
        while not stop.is_set():
            item = slot.take(timeout=self._poll_s)
            if item is None:
                continue
            try:
                self._handle(item)
            except Exception as exc:  # counted by the owner; the stream goes on
                self._on_error(exc)
