"""Training configuration: a JSON/YAML file plus ``--set key=value`` overrides.

One source of truth: the dataclasses below (type, default and a one-line description per
key); a config file only lists what differs.  Every value, from a file or from ``--set``, is
checked against its key's type before a run creates anything, and a wrong one is a
:class:`~clip_depth_ros.errors.ConfigError` naming the key, the value and what it accepts.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from clip_depth_ros.errors import ConfigError
from clip_depth_ros.synthetic.worlds import WORLD_FAMILIES

DATA_KINDS = ("synthetic-worlds", "synthetic-indoor", "synthetic-street", "nyu", "nyu-mat", "kitti", "folder")
DATA_KIND_HELP = {
    "synthetic-worlds": "varied rendered worlds: rooms, corridors, L-shapes, stairs, streets "
                        "(hall: the held-out family), random lenses, lights and sensors",
    "synthetic-indoor": "procedurally rendered rooms (no files needed)",
    "synthetic-street": "procedurally rendered streets (no files needed)",
    "nyu": "NYU Depth v2 image/depth folders + a list file",
    "nyu-mat": "NYU Depth v2 labeled .mat (+ splits.mat)",
    "kitti": "KITTI Eigen split: image root, annotated depth root, list file",
    "folder": "a folder of RGB images and .npy/.png depth maps",
}
LOSS_KINDS = ("auto", "silog", "moa")
DEVICES = ("auto", "cpu", "cuda")
EVAL_CROPS = ("none", "eigen", "garg")
HIGHER_IS_BETTER = ("d1", "d2", "d3")
BEST_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog") + HIGHER_IS_BETTER


def _key(default: Any, doc: str) -> Any:
    """A config key: its default and its one-line description (shown by ``--help``)."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclass
class DataConfig:
    """Where samples come from and how they are augmented."""

    kind: str = _key("synthetic-indoor", "data kind: " + " | ".join(DATA_KINDS))
    root: str = _key("", "image root (nyu, kitti, folder)")
    depth_root: str = _key("", "kitti: annotated depth root")
    train_list: str = _key("", "training list file (nyu, kitti)")
    val_list: str = _key("", "validation list file (nyu, kitti)")
    mat_path: str = _key("", "nyu-mat: nyu_depth_v2_labeled.mat")
    splits_mat: str = _key("", "nyu-mat: splits.mat (testNdxs / trainNdxs)")
    train_samples: int = _key(2000, "synthetic: number of training images")
    val_samples: int = _key(64, "synthetic: number of validation images")
    render_size: list[int] = _key([240, 320], "synthetic: rendered [height, width]")
    focal_range: Optional[list[float]] = _key(
        None, "synthetic: [lo, hi] px, a random focal length per image (null = the kind's)")
    texture_scale_m: Optional[float] = _key(
        None, "synthetic indoor: every surface pattern this size in m (null = random)")
    zoom_pairs: Optional[list[float]] = _key(
        None, "synthetic: [lo, hi], each image also seen through a lens lo-hi times longer "
              "(for zoom_consistency)")
    families: Optional[list[str]] = _key(
        None, "synthetic-worlds: world families (null = every training family; 'hall' is the "
              "held-out one)")
    seed: int = _key(0, "scene seed (validation scenes use their own stream)")
    flip: bool = _key(True, "random horizontal flip")
    rotate_deg: float = _key(0.0, "random rotation up to this many degrees (0 = off)")
    color_jitter: float = _key(0.2, "brightness/contrast/saturation jitter (0 = off)")
    random_crop: bool = _key(True, "random crop to the model's aspect before resizing")
    eval_crop: str = _key("none", "evaluation crop: " + " | ".join(EVAL_CROPS))
    workers: int = _key(2, "DataLoader worker processes")


