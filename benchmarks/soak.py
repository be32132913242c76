"""Soak the depth node: feed it twice the rate it can process for many frames.

First the node's processing rate is measured briefly (20 frames sent one at a time, each after
the previous depth came back: 1 / median round trip), then frames are published at
``--factor`` (2) times that rate for ``--frames`` frames after a short warm-up at that rate.
Reported: processed and dropped frames (ours and the node's /diagnostics), whether every
processed frame's depth was published (depth messages received vs. the node's
frames_processed), latency p50/p99 and drops per ``--window`` frames, and the node process's
resident memory (VmRSS) after the warm-up, during and at the end.

Duration: frames / (factor x processing rate) seconds plus ~15 s of start-up.  With the tiny
model at 640x480 on two CPU cores shared with a training run (load average 7-14) the node
processed ~20-30 frames/s, so 10000 frames took 258 s (4 min 43 s in all) and 2000 frames
about 70 s; on a quiet machine expect less.  A benchmark prints a table and writes JSON;
nothing here asserts.  ``python -m benchmarks.soak --help``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):  # run as a file: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.graph_harness import LiveGraph, loadavg, percentiles  # noqa: E402
from benchmarks.live_graph import (add_graph_args, graph_args_problem,  # noqa: E402
                                   graph_from_args, json_text, print_table)


def window_stats(sent: dict[int, float], depth: dict[int, float], window: int,
                 rss: dict[int, int]) -> list[dict[str, Any]]:
    """Drops and latency per block of `window` published frames (in publishing order)."""
    keys = list(sent)  # insertion order = publishing order
    rows = []
    for start in range(0, len(keys), window):
        block = keys[start:start + window]
        latency = [(depth[k] - sent[k]) * 1e3 for k in block if k in depth]
        end = start + len(block)
        rows.append({"frames": f"{start}-{end - 1}", "sent": len(block),
                     "depth_received": len(latency),
                     "drop_rate": 1.0 - len(latency) / len(block),
                     "latency_ms": percentiles(latency),
                     "rss_mib": rss.get(end - 1, 0) / 1024})
    return rows


def run_soak(graph: LiveGraph, frames: int, factor: float = 2.0, window: int = 1000,
             warmup_s: float = 3.0, rate_hz: Optional[float] = None) -> dict[str, Any]:
    """Warm up, measure the processing rate (unless rate_hz is given), soak; all figures."""
    graph.processing_rate(5)  # first frames pay for lazy initialisation
    processing_hz = graph.processing_rate(20)
    rate = rate_hz or factor * processing_hz
    graph.measure(rate, max(10, round(rate * warmup_s)))  # warm-up at the soak rate, discarded
    rss: dict[int, int] = {}

    def sample(i: int) -> None:
        if (i + 1) % window == 0 or i + 1 == frames:
            rss[i] = graph.node_proc.rss_kib()

    rss_start = graph.node_proc.rss_kib()
    t0 = time.monotonic()
    run = graph.measure(rate, frames, on_frame=sample)
    duration = time.monotonic() - t0
    rss_end = graph.node_proc.rss_kib()
    arrivals, _ = graph.recorder.snapshot()
    return {
        "processing_rate_hz": processing_hz, "rate_hz": rate, "frames": frames,
        "duration_s": duration, "run": run, "node_alive": graph.node_proc.alive(),
        "windows": window_stats(dict(graph.player.sent), arrivals["depth"], window, rss),
        "rss_kib": {"start": rss_start, "end": rss_end,
                    "growth_pct": 100.0 * (rss_end - rss_start) / rss_start if rss_start else
                    float("nan"), "samples": {str(k): v for k, v in sorted(rss.items())}},
    }


WINDOW_COLUMNS = [
    ("frames", "{}", lambda r: r["frames"]),
    ("sent", "{}", lambda r: r["sent"]),
    ("depth", "{}", lambda r: r["depth_received"]),
    ("drop %", "{:.1f}", lambda r: 100 * r["drop_rate"]),
    ("p50 ms", "{:.1f}", lambda r: r["latency_ms"]["p50"]),
    ("p99 ms", "{:.1f}", lambda r: r["latency_ms"]["p99"]),
    ("max ms", "{:.1f}", lambda r: r["latency_ms"]["max"]),
    ("node RSS MiB", "{:.1f}", lambda r: r["rss_mib"]),
]


def print_report(result: dict[str, Any]) -> None:
    """The per-window table and the totals."""
    run, node, rss = result["run"], result["run"]["node"], result["rss_kib"]
    print()
    print_table(result["windows"], WINDOW_COLUMNS)
    print(f"\nprocessing rate {result['processing_rate_hz']:.2f} Hz (1 / median round trip); "
          f"soak input {result['rate_hz']:.2f} Hz requested, {run['publish_rate_hz']:.2f} Hz "
          f"achieved; {result['frames']} frames in {result['duration_s']:.0f} s")
    print(f"ours:  {run['published']} published, {run['depth_received']} depth received "
          f"({100 * run['drop_rate']:.1f}% dropped), output {run['output_rate_hz']:.2f} Hz, "
          f"latency p50 {run['latency_ms']['p50']:.1f} / p99 {run['latency_ms']['p99']:.1f} ms")
    print(f"node:  received {node['frames_received']}, processed {node['frames_processed']}, "
          f"dropped {node['frames_dropped']}, rejected/errors {node['rejected']}; "
          f"lost before the node {run['lost_before_node']}")
    print(f"every processed frame published: {run['depth_messages']} depth messages vs "
          f"{node['frames_processed']} processed (difference "
          f"{run['processed_not_received']})")
    print(f"node RSS: {rss['start'] / 1024:.1f} MiB after warm-up, {rss['end'] / 1024:.1f} MiB "
          f"at the end ({rss['growth_pct']:+.2f}%); node alive at the end: "
          f"{result['node_alive']}")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10000, help="frames to publish")
    ap.add_argument("--factor", type=float, default=2.0, help="input rate / processing rate")
    ap.add_argument("--rate", type=float, default=None, help="fixed input rate (skips --factor)")
    ap.add_argument("--window", type=int, default=1000, help="frames per table row")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds at the soak rate first")
    add_graph_args(ap)
    return ap.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the soak; print the report, optionally write JSON."""
    args = parse_args(argv)
    problem = graph_args_problem(args)
    if problem:
        print(f"soak: error: {problem}", file=sys.stderr)
        return 2
    with graph_from_args(args) as graph:
        setup = graph.describe()
        print(f"setup: {setup}", flush=True)
        result = run_soak(graph, args.frames, args.factor, args.window, args.warmup, args.rate)
        setup["loadavg_end"] = loadavg()
    print_report(result)
    print(f"load average (1/5/15 min) at start {setup['loadavg']}, end {setup['loadavg_end']}")
    if args.json:
        args.json.write_text(json_text({"setup": setup, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
