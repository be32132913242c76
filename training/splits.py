"""Named evaluation splits: which images a model's numbers were measured on.

``heldout`` is the split a shipped model's numbers come from: synthetic scenes never used in
training or validation (seed 1000: the validation stream is seed + 7919, so a training seed
of 0 or 1 never meets it).  ``package_model`` records it in the model's sidecar
(``metadata.heldout_eval.split``); ``evaluate --split heldout`` reads it back from there, so
both give the same number.  A model without a recorded split gets the default held-out split,
with the lenses and pattern size it was trained with.  ``custom`` is any other synthetic
split (``--seed``/``--samples``...); a real dataset's split is its own test list.  Every
printed table and metrics JSON names its split.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from .config import DataConfig

HELDOUT = "heldout"
CUSTOM = "custom"
SPLITS = (HELDOUT, CUSTOM)
HELDOUT_KIND = "synthetic-indoor"
HELDOUT_SAMPLES = 64
HELDOUT_SEED = 1000
HELDOUT_RENDER_SIZE = (240, 320)


def heldout_split(kind: str, samples: int, seed: int, size: list[int],
                  focal_range: Optional[list[float]] = None,
                  texture_scale_m: Optional[float] = None,
                  name: str = HELDOUT,
                  families: Optional[list[str]] = None) -> dict[str, Any]:
    """The settings of a synthetic evaluation split (stored with the shipped weights).

    focal_range / texture_scale_m: random lenses and one surface-pattern size, as a
    camera-aware model was trained with (absent: the kind's camera, random patterns);
    families: synthetic-worlds' world families (absent: the training families).
    """
    split = {"name": name, "data": kind, "samples": int(samples), "seed": int(seed),
             "render_size": [int(v) for v in size], "crop": "none", "flip_tta": False,
             "median_scaling": False}
    if focal_range is not None:
        split["focal_range"] = [float(v) for v in focal_range]
    if texture_scale_m is not None:
        split["texture_scale_m"] = float(texture_scale_m)
    if families:
        split["families"] = [str(f) for f in families]
    return split


def default_heldout(sidecar: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The held-out split of a model: the one its sidecar records, else the default one with
    the lenses (data.focal_range) and pattern size (data.texture_scale_m) it was trained with."""
    meta = (sidecar or {}).get("metadata", {}) or {}
    recorded = (meta.get("heldout_eval") or {}).get("split")
    if recorded:
        return {"name": HELDOUT, **recorded}
    data = (meta.get("train_config") or {}).get("data") or {}
    return heldout_split(HELDOUT_KIND, HELDOUT_SAMPLES, HELDOUT_SEED, list(HELDOUT_RENDER_SIZE),
                         data.get("focal_range"), data.get("texture_scale_m"))


def split_data(split: Mapping[str, Any]) -> DataConfig:
    """The DataConfig whose validation stream is this synthetic split's images."""
    return DataConfig(kind=split["data"], val_samples=split["samples"], seed=split["seed"],
                      render_size=list(split["render_size"]),
                      focal_range=split.get("focal_range"),
                      texture_scale_m=split.get("texture_scale_m"),
                      families=split.get("families"))


def describe(split: Mapping[str, Any]) -> str:
    """One line naming the split and what is in it (for printed tables)."""
    name = split.get("name", CUSTOM)
    if not str(split.get("data", "")).startswith("synthetic-"):
        return f"split {name} ({split.get('data')}: {split.get('source', 'its test list')})"
    h, w = split["render_size"]
    text = (f"split {name} ({split['data']}, seed {split['seed']}, {split['samples']} images "
            f"at {w}x{h}")
    if split.get("focal_range"):
        lo, hi = split["focal_range"]
        text += f", focal {lo:g}-{hi:g} px"
    if split.get("texture_scale_m"):
        text += f", patterns {split['texture_scale_m']:g} m"
    if split.get("families"):
        text += f", families {'+'.join(split['families'])}"
    return text + ")"