@dataclass
class TrainConfig:
    """Everything one training run needs; written next to its checkpoints."""

    model: str = _key("tiny-mirror", "model name or config JSON path")
    backbone_weights: Optional[str] = _key(
        None, "open_clip tag, local file, 'random', or null = the model config's")
    init_weights: Optional[str] = _key(
        None, "trained parts to start from (a .safetensors, e.g. CLIPSelf output)")
    train_backbone: bool = _key(False, "unfreeze the whole image encoder (training from scratch)")
    epochs: int = _key(10, "passes over the training set")
    max_steps: int = _key(0, "stop after this many optimizer steps (0 = epochs decide)")
    stop_at: int = _key(0, "stop at this step, keeping the learning-rate schedule of "
                           "max_steps/epochs (a stage cut short; 0 = run to the end)")
    batch_size: int = _key(8, "global batch over all processes")
    lr: float = _key(1e-4, "learning rate of the backbone / adapters")
    head_lr: float = _key(1e-3, "learning rate of the head (decoder, mirror, bins)")
    weight_decay: float = _key(1e-4, "AdamW weight decay")
    warmup_steps: int = _key(100, "linear warm-up steps before the cosine decay")
    grad_clip: float = _key(1.0, "gradient norm clip (0 = off)")
    loss: str = _key("auto", "loss: " + " | ".join(LOSS_KINDS))
    gradient_matching: float = _key(0.0, "weight of the gradient matching term")
    # 0.85 (BTS) nearly ignores a per-image scale error; camera-aware training must learn
    # exactly that scale, so it uses 0.5 (Depth Anything V2's metric value)
    silog_lambda: float = _key(0.85, "SiLog variance focus (0.5 for camera-aware models)")
    zoom_consistency: float = _key(
        0.0, "camera-aware: weight of the zoom-consistency loss (needs data.zoom_pairs)")
    amp: bool = _key(True, "bf16 autocast on CUDA (ignored on the CPU)")
    device: str = _key("auto", "device: " + " | ".join(DEVICES))
    seed: int = _key(0, "random seed of the run")
    out_dir: str = _key("runs/exp", "output folder (checkpoints, best.safetensors, logs)")
    log_every: int = _key(10, "TensorBoard scalars every N steps")
    ckpt_every: int = _key(200, "checkpoint every N steps (and at every epoch end)")
    eval_every: int = _key(1, "validate every N epochs (and at the end)")
    best_metric: str = _key("abs_rel", "metric that picks best.safetensors: "
                            + " | ".join(BEST_METRICS))
    data: DataConfig = dataclasses.field(default_factory=DataConfig,
                                         metadata={"doc": "data section"})

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from a dict, checking every key and value against the dataclasses."""
        values = _typed(cls, data, "")
        if "data" in values:
            values["data"] = DataConfig(**_typed(DataConfig, values["data"], "data."))
        cfg = cls(**values)
        _check_ranges(cfg)
        return cfg


# ---------------------------------------------------------------------------- types
_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(hint: Any) -> tuple[Any, bool]:
    """(inner type, whether null is allowed)."""
    if typing.get_origin(hint) is Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def type_name(hint: Any) -> str:
    """How ``--help`` and errors spell a key's type (int, float, bool, str, [int, ...])."""
    inner, nullable = _optional(hint)
    if typing.get_origin(inner) is list:
        name = f"[{typing.get_args(inner)[0].__name__}, ...]"
    else:
        name = getattr(inner, "__name__", str(inner))
    return name + (" or null" if nullable else "")


def _accepts(hint: Any) -> str:
    """What a key accepts, in words, for error messages."""
    inner, nullable = _optional(hint)
    if typing.get_origin(inner) is list:
        words = ("a list of integers like [240, 320]" if typing.get_args(inner)[0] is int
                 else "a list of numbers like [180, 560]")
    else:
        words = _TYPE_WORDS.get(inner, str(inner))
    return words + (" or null" if nullable else "")


def _coerce(value: Any, hint: Any) -> Any:
    """value as the type ``hint`` names; raises TypeError when it is not one."""
    inner, nullable = _optional(hint)
    if value is None:
        if nullable:
            return None
        raise TypeError
    if typing.get_origin(inner) is list:
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return [_coerce(v, typing.get_args(inner)[0]) for v in value]
    if inner is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if inner is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise TypeError
        return int(value)
    if inner is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        return float(value)
    if inner is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    raise TypeError


def _typed(cls: type, data: Any, prefix: str) -> dict[str, Any]:
    """``data`` with every key known to ``cls`` and every value of its key's type."""
    section = prefix.rstrip(".") or "train config"
    if not isinstance(data, dict):
        raise ConfigError(f"{section} must be a mapping of keys to values, not {data!r}")
    hints = _hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
                          f"keys: {', '.join(prefix + k for k in hints)}")
    out = {}
    for key, value in data.items():
        if hints[key] is DataConfig:
            out[key] = value
            continue
        try:
            out[key] = _coerce(value, hints[key])
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{prefix}{key} takes {_accepts(hints[key])}, not "
                              f"{json.dumps(value)}") from None
    return out


def _check_ranges(cfg: TrainConfig) -> None:
    """Values of the right type that still make no run (checked before anything is made)."""
    d = cfg.data
    _one_of("data.kind", d.kind, DATA_KINDS)
    _one_of("data.eval_crop", d.eval_crop, EVAL_CROPS)
    _one_of("loss", cfg.loss, LOSS_KINDS)
    _one_of("device", cfg.device, DEVICES)
    _one_of("best_metric", cfg.best_metric, BEST_METRICS)
    for key in ("batch_size", "epochs", "log_every", "ckpt_every", "eval_every"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key} must be >= 1, not {getattr(cfg, key)}")
    for key in ("max_steps", "stop_at", "warmup_steps", "lr", "head_lr", "weight_decay",
                "grad_clip", "gradient_matching", "seed"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{key} must be >= 0, not {getattr(cfg, key)}")
    for key in ("train_samples", "val_samples", "workers", "seed"):
        if getattr(d, key) < 0:
            raise ConfigError(f"data.{key} must be >= 0, not {getattr(d, key)}")
    if len(d.render_size) != 2 or min(d.render_size) < 1:
        raise ConfigError(f"data.render_size must be [height, width] > 0, not {d.render_size}")
    if d.focal_range is not None and (len(d.focal_range) != 2
                                      or not 0 < d.focal_range[0] <= d.focal_range[1]):
        raise ConfigError(f"data.focal_range must be [lo, hi] px with 0 < lo <= hi, not "
                          f"{d.focal_range}")
    if d.families is not None:
        if d.kind != "synthetic-worlds" or not d.families:
            raise ConfigError("data.families chooses world families of data kind "
                              "synthetic-worlds (a non-empty list)")
        for family in d.families:
            _one_of("data.families", family, WORLD_FAMILIES)
    if d.texture_scale_m is not None and d.texture_scale_m <= 0:
        raise ConfigError(f"data.texture_scale_m must be > 0 m or null, not {d.texture_scale_m}")
    zoom = d.zoom_pairs
    if zoom is not None and (len(zoom) != 2 or not 1.0 <= zoom[0] <= zoom[1]):
        raise ConfigError(f"data.zoom_pairs must be [lo, hi] with 1 <= lo <= hi, got {zoom}")
    if cfg.zoom_consistency < 0:
        raise ConfigError(f"zoom_consistency must be >= 0, got {cfg.zoom_consistency}")
    if cfg.zoom_consistency > 0 and zoom is None:
        raise ConfigError("zoom_consistency needs data.zoom_pairs (the zoomed twins it compares)")


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}; not '{value}'")


