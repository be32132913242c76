"""Two depth nodes' closed loops interleaved: a before/after ratio that a noisy machine cannot fake.

`live_graph --closed-loop` measures one node per run; on a shared 2-core machine the speed of
the machine itself drifts by 10-40% within minutes, so two runs minutes apart compare the
machine as much as the nodes.  Here both nodes run at once, each in its own ROS domain with
its own player and recorder (the same harness as live_graph), and the closed loop alternates
between them in short blocks (baseline first in even blocks, candidate first in odd ones):
a drift hits both sides alike.  Reported: each side's frames/s pooled over all blocks, their
ratio, the median of the per-block ratios, and a bootstrap 90% interval of the pooled ratio
(blocks resampled).  The idle node waits while the other runs (its executor sleeps in
rcl_wait), so neither pays for the other beyond that.

    git worktree add /tmp/old <commit>
    python -m benchmarks.ab_loop --baseline-root /tmp/old
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..ros.launcher import DEFAULT_PARAMS, confine_dds
from .live_graph import checkout_problem, json_text, print_table


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The command line of ``python -m benchmarks.ab_loop``."""
    ap.add_argument("--baseline-root", type=Path, required=True, metavar="DIR",
                    help="the checkout whose node is the baseline (a folder holding "
                         "clip_depth_ros/, e.g. an older commit's `git worktree`)")
    ap.add_argument("--baseline-params-file", type=Path, default=None,
                    help="the baseline node's parameters (default: DIR/config/depth.yaml)")
    ap.add_argument("--params-file", type=Path, default=DEFAULT_PARAMS,
                    help="the candidate node's parameters (default: this package's depth.yaml)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                    help="a candidate node parameter (repeatable), e.g. backend:=onnxruntime")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="an environment variable for the candidate node's process "
                         "(repeatable), e.g. GOMP_SPINCOUNT=1000")
    ap.add_argument("--blocks", type=int, default=12,
                    help="closed-loop blocks per node, interleaved (default: %(default)s)")
    ap.add_argument("--block-frames", type=int, default=50,
                    help="frames per block, one in flight (default: %(default)s)")
    ap.add_argument("--warmup-frames", type=int, default=30,
                    help="closed-loop frames per node first, not counted (default: "
                         "%(default)s)")
    ap.add_argument("--points", action=argparse.BooleanOptionalAction, default=True,
                    help="also wait for the xyzrgb points of each frame (default: on, as "
                         "issue 11's measurement)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--domain-id", type=int, default=None,
                    help="ROS_DOMAIN_ID of the baseline's graph; the candidate's is the next "
                         "(default: 100 + pid %% 100)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")


def args_problem(args: argparse.Namespace) -> str:
    """Why the options cannot work (one line), or ''."""
    problem = checkout_problem(args.baseline_root, "--baseline-root")
    if problem:
        return problem
    for option, path in (("--baseline-params-file", baseline_params(args)),
                         ("--params-file", args.params_file)):
        if not path.is_file():
            return f"{option} {path}: no such file"
    if args.blocks < 2 or args.block_frames < 1 or args.warmup_frames < 0:
        return "--blocks must be >= 2, --block-frames >= 1 and --warmup-frames >= 0"
    if any(":=" not in p for p in args.param):
        return "--param takes NAME:=VALUE"
    if any("=" not in e or e.startswith("=") for e in args.env):
        return "--env takes NAME=VALUE"
    if args.domain_id is not None and not 0 <= args.domain_id <= 231:
        return "--domain-id must be 0-231 (the candidate's graph takes the next id)"
    return ""


def baseline_params(args: argparse.Namespace) -> Path:
    """The baseline node's parameters file: the option, else its checkout's config."""
    return args.baseline_params_file or args.baseline_root / "config" / "depth.yaml"


def pooled_rate(blocks: list[dict[str, Any]]) -> float:
    """Frames per second over several closed-loop blocks (frames and seconds summed)."""
    seconds = sum(b["seconds"] for b in blocks)
    return sum(b["frames"] - b["lost"] for b in blocks) / seconds if seconds > 0 else 0.0


