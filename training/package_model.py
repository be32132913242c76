"""Ship a trained run's best weights inside the package, with their held-out metrics.

    python -m training.package_model --run runs/demo_mirror --name demo-mirror

Evaluates RUN/best.safetensors on a fixed held-out synthetic split (scenes never used in
training or validation), then writes clip_depth_ros/models/NAME.safetensors + NAME.json whose
sidecar records the model config, the exact training command and config, and the metrics
(``heldout_eval``: the split's settings and results).  test/test_demo_model.py re-evaluates
the shipped file with the same settings and checks the recorded numbers.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

from clip_depth_ros.backends.torch_backend import TorchBackend
from clip_depth_ros.config import BUNDLED_WEIGHTS_DIR
from clip_depth_ros.weights import atomic_write, read_sidecar

from .config import DataConfig
from .data.builder import base_dataset
from .evaluate import evaluate, format_table

MAX_BYTES = 20 * 1024 * 1024


def heldout_split(kind: str, samples: int, seed: int, size: list[int],
                  focal_range: Optional[list[float]] = None,
                  texture_scale_m: Optional[float] = None) -> dict[str, Any]:
    """The settings of the held-out evaluation split (stored with the shipped weights).

    focal_range / texture_scale_m: random lenses and one surface-pattern size, as a
    camera-aware model was trained with (absent: the kind's camera, random patterns).
    """
    split = {"data": kind, "samples": samples, "seed": seed, "render_size": list(size),
             "crop": "none", "flip_tta": False, "median_scaling": False}
    if focal_range is not None:
        split["focal_range"] = list(focal_range)
    if texture_scale_m is not None:
        split["texture_scale_m"] = float(texture_scale_m)
    return split


def evaluate_heldout(weights: str, split: dict[str, Any]) -> dict[str, Any]:
    """Metrics of ``weights`` on the held-out split described by ``split``."""
    data = DataConfig(kind=split["data"], val_samples=split["samples"], seed=split["seed"],
                      render_size=split["render_size"], focal_range=split.get("focal_range"),
                      texture_scale_m=split.get("texture_scale_m"))
    backend = TorchBackend(None, weights=weights)
    metrics, _ = evaluate(backend, base_dataset(data, "val"), split["crop"], split["flip_tta"],
                          split["median_scaling"], keep=0)
    return metrics


def package(run: Path, name: str, split: dict[str, Any]) -> Path:
    """Evaluate and copy RUN/best.safetensors into the package as NAME."""
    best = run / "best.safetensors"
    if best.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{best} is {best.stat().st_size / 2**20:.1f} MB; the package limit "
                         f"is {MAX_BYTES / 2**20:.0f} MB")
    metrics = evaluate_heldout(str(best), split)
    print(format_table(metrics))
    sidecar = read_sidecar(best)
    meta = sidecar.setdefault("metadata", {})
    meta["heldout_eval"] = {"split": split, "metrics": metrics}
    meta["note"] = ("trained from scratch on procedurally rendered indoor rooms (no pretrained "
                    "CLIP weights are available on this project's machines)")
    BUNDLED_WEIGHTS_DIR.mkdir(exist_ok=True)
    target = BUNDLED_WEIGHTS_DIR / f"{name}.safetensors"
    atomic_write(target, lambda tmp: shutil.copyfile(best, tmp))
    atomic_write(target.with_suffix(".json"),
                 lambda tmp: Path(tmp).write_text(json.dumps(sidecar, indent=2) + "\n"))
    return target


def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="training output folder (has best.safetensors)")
    ap.add_argument("--name", required=True, help="bundled weights name")
    ap.add_argument("--data", default="synthetic-indoor")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1000, help="held-out split seed (training: 0)")
    ap.add_argument("--render-size", type=int, nargs=2, default=[240, 320])
    ap.add_argument("--focal-range", type=float, nargs=2, default=None,
                    help="random focal length per image in px (camera-aware models)")
    ap.add_argument("--texture-scale", type=float, default=None,
                    help="every surface pattern this size in metres (as trained)")
    args = ap.parse_args(argv)
    split = heldout_split(args.data, args.samples, args.seed, args.render_size,
                          args.focal_range, args.texture_scale)
    target = package(Path(args.run), args.name, split)
    print(f"shipped {target} ({target.stat().st_size / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
