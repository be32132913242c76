"""Ship a trained run's best weights inside the package, with their held-out metrics.

    python -m training.package_model --run runs/demo_mirror --name my-model
    python -m training.package_model --run runs/demo_mirror_stage2 --name demo-mirror --force

Evaluates RUN/best.safetensors on the held-out synthetic split (training/splits.py: scenes
never used in training or validation; seed 1000, 64 images at 240x320, and the lenses and
pattern size the run was trained with unless --focal-range / --texture-scale say otherwise),
then writes clip_depth_ros/models/NAME.safetensors + NAME.json.  The sidecar's model config
is renamed NAME (what `clip-depth models` and the node log show) and records the exact
training command and config and ``heldout_eval`` (the split and its metrics), which
``python -m training.evaluate --weights NAME`` reproduces.  A NAME that is already bundled is
refused unless --force.  test/test_demo_model.py re-evaluates the shipped files.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Optional

from clip_depth_ros.backends.torch_backend import TorchBackend
from clip_depth_ros.config import BUNDLED_WEIGHTS_DIR
from clip_depth_ros.errors import ConfigError
from clip_depth_ros.weights import read_sidecar, save_tensor_file

from .cli_errors import OneLineParser, command_main
from .data.builder import base_dataset
from .evaluate import evaluate, format_table
from .splits import HELDOUT, HELDOUT_SEED, default_heldout, heldout_split, split_data

__all__ = ["evaluate_heldout", "heldout_split", "package", "main"]

MAX_BYTES = 20 * 1024 * 1024
PROG = "python -m training.package_model"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def evaluate_heldout(weights: str, split: dict[str, Any]) -> dict[str, Any]:
    """Metrics of ``weights`` on the held-out split described by ``split``."""
    split = {"name": HELDOUT, **split}
    backend = TorchBackend(None, weights=weights)
    metrics, _ = evaluate(backend, base_dataset(split_data(split), "val"), split["crop"],
                          split["flip_tta"], split["median_scaling"], keep=0, split=split)
    return metrics


def generalization(weights: str, split: dict[str, Any],
                   heldout_metrics: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """d1 / AbsRel of ``weights`` on a synthetic-worlds split and on the held-out world
    family's split of the same settings, each as metric depth, median-scaled (the structure
    alone), and with the node's ground_plane anchor told each view's camera height.
    ``heldout_metrics``: the metric evaluation of ``split`` already made (not repeated)."""
    from clip_depth_ros.synthetic.worlds import HELDOUT_FAMILY
    from clip_depth_ros.trust import TrustSettings
    backend = TorchBackend(None, weights=weights)
    report: dict[str, Any] = {}
    splits = {"in_distribution": split,
              "heldout_family": {**split, "name": f"heldout-{HELDOUT_FAMILY}",
                                 "families": [HELDOUT_FAMILY]}}
    for label, chosen in splits.items():
        data = base_dataset(split_data(chosen), "val")
        row: dict[str, Any] = {"split": chosen}
        for view, median, trust in (("metric", False, None), ("median_scaled", True, None),
                                    ("ground_plane", False,
                                     TrustSettings(scale_anchor="ground_plane"))):
            if label == "in_distribution" and view == "metric" and heldout_metrics:
                metrics = heldout_metrics
            else:
                metrics, _ = evaluate(backend, data, keep=0, use_median_scale=median,
                                      trust=trust)
            row[view] = {k: metrics[k] for k in ("d1", "abs_rel", "rmse")}
            if trust is not None:
                row[view]["anchor_held"] = metrics["anchor_held"]
        report[label] = row
    return report


def check_target(run: Path, name: str, force: bool, models_dir: Optional[Path] = None
                 ) -> Path:
    """RUN/best.safetensors, after checking everything that would refuse the packaging (a
    name that is no file stem, a bundled name without force, a missing or too large file)."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"--name '{name}' is not a model name: letters, digits, '.', '_' and "
                          "'-', starting with a letter or digit")
    target = (models_dir or BUNDLED_WEIGHTS_DIR) / f"{name}.safetensors"
    if (target.exists() or target.with_suffix(".json").exists()) and not force:
        raise ConfigError(f"'{name}' is already a bundled model ({target}); choose another "
                          "--name, or pass --force to replace it")
    best = run / "best.safetensors"
    if not best.is_file():
        raise ConfigError(f"{best} not found: --run must be a training output folder with "
                          "best.safetensors")
    if best.stat().st_size > MAX_BYTES:
        raise ConfigError(f"{best} is {best.stat().st_size / 2**20:.1f} MB; the package limit "
                          f"is {MAX_BYTES / 2**20:.0f} MB")
    return best