# ---------------------------------------------------------------------------- overrides
def _field_hint(key: str) -> Any:
    """The type of a dotted key (``max_steps``, ``data.render_size``), or ConfigError."""
    parts = key.split(".")
    cls: type = TrainConfig
    for depth, part in enumerate(parts):
        hints = _hints(cls)
        where = ".".join(parts[:depth]) + "." if depth else ""
        if part not in hints:
            close = difflib.get_close_matches(key, all_keys(), n=1)
            hint_text = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"--set {key}: unknown key '{where}{part}'; {hint_text}keys: "
                              f"{', '.join(where + k for k in hints)}")
        hint = hints[part]
        if hint is DataConfig:
            if depth == len(parts) - 1:
                raise ConfigError(f"--set {key}: '{key}' is a section; set its keys "
                                  f"(data.kind=..., see --help)")
            cls = hint
        elif depth < len(parts) - 1:
            raise ConfigError(f"--set {key}: '{where}{part}' has no sub-keys")
    return hint


def all_keys() -> list[str]:
    """Every dotted config key (model, ..., data.kind, ...)."""
    top = [k for k, h in _hints(TrainConfig).items() if h is not DataConfig]
    return top + ["data." + k for k in _hints(DataConfig)]


def parse_override(item: str) -> tuple[list[str], Any]:
    """(key path, typed value) of one ``key=value``; a string key takes the text as is."""
    if "=" not in item:
        raise ConfigError(f"--set '{item}' is not KEY=VALUE (see --help for the keys)")
    key, text = item.split("=", 1)
    key = key.strip()
    hint = _field_hint(key)
    inner, nullable = _optional(hint)
    if inner is str:  # bare strings: --set model=tiny-mirror; --set init_weights=null
        return key.split("."), None if nullable and text in ("null", "None", "") else text
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError:  # YAML's flow style as the config files use it: [hall, room]
        import yaml
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        if isinstance(value, str) or value is None:
            value = {"true": True, "false": False, "none": None}.get(text.strip().lower(), text)
    try:
        return key.split("."), _coerce(value, hint)
    except (TypeError, ValueError, OverflowError):
        default = _default_of(key)
        raise ConfigError(f"--set {key}={text}: {key} takes {_accepts(hint)}, not '{text}' "
                          f"(default {json.dumps(default)})") from None


def _default_of(key: str) -> Any:
    node: Any = TrainConfig().to_dict()
    for part in key.split("."):
        node = node[part]
    return node


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides, each checked against its key's type."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        parts, value = parse_override(item)
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return data


def load_train_config(path: Optional[str], overrides: list[str]) -> TrainConfig:
    """Defaults <- config file (JSON or YAML) <- overrides, all checked; creates nothing."""
    data: dict[str, Any] = {}
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read train config {path}: {exc.strerror or exc}") from None
        try:
            if path.endswith((".yaml", ".yml")):
                import yaml
                data = yaml.safe_load(text) or {}
            else:
                data = json.loads(text)
        except Exception as exc:  # yaml.YAMLError / JSONDecodeError: a malformed file
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"train config {path} is not valid "
                              f"{'YAML' if path.endswith(('.yaml', '.yml')) else 'JSON'}: "
                              f"{first}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"train config {path} must be a mapping of keys to values")
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


# ---------------------------------------------------------------------------- help
def config_keys_help() -> str:
    """Every config key with its type, default and description (for ``--help``)."""
    rows = []
    defaults = TrainConfig().to_dict()
    for cls, prefix, values in ((TrainConfig, "", defaults),
                                (DataConfig, "data.", defaults["data"])):
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            if hints[f.name] is DataConfig:
                continue
            rows.append((prefix + f.name, type_name(hints[f.name]),
                         json.dumps(values[f.name]), f.metadata.get("doc", "")))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"  {k:<{width[0]}}  {t:<{width[1]}}  {d:<{width[2]}}  {doc}"
                     for k, t, d, doc in rows)
