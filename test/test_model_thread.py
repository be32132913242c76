"""ModelThread: the model is loaded on the thread that runs every frame (no ROS)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from clip_depth_ros.model_thread import (NODE_GOMP_SPINCOUNT, ModelThread,
                                         quiet_openmp_between_frames)
from waiting import wait_until


def _wait(predicate, timeout: float = 5.0) -> bool:
    return wait_until(predicate, timeout, poll_s=0.01)


def test_load_and_frames_run_on_one_thread_that_is_not_the_callers():
    threads = {"frames": []}

    def load():
        threads["load"] = threading.get_ident()
        return "backend"

    worker = ModelThread(lambda item: threads["frames"].append((item, threading.get_ident())),
                         lambda exc: None)
    assert worker.start(load) == "backend"
    for i in range(3):
        worker.put(i)
        assert _wait(lambda: len(threads["frames"]) > i)
    worker.stop()
    assert threads["load"] != threading.get_ident()
    assert {ident for _, ident in threads["frames"]} == {threads["load"]}
    assert not worker.alive


def test_a_failed_load_raises_in_the_caller_and_leaves_no_thread():
    worker = ModelThread(lambda item: None, lambda exc: None)
    with pytest.raises(FileNotFoundError, match="no such weights"):
        worker.start(lambda: (_ for _ in ()).throw(FileNotFoundError("no such weights")))
    assert not worker.alive
    assert worker.start(lambda: 7) == 7  # and it can be started again
    worker.stop()


def test_an_error_in_one_item_is_reported_and_the_next_item_still_runs():
    done, errors = [], []

    def handle(item):
        if item == "bad":
            raise ValueError("broken frame")
        done.append(item)

    worker = ModelThread(handle, errors.append)
    worker.start(lambda: None)
    worker.put("bad")
    assert _wait(lambda: len(errors) == 1)
    worker.put("good")
    assert _wait(lambda: done == ["good"])
    worker.stop()
    assert isinstance(errors[0], ValueError)


def test_only_the_latest_waiting_item_is_kept():
    release, seen = threading.Event(), []

    def handle(item):
        seen.append(item)
        release.wait(5.0)

    worker = ModelThread(handle, lambda exc: None)
    worker.start(lambda: None)
    worker.put(0)
    assert _wait(lambda: seen == [0])  # 0 in progress; 1 and 2 arrive meanwhile
    assert worker.put(1) is False
    assert worker.put(2) is True  # replaced 1
    release.set()
    assert _wait(lambda: seen == [0, 2])
    worker.stop()
    assert worker.slot.dropped == 1


def test_a_load_that_hangs_past_the_timeout_is_an_error_and_its_result_is_discarded():
    gate, discarded, handled = threading.Event(), [], []
    worker = ModelThread(handled.append, lambda exc: None)
    with pytest.raises(TimeoutError):
        worker.start(lambda: gate.wait(5.0) and "late backend", timeout=0.2,
                     discard=discarded.append)
    worker.put("frame")
    gate.set()
    assert _wait(lambda: discarded == ["late backend"])
    assert _wait(lambda: not worker.alive)
    assert handled == []  # the late load never serves


def test_a_thread_that_outlives_stop_never_serves_the_next_start():
    release, seen = threading.Event(), []

    def handle(item):
        seen.append((item, threading.current_thread()))  # (idents are reused)
        if item == "slow":
            release.wait(5.0)

    worker = ModelThread(handle, lambda exc: None)
    worker.start(lambda: None)
    worker.put("slow")
    assert _wait(lambda: len(seen) == 1)
    assert worker.stop(timeout=0.1) is False  # still in the slow item
    with pytest.raises(RuntimeError, match="still running"):
        worker.start(lambda: None)
    release.set()
    assert _wait(lambda: not worker.alive)
    old_thread = seen[0][1]
    worker.start(lambda: None)
    for i in range(3):
        worker.put(i)
        assert _wait(lambda: len(seen) == 2 + i)
    assert worker.stop() is True
    assert all(thread is not old_thread for _, thread in seen[1:])


def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    return {**env, **extra}


_NODE_ENTRY = """
import os, sys, rclpy
def stop(args=None):
    print("GOMP_SPINCOUNT=" + os.environ.get("GOMP_SPINCOUNT", "unset"))
    raise SystemExit(0)
rclpy.init = stop  # the entry point's next step: nothing of ROS starts
from clip_depth_ros.ros.main import main
main([])
"""


@pytest.mark.parametrize("extra,expected", [
    ({}, "GOMP_SPINCOUNT=" + NODE_GOMP_SPINCOUNT),  # the node's default
    ({"GOMP_SPINCOUNT": "123"}, "GOMP_SPINCOUNT=123"),  # the user's choice wins
    ({"OMP_WAIT_POLICY": "active"}, "GOMP_SPINCOUNT=unset"),
])
def test_node_entry_quiets_openmp_before_torch_loads(extra, expected):
    out = subprocess.run([sys.executable, "-c", _NODE_ENTRY], env=_clean_env(**extra),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == expected


def test_openmp_left_alone_once_torch_is_loaded(monkeypatch):
    import torch  # noqa: F401  (loaded: libgomp has read its environment already)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert quiet_openmp_between_frames() is False
    assert "GOMP_SPINCOUNT" not in os.environ