def package(run: Path, name: str, split: dict[str, Any], force: bool = False,
            models_dir: Optional[Path] = None) -> Path:
    """Evaluate RUN/best.safetensors on ``split`` and copy it into the package as NAME."""
    best = check_target(run, name, force, models_dir)
    sidecar = read_sidecar(best)
    metrics = evaluate_heldout(str(best), split)
    print(format_table(metrics))
    sidecar["config"]["name"] = name  # the model is called what it was shipped as
    meta = sidecar.setdefault("metadata", {})
    meta["heldout_eval"] = {"split": {"name": HELDOUT, **split}, "metrics": metrics}
    if split["data"] == "synthetic-worlds":
        meta["generalization"] = generalization(str(best), split, metrics)
        for label, row in meta["generalization"].items():
            print(f"{label:>16s}: d1 metric {row['metric']['d1']:.3f}, median-scaled "
                  f"{row['median_scaled']['d1']:.3f}, ground_plane "
                  f"{row['ground_plane']['d1']:.3f} (held on "
                  f"{100 * row['ground_plane']['anchor_held']:.0f}% of views)")
    if (meta.get("train_config") or {}).get("backbone_weights") == "random":
        meta["note"] = ("trained from scratch (random backbone) on procedurally rendered "
                        f"{'worlds' if split['data'] == 'synthetic-worlds' else 'rooms'}: no "
                        "pretrained CLIP weights")
    from safetensors.torch import load_file
    # rewritten, not copied: the header's copy of the sidecar carries the new name too
    target = (models_dir or BUNDLED_WEIGHTS_DIR) / f"{name}.safetensors"
    return save_tensor_file(load_file(str(best)), target, sidecar)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Command-line options."""
    ap = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path,
                    help="training output folder (has best.safetensors)")
    ap.add_argument("--name", required=True,
                    help="bundled weights name; also the model name its sidecar and the node "
                         "show")
    ap.add_argument("--force", action="store_true",
                    help="replace a bundled model of the same name (refused otherwise)")
    ap.add_argument("--data", default="synthetic-indoor",
                    choices=("synthetic-indoor", "synthetic-street", "synthetic-worlds"),
                    help="synthetic data kind of the held-out split (synthetic-worlds also "
                         "records the held-out world family's numbers; default: %(default)s)")
    ap.add_argument("--samples", type=int, default=64, help="held-out images (default 64)")
    ap.add_argument("--seed", type=int, default=HELDOUT_SEED,
                    help=f"held-out split seed (default {HELDOUT_SEED}; training uses its own)")
    ap.add_argument("--render-size", type=int, nargs=2, default=[240, 320], metavar=("H", "W"))
    ap.add_argument("--focal-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="random focal length per image in px (default: the run's "
                         "data.focal_range)")
    ap.add_argument("--texture-scale", type=float, default=None,
                    help="every surface pattern this size in metres (default: the run's "
                         "data.texture_scale_m)")
    return ap.parse_args(argv)


@command_main(PROG)
def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point: a refused name or run is one line and status 2."""
    args = parse_args(argv)
    best = check_target(args.run, args.name, args.force)
    trained = default_heldout(read_sidecar(best))  # the run's lenses and pattern size
    focal = args.focal_range if args.focal_range is not None else trained.get("focal_range")
    texture = (args.texture_scale if args.texture_scale is not None
               else trained.get("texture_scale_m"))
    split = heldout_split(args.data, args.samples, args.seed, args.render_size, focal, texture)
    if args.force and (BUNDLED_WEIGHTS_DIR / f"{args.name}.safetensors").exists():
        print(f"replacing the bundled model '{args.name}' (--force)", file=sys.stderr)
    target = package(args.run, args.name, split, force=args.force)
    print(f"shipped {target} ({target.stat().st_size / 2**20:.1f} MB) as model '{args.name}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