def summarise(baseline: list[dict[str, Any]], candidate: list[dict[str, Any]],
              seed: int = 0, resamples: int = 2000) -> dict[str, Any]:
    """Pooled rates, their ratio, the median per-block ratio and a bootstrap 90% interval
    of the pooled ratio (blocks drawn with replacement, pairs kept together)."""
    ratios = [c["fps"] / b["fps"] if b["fps"] > 0 else float("nan")
              for b, c in zip(baseline, candidate)]
    rng = np.random.default_rng(seed)
    n = len(baseline)
    draws = []
    for _ in range(resamples):
        pick = rng.integers(0, n, n)
        base = pooled_rate([baseline[i] for i in pick])
        draws.append(pooled_rate([candidate[i] for i in pick]) / base if base > 0 else np.nan)
    lo, hi = np.nanpercentile(draws, [5, 95])
    base, cand = pooled_rate(baseline), pooled_rate(candidate)
    return {"baseline_fps": base, "candidate_fps": cand,
            "ratio": cand / base if base > 0 else float("nan"),
            "median_block_ratio": float(np.nanmedian(ratios)), "block_ratios": ratios,
            "ratio_90ci": [float(lo), float(hi)],
            "lost": sum(b["lost"] for b in baseline + candidate)}


def run(args: argparse.Namespace) -> int:
    """Start both graphs, interleave the blocks, print the table and the summary."""
    problem = args_problem(args)
    if problem:
        print(f"ab_loop: error: {problem}", file=sys.stderr)
        return 2
    env = confine_dds(args.domain_id)
    from .graph_harness import LiveGraph, loadavg  # imports rclpy, DDS confined first
    base_domain = int(env["ROS_DOMAIN_ID"])
    params = baseline_params(args)
    overrides = dict(p.split(":=", 1) for p in args.param)
    with contextlib.ExitStack() as stack:
        graphs = {
            "baseline": stack.enter_context(LiveGraph(
                args.width, args.height, args.points, {}, str(params),
                node_root=args.baseline_root, domain_id=base_domain)),
            "candidate": stack.enter_context(LiveGraph(
                args.width, args.height, args.points, overrides, str(args.params_file),
                domain_id=base_domain + 1, env=dict(e.split("=", 1) for e in args.env)))}
        for name, graph in graphs.items():
            graph.measure(5.0, 5)  # the first frames pay for lazy set-up: discarded
            if args.warmup_frames:
                graph.closed_loop(args.warmup_frames)
            print(f"{name}: {graph.describe()}", flush=True)
        blocks: dict[str, list[dict[str, Any]]] = {"baseline": [], "candidate": []}
        for k in range(args.blocks):
            order = ("baseline", "candidate") if k % 2 == 0 else ("candidate", "baseline")
            for name in order:
                blocks[name].append(graphs[name].closed_loop(args.block_frames))
        load = loadavg()
    summary = summarise(blocks["baseline"], blocks["candidate"], args.seed)
    rows = [{"block": k + 1, "base": b["fps"], "cand": c["fps"], "ratio": ratio}
            for k, (b, c, ratio) in enumerate(zip(blocks["baseline"], blocks["candidate"],
                                                  summary["block_ratios"]))]
    print()
    print_table(rows, [("block", "{}", lambda r: r["block"]),
                       ("baseline fps", "{:.2f}", lambda r: r["base"]),
                       ("candidate fps", "{:.2f}", lambda r: r["cand"]),
                       ("ratio", "{:.3f}", lambda r: r["ratio"])])
    lo, hi = summary["ratio_90ci"]
    print(f"\npooled: baseline {summary['baseline_fps']:.2f} frames/s, candidate "
          f"{summary['candidate_fps']:.2f} frames/s: ratio {summary['ratio']:.3f} (90% "
          f"bootstrap interval {lo:.3f}-{hi:.3f}); median block ratio "
          f"{summary['median_block_ratio']:.3f}; {args.blocks} blocks x {args.block_frames} "
          f"frames each; lost {summary['lost']}; load average at end {load}")
    if args.json:
        args.json.write_text(json_text({"blocks": blocks, "summary": summary}))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m benchmarks.ab_loop`."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
