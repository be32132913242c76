"""The depth node on a live ROS 2 graph, in the spirit of NVIDIA's ros2_benchmark.

A player publishes pre-rendered synthetic frames (rgb8 image + camera_info, rendered once up
front so rendering is outside the measurement) at a fixed rate, each with a unique stamp; the
depth node runs as its own process exactly as ``ros2 run`` starts it; a recorder subscribed
reliably to depth (and points with ``--points``) matches outputs to inputs by stamp.  Reported
per rate: end-to-end latency (image published -> depth received) p50/p95/p99, output rate,
drop rate = 1 - received/published, and the node's own /diagnostics counters over the run.
``--find-peak`` steps the rate up and reports the highest rate kept with < 5% dropped frames.

DDS stays on this machine (config/fastdds_shm.xml, shared memory only, a private domain id).
The player and recorder live in clip_depth_ros/benchmarks/graph_harness.py, the node process in
clip_depth_ros/ros/launcher.py.  A benchmark prints a table; nothing here asserts.
``clip-depth bench live --help``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional


from ..ros.launcher import DEFAULT_PARAMS, confine_dds  # noqa: E402  (no rclpy)

if TYPE_CHECKING:  # the harness imports rclpy: only when a graph is built
    from .graph_harness import LiveGraph

MAX_DROP = 0.05


def json_text(obj: Any) -> str:
    """Strict JSON (NaN -> null) of a results dict."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and value != value:
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value
    return json.dumps(clean(obj), indent=2, default=str) + "\n"


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, Callable]]) -> None:
    """A fixed-width table: columns are (header, format, getter)."""
    cells = [[h for h, _, _ in columns]] + [[fmt.format(get(r)) for _, fmt, get in columns]
                                            for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for j, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


RUN_COLUMNS = [
    ("rate Hz", "{:.1f}", lambda r: r["rate_hz"]),
    ("pub Hz", "{:.1f}", lambda r: r["publish_rate_hz"]),
    ("sent", "{}", lambda r: r["published"]),
    ("depth", "{}", lambda r: r["depth_received"]),
    ("drop %", "{:.1f}", lambda r: 100 * r["drop_rate"]),
    ("out Hz", "{:.2f}", lambda r: r["output_rate_hz"]),
    ("p50 ms", "{:.1f}", lambda r: r["latency_ms"]["p50"]),
    ("p95 ms", "{:.1f}", lambda r: r["latency_ms"]["p95"]),
    ("p99 ms", "{:.1f}", lambda r: r["latency_ms"]["p99"]),
    ("points", "{}", lambda r: r["points_received"]),
    ("pts p50 ms", "{:.1f}", lambda r: r["points_latency_ms"]["p50"]),
    ("node rx/proc/drop/rej", "{}", lambda r: "/".join(str(r["node"][k]) for k in (
        "frames_received", "frames_processed", "frames_dropped", "rejected"))),
    ("node p50 ms", "{:.1f}", lambda r: r["node"]["latency_p50_ms"]),
    ("lost pre-node", "{}", lambda r: r["lost_before_node"]),
    ("late pubs", "{}", lambda r: r["late_frames"]),
]


def find_peak(graph: LiveGraph, rates: list[float], duration: float,
              bisect_steps: int) -> tuple[list[dict[str, Any]], Optional[float]]:
    """Step the rate up until >= 5% drop, then bisect; the highest rate kept under 5%."""
    runs: list[dict[str, Any]] = []

    def passes(rate: float) -> bool:
        run = graph.measure(rate, max(2, round(rate * duration)))
        runs.append(run)
        print(f"  {rate:6.1f} Hz: drop {100 * run['drop_rate']:.1f}%, "
              f"p50 {run['latency_ms']['p50']:.1f} ms", flush=True)
        return run["drop_rate"] < MAX_DROP and run["node_alive"]

    good, bad = None, None
    for rate in rates:
        if not passes(rate):
            bad = rate
            break
        good = rate
    for _ in range(bisect_steps if good is not None and bad is not None else 0):
        mid = round((good + bad) / 2, 1)
        if mid in (good, bad):
            break
        good, bad = (mid, bad) if passes(mid) else (good, mid)
    return runs, good


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """This tool's options (also `clip-depth bench live`)."""
    ap.add_argument("--rate", type=float, default=10.0, help="camera rate, Hz")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per rate")
    ap.add_argument("--find-peak", action="store_true", help="step the rate up to the peak")
    ap.add_argument("--closed-loop", type=int, default=0, metavar="N",
                    help="instead of a rate: N frames with one in flight (the next is sent "
                         "when depth, and points with --points, came back); prints frames/s")
    ap.add_argument("--peak-rates", type=float, nargs="+",
                    default=[5, 10, 15, 20, 30, 40, 60, 90, 120])
    ap.add_argument("--bisect", type=int, default=2, help="bisection steps after the steps")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds at --rate first")
    add_graph_args(ap)


def add_graph_args(ap: argparse.ArgumentParser) -> None:
    """Options shared with benchmarks/soak.py: the node, the frames and the outputs."""
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--points", action="store_true", help="also subscribe to points")
    ap.add_argument("--model", default=None, help="override the params file's model")
    ap.add_argument("--weights", default=None, help="override the params file's weights")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                    help="any other node parameter (repeatable), e.g. device:=cuda")
    ap.add_argument("--params-file", default=str(DEFAULT_PARAMS),
                    help="the node's parameters (default: this package's depth.yaml)")
    ap.add_argument("--node-root", type=Path, default=None, metavar="DIR",
                    help="run the node from another checkout (a folder holding "
                         "clip_depth_ros/), e.g. an older commit's `git worktree`, under this "
                         "harness; give that checkout's --params-file too (default: this one)")
    ap.add_argument("--distinct-frames", type=int, default=30, help="frames rendered up front")
    ap.add_argument("--domain-id", type=int, default=None,
                    help="private ROS_DOMAIN_ID (default 100 + pid %% 100)")
    ap.add_argument("--node-log", type=Path, default=None, help="node output (default: /tmp)")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")


