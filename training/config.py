"""Training configuration: a JSON/YAML file plus ``--set key=value`` overrides.

One source of truth: the dataclasses below; a config file only lists what differs.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

DATA_KINDS = ("synthetic-indoor", "synthetic-street", "nyu", "nyu-mat", "kitti", "folder")


@dataclass
class DataConfig:
    """Where samples come from and how they are augmented."""

    kind: str = "synthetic-indoor"
    root: str = ""  # nyu / kitti (image root) / folder
    depth_root: str = ""  # kitti annotated depth root
    train_list: str = ""  # list file (nyu, kitti)
    val_list: str = ""
    mat_path: str = ""  # nyu-mat: nyu_depth_v2_labeled.mat
    splits_mat: str = ""  # nyu-mat: splits.mat (testNdxs / trainNdxs)
    train_samples: int = 2000  # synthetic only
    val_samples: int = 64  # synthetic only
    render_size: list[int] = field(default_factory=lambda: [240, 320])  # synthetic [h, w]
    focal_range: Optional[list[float]] = None  # synthetic: random focal per sample (px)
    texture_scale_m: Optional[float] = None  # synthetic indoor: one physical pattern scale
    # synthetic: each training sample also rendered through a lens z times longer, z uniform
    # in [lo, hi] (for zoom_consistency); None = no twins
    zoom_pairs: Optional[list[float]] = None
    seed: int = 0
    flip: bool = True
    rotate_deg: float = 0.0
    color_jitter: float = 0.2
    random_crop: bool = True  # crop to the model's aspect before resizing
    eval_crop: str = "none"  # none | eigen | garg
    workers: int = 2


@dataclass
class TrainConfig:
    """Everything one training run needs; written next to its checkpoints."""

    model: str = "tiny-mirror"
    backbone_weights: Optional[str] = None  # open_clip tag, local file, "random", None = config's
    init_weights: Optional[str] = None  # trained parts to start from (e.g. CLIPSelf output)
    train_backbone: bool = False  # unfreeze the whole image encoder (training from scratch)
    epochs: int = 10
    max_steps: int = 0  # stop after this many optimizer steps (0 = epochs decide)
    batch_size: int = 8  # global batch over all processes
    lr: float = 1e-4  # backbone / adapters
    head_lr: float = 1e-3  # head (decoder, mirror, bins): trained parts learn faster
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    loss: str = "auto"  # auto | silog | moa
    gradient_matching: float = 0.0  # weight of the gradient matching term
    # SiLog variance focus: 0.85 (BTS) nearly ignores a per-image scale error; camera-aware
    # training must learn exactly that scale, so it uses 0.5 (Depth Anything V2's metric value)
    silog_lambda: float = 0.85
    # camera-aware models: weight of the zoom-consistency loss between each sample's metric
    # depth and its zoomed twin's (needs data.zoom_pairs); 0 = off
    zoom_consistency: float = 0.0
    amp: bool = True  # bf16 autocast on CUDA; ignored on the CPU
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    out_dir: str = "runs/exp"
    log_every: int = 10
    ckpt_every: int = 200  # steps; also at every epoch end
    eval_every: int = 1  # epochs
    best_metric: str = "abs_rel"  # lower is better for abs_rel/rmse..., higher for d1..d3
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from a dict, rejecting unknown keys."""
        data = dict(data)
        _check_keys(cls, data, "train config")
        if isinstance(data.get("data"), dict):
            _check_keys(DataConfig, data["data"], "data section")
            data["data"] = DataConfig(**data["data"])
        cfg = cls(**data)
        if cfg.data.kind not in DATA_KINDS:
            raise ValueError(f"data.kind must be one of {DATA_KINDS}, not '{cfg.data.kind}'")
        zoom = cfg.data.zoom_pairs
        if zoom is not None and (len(zoom) != 2 or not 1.0 <= zoom[0] <= zoom[1]):
            raise ValueError(f"data.zoom_pairs must be [lo, hi] with 1 <= lo <= hi, got {zoom}")
        if cfg.zoom_consistency < 0:
            raise ValueError(f"zoom_consistency must be >= 0, got {cfg.zoom_consistency}")
        if cfg.zoom_consistency > 0 and zoom is None:
            raise ValueError("zoom_consistency needs data.zoom_pairs (the zoomed twins it "
                             "compares)")
        return cfg


def _check_keys(cls: type, data: dict[str, Any], what: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{what}: unknown keys {unknown}; known: {sorted(known)}")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # bare strings: --set model=tiny-mirror


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as JSON when they parse)."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override '{item}' is not key=value")
        key, value = item.split("=", 1)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _parse_value(value)
    return data


def load_train_config(path: Optional[str], overrides: list[str]) -> TrainConfig:
    """Defaults <- config file (JSON or YAML) <- overrides."""
    data: dict[str, Any] = {}
    if path:
        text = Path(path).read_text()
        if path.endswith((".yaml", ".yml")):
            import yaml
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    base = TrainConfig().to_dict()
    merged = _deep_update(base, data)
    return TrainConfig.from_dict(apply_overrides(merged, overrides))


def _deep_update(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = value
    return out