def graph_from_args(args: argparse.Namespace) -> LiveGraph:
    """A LiveGraph as the command line describes it; DDS confined to a private domain first."""
    confine_dds(args.domain_id)
    from .graph_harness import LiveGraph  # confines DDS (if not yet), imports rclpy
    overrides = dict(p.split(":=", 1) for p in args.param)
    overrides.update({"model": args.model, "weights": args.weights})
    return LiveGraph(args.width, args.height, args.points, overrides, args.params_file,
                     args.distinct_frames, args.node_log, node_root=args.node_root)


def checkout_problem(root: Path, option: str) -> str:
    """Why ``root`` (given as ``option``) holds no node to run (one line), or ''."""
    if not (root / "clip_depth_ros" / "ros" / "main.py").is_file():
        return f"{option} {root}: no clip_depth_ros/ros/main.py there (a checkout's root?)"
    return ""


def graph_args_problem(args: argparse.Namespace) -> str:
    """Why the graph options cannot work (one line), or ''."""
    root = getattr(args, "node_root", None)
    problem = "" if root is None else checkout_problem(root, "--node-root")
    if problem:
        return problem
    if not Path(args.params_file).is_file():
        return f"--params-file {args.params_file}: no such file"
    return ""


def run(args: argparse.Namespace) -> int:
    """Run one rate or the peak search; print a table, optionally write JSON."""
    from .graph_harness import loadavg
    problem = graph_args_problem(args)
    if problem:
        print(f"live_graph: error: {problem}", file=sys.stderr)
        return 2
    with graph_from_args(args) as graph:
        graph.measure(args.rate, max(5, round(args.rate * args.warmup)))  # warm-up, discarded
        setup = graph.describe()
        print(f"setup: {setup}", flush=True)
        if args.closed_loop:
            loop = graph.closed_loop(args.closed_loop)
            setup["loadavg_end"] = loadavg()
            print(f"closed loop, one frame in flight: {loop['frames']} frames in "
                  f"{loop['seconds']:.1f} s = {loop['fps']:.2f} frames/s, round trip p50 "
                  f"{loop['round_trip_ms']['p50']:.1f} ms p95 {loop['round_trip_ms']['p95']:.1f} "
                  f"ms, lost {loop['lost']}; load average {setup['loadavg']} -> "
                  f"{setup['loadavg_end']}")
            if args.json:
                args.json.write_text(json_text({"setup": setup, "closed_loop": loop}))
            return 0
        if args.find_peak:
            runs, peak = find_peak(graph, args.peak_rates, args.duration, args.bisect)
        else:
            runs, peak = [graph.measure(args.rate, max(2, round(args.rate * args.duration)))], None
        setup["loadavg_end"] = loadavg()
    print()
    print_table(runs, RUN_COLUMNS)
    print(f"\nload average (1/5/15 min) at start {setup['loadavg']}, end {setup['loadavg_end']}")
    if args.find_peak:
        print(f"peak: {peak if peak is not None else 'none'} Hz with < {100 * MAX_DROP:.0f}% "
              "of frames dropped")
    if args.json:
        args.json.write_text(json_text({"setup": setup, "runs": runs, "peak_hz": peak}))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m benchmarks.live_graph`."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
