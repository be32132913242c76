"""Typed model configuration: one JSON file per named model, open_clip style.

A model config says everything needed to rebuild a depth model and to run it: the open_clip
backbone, the method and its settings, the input size and normalisation, the depth range and
the canonical focal length.  It travels with every weights file and exported artifact.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
BACKBONE_CONFIG_DIR = MODEL_CONFIG_DIR / "backbones"
BUNDLED_WEIGHTS_DIR = Path(__file__).parent / "models"
# The model every tool runs when given none (node, predict, bag, demo): bundled trained weights.
DEFAULT_WEIGHTS = "demo-mirror"
BIN_SPACINGS = ("log", "linear")

# OpenAI CLIP normalisation, the default of every open_clip model we use.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def uint8_normalization(mean: Sequence[float], std: Sequence[float]
                        ) -> tuple["np.ndarray", "np.ndarray"]:
    """(scale, offset), float32 per channel, of ``(uint8 / 255 - mean) / std`` written as
    ``uint8 * scale + offset``: the one normalisation formula (see ModelConfig's method)."""
    import numpy as np
    std_arr = np.asarray(std, dtype=np.float32)
    scale = (1.0 / (255.0 * std_arr)).astype(np.float32)
    offset = (-np.asarray(mean, dtype=np.float32) / std_arr).astype(np.float32)
    return scale, offset


from .errors import ConfigError  # noqa: E402  (re-exported: the historic import path)


@dataclass
class BackboneConfig:
    """The open_clip model that provides image (and text) features."""

    name: str = "ViT-B-16"
    # open_clip pretrained tag ("openai", "laion2b_s34b_b88k", ...) or None for random init.
    pretrained: Optional[str] = None
    # Transformer blocks whose patch tokens the heads read (0-based, negative from the end).
    feature_layers: list[int] = field(default_factory=lambda: [-1])


@dataclass
class DepthCLIPConfig:
    """Zero-shot DepthCLIP: depth words, bin depths and softmax temperature."""

    prompt_template: str = "This object is {}"
    words: list[str] = field(default_factory=lambda: [
        "giant", "extremely close", "close", "not in distance", "a little remote", "far", "unseen"])
    bins_m: list[float] = field(default_factory=lambda: [1.00, 1.50, 2.00, 2.25, 2.50, 2.75, 3.00])
    temperature: float = 0.1


@dataclass
class MirrorConfig:
    """Mirror: a learnable static prompt for the frozen text encoder + a FiLM deconv decoder."""

    tokens: int = 64
    init_std: float = 0.02
    decoder_channels: list[int] = field(default_factory=lambda: [256, 128, 64, 32])
    # a per-pixel uncertainty output (the Laplace scale of the log-depth error), trained with
    # a Laplace NLL term; the node turns it into depth/confidence
    uncertainty: bool = False


@dataclass
class MoAConfig:
    """MoA-DepthCLIP: Mixture-of-Adapters in the image tower, scene context, dual bins+regression.

    The paper's sizes are for ViT-B/32 (width 768).  With ``reference_width`` set, expert_hidden
    and gate_hidden are read as sizes for a tower of that width and scaled linearly to the
    actual tower width (768 -> unchanged); null uses them as given.  The feature taps are
    ``backbone.feature_layers``.
    """

    adapter_blocks: list[int] = field(default_factory=lambda: [2, 5, 8, 11])
    n_experts: int = 4
    expert_hidden: int = 64
    gate_hidden: int = 128
    gate_temperature: float = 2.0
    reference_width: Optional[int] = 768
    # Trailing transformer blocks the trainer unfreezes (adapters and head are always trained).
    unfreeze_last_blocks: int = 4
    scene_prompts: list[str] = field(default_factory=lambda: [
        f"a photo of a {scene}" for scene in (
            "kitchen", "bedroom", "living room", "office", "bathroom", "corridor", "classroom",
            "street")])
    n_bins: int = 128
    bin_spacing: str = "log"  # bin centres between min_depth and max_depth: "log" or "linear"
    decoder_channels: list[int] = field(default_factory=lambda: [256, 128, 64, 32])


def _check_depthclip(name: str, depthclip: DepthCLIPConfig) -> None:
    """Reject DepthCLIP settings whose words and bins do not pair up."""
    if len(depthclip.words) != len(depthclip.bins_m):
        raise ConfigError(f"model '{name}': depthclip needs one bin per word")


def _check_moa(name: str, moa: MoAConfig) -> None:
    """Reject MoA settings that would only fail (or silently degrade) once the model is built."""
    if min(moa.n_experts, moa.expert_hidden, moa.gate_hidden) < 1 or moa.n_bins < 2 or moa.gate_temperature <= 0 or moa.unfreeze_last_blocks < 0:
        raise ConfigError(f"model '{name}': moa needs n_experts, expert_hidden, gate_hidden >= 1, "
                          "n_bins >= 2, gate_temperature > 0 and unfreeze_last_blocks >= 0")
    if moa.reference_width is not None and moa.reference_width < 1:
        raise ConfigError(f"model '{name}': moa reference_width must be >= 1 or null")
    if moa.bin_spacing not in BIN_SPACINGS:
        raise ConfigError(f"model '{name}': moa bin_spacing '{moa.bin_spacing}' is not one of "
                          f"{', '.join(BIN_SPACINGS)}")
    if not moa.scene_prompts or not moa.decoder_channels:
        raise ConfigError(f"model '{name}': moa needs scene_prompts and decoder_channels")


@dataclass(frozen=True)
class MethodSection:
    """The torch-free part of a method: its config section, that section's check, its traits.

    ``name`` is also the ModelConfig field that holds the section; ``config_class`` builds it
    (its defaults fill a missing section of the model's own method).  The rest of the method
    (head, encoder adaptation, trainable groups, loss) is its ``MethodSpec`` in
    :mod:`clip_depth_ros.model.methods`, which registers one spec per name listed here.
    """

    name: str
    config_class: type
    check: Optional[Callable[[str, Any], None]] = None  # (model name, section) -> raise
    focal_conditioning: bool = False  # its decoder can read log(f_px / canonical f)
    # whether a model of this method (with this section) outputs a per-pixel confidence
    confidence: Callable[[Any], bool] = lambda section: False

    @property
    def field(self) -> str:
        """The ModelConfig attribute that holds this method's section."""
        return self.name


METHOD_SECTIONS: dict[str, MethodSection] = {section.name: section for section in (
    MethodSection("depthclip", DepthCLIPConfig, _check_depthclip,
                  confidence=lambda section: True),  # from its bin distribution
    MethodSection("mirror", MirrorConfig, focal_conditioning=True,
                  confidence=lambda section: bool(section.uncertainty)),
    MethodSection("moa", MoAConfig, _check_moa, confidence=lambda section: True),
)}
METHODS = tuple(METHOD_SECTIONS)


@dataclass
class LoRAConfig:
    """LoRA on the image tower through ``peft``, inserted after the backbone weights are loaded.

    ``targets`` name layers inside the tower's blocks (suffixes of module names):
    "attn.in_proj" -- q/k/v of open_clip's nn.MultiheadAttention (its raw in_proj_weight, via
    peft target_parameters; no dropout there); "attn" -- peft's MultiheadAttention layer, which
    adapts in_proj and out_proj together; "mlp.c_fc" / "mlp.c_proj" -- the MLP Linears; or any
    Linear's name suffix in another tower (e.g. "token_mixer.qkv" in FastViT).  Scale alpha/rank.
    """

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["attn.in_proj"])


@dataclass
class ModelConfig:
    """Everything that defines one depth model and its input/output contract."""

    name: str
    method: str
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    input_size: list[int] = field(default_factory=lambda: [224, 224])  # [height, width]
    mean: list[float] = field(default_factory=lambda: list(CLIP_MEAN))
    std: list[float] = field(default_factory=lambda: list(CLIP_STD))
    min_depth: float = 1e-3
    max_depth: float = 10.0
    # Focal length (px, at the model input size) of the canonical camera depth is learnt in.
    canonical_focal_px: float = 181.6
    camera_aware_scale: bool = False
    # Camera-aware models only: the decoder is also told log(f_px / canonical_focal_px) (FiLM),
    # so what it cannot see in the image (how long the lens is) does not pull its canonical
    # depth towards the training set's mean (mirror method; the torch backend).
    focal_conditioning: bool = False
    depthclip: Optional[DepthCLIPConfig] = None
    mirror: Optional[MirrorConfig] = None
    moa: Optional[MoAConfig] = None
    # LoRA adaptation of the image tower (any method); None: no LoRA.
    lora: Optional[LoRAConfig] = None
    description: str = ""

    def __post_init__(self) -> None:
        section = METHOD_SECTIONS.get(self.method)
        if section is None:
            raise ConfigError(f"model '{self.name}': unknown method '{self.method}'; "
                              f"expected one of {', '.join(METHODS)}")
        if getattr(self, section.field) is None:
            setattr(self, section.field, section.config_class())
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise ConfigError(f"model '{self.name}': input_size must be [height, width] > 0, "
                              f"got {self.input_size}")
        if not 0 < self.min_depth < self.max_depth:
            raise ConfigError(f"model '{self.name}': need 0 < min_depth < max_depth, "
                              f"got {self.min_depth}..{self.max_depth}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"model '{self.name}': mean/std must have 3 entries, std > 0")
        if self.canonical_focal_px <= 0:
            raise ConfigError(f"model '{self.name}': canonical_focal_px must be > 0")
        if self.focal_conditioning and not (self.camera_aware_scale
                                            and section.focal_conditioning):
            focal = " or ".join(s.name for s in METHOD_SECTIONS.values() if s.focal_conditioning)
            raise ConfigError(f"model '{self.name}': focal_conditioning needs camera_aware_scale "
                              f"and the {focal} method")
        for other in METHOD_SECTIONS.values():  # every section given, not only the method's
            settings = getattr(self, other.field)
            if settings is not None and other.check is not None:
                other.check(self.name, settings)
        if self.lora is not None:
            _check_lora(self.name, self.lora)

    @property
    def has_confidence(self) -> bool:
        """Whether the model outputs a per-pixel confidence (bins or an uncertainty head)."""
        section = METHOD_SECTIONS[self.method]
        return section.confidence(getattr(self, section.field))

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        return int(self.input_size[0]), int(self.input_size[1])

    def uint8_normalization(self) -> tuple["np.ndarray", "np.ndarray"]:
        """(scale, offset), float32 per RGB channel: normalised = uint8 * scale + offset.

        The model's preprocessing travels with it (as open_clip's does); every path that feeds
        the network (numpy, torch on the device, training, calibration) derives from this.
        """
        return uint8_normalization(self.mean, self.std)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of this config."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """JSON text of this config."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build a config from a dict, rejecting unknown keys with a clear message."""
        data = dict(data)
        _reject_unknown(cls, data, "model config")
        nested = {"backbone": BackboneConfig,
                  **{s.field: s.config_class for s in METHOD_SECTIONS.values()},
                  "lora": LoRAConfig}
        for key, sub_cls in nested.items():
            if isinstance(data.get(key), dict):
                _reject_unknown(sub_cls, data[key], f"'{key}' section")
                data[key] = sub_cls(**data[key])
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"model config is incomplete: {exc}") from None


def _check_lora(name: str, lora: LoRAConfig) -> None:
    """Reject LoRA settings peft would refuse late or, worse, accept and silently ignore."""
    if lora.rank < 1 or lora.alpha <= 0 or not 0 <= lora.dropout < 1 or not lora.targets:
        raise ConfigError(f"model '{name}': lora needs rank >= 1, alpha > 0, 0 <= dropout < 1 "
                          "and at least one target")
    targets = set(lora.targets)
    if "attn.out_proj" in targets:
        # nn.MultiheadAttention never calls out_proj.forward: a LoRA there would do nothing
        raise ConfigError(f"model '{name}': lora target 'attn.out_proj' would be ignored by "
                          "nn.MultiheadAttention; use 'attn' (in_proj and out_proj together)")
    if {"attn", "attn.in_proj"} <= targets:
        raise ConfigError(f"model '{name}': lora targets 'attn' and 'attn.in_proj' overlap "
                          "('attn' already adapts in_proj)")
    if "attn.in_proj" in targets and lora.dropout > 0:
        raise ConfigError(f"model '{name}': lora target 'attn.in_proj' (a raw parameter) "
                          "supports no dropout in peft; set dropout 0 or target 'attn'")


def _reject_unknown(cls: type, data: dict[str, Any], what: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{what}: unknown keys {unknown}; known keys are {sorted(known)}")


def list_models() -> list[str]:
    """Names of the bundled model configs."""
    return sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))


# bundled weights that were shipped once and retired: name -> what to use instead
RETIRED_WEIGHTS = {
    "demo-mirror-camaware": "retired: demo-mirror is camera-aware itself since it was retrained "
                            "on the varied synthetic worlds (issue 14); use weights "
                            "demo-mirror",
}


def resolve_weights(name_or_path: str) -> str:
    """A weights path as given, or the bundled weights of that name (e.g. "demo-mirror")."""
    if not name_or_path or Path(name_or_path).expanduser().exists():
        return str(Path(name_or_path).expanduser()) if name_or_path else name_or_path
    bundled = BUNDLED_WEIGHTS_DIR / f"{name_or_path}.safetensors"
    if not bundled.is_file() and name_or_path in RETIRED_WEIGHTS:
        raise ConfigError(f"weights '{name_or_path}' were {RETIRED_WEIGHTS[name_or_path]}")
    return str(bundled) if bundled.is_file() else name_or_path


def model_or_default(model: Optional[str],
                     weights: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """(model, weights) as given, or the bundled :data:`DEFAULT_WEIGHTS` when neither is."""
    if not model and not weights:
        return None, DEFAULT_WEIGHTS
    return model or None, weights or None


def list_bundled_weights() -> list[str]:
    """Names of the weights shipped inside the package."""
    return sorted(p.stem for p in BUNDLED_WEIGHTS_DIR.glob("*.safetensors"))


def get_model_config(name_or_path: str) -> ModelConfig:
    """Load a bundled model config by name, or any model config JSON file by path."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = MODEL_CONFIG_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise ConfigError(f"unknown model '{name_or_path}'; bundled models: "
                              f"{', '.join(list_models())} (or pass a path to a .json config)")
    elif not path.is_file():
        raise ConfigError(f"model config file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read model config {path}: {exc}") from None
    return ModelConfig.from_dict(data)


def add_model_arguments(parser: Any) -> None:
    """--model, --weights, --backbone-weights, --device and --precision, as every tool names
    and defaults them (the node's parameters of the same names)."""
    parser.add_argument("--model", default=None,
                        help="bundled model name (see `clip-depth models`) or a model config "
                             "JSON; a bundled name with bundled weights uses them (default: "
                             f"the config recorded with --weights, or {DEFAULT_WEIGHTS})")
    parser.add_argument("--weights", default=None,
                        help="trained parts: a .safetensors file (+ .json sidecar) or the name "
                             f"of bundled weights (default: {DEFAULT_WEIGHTS} when no --model)")
    parser.add_argument("--backbone-weights", default=None,
                        help="open_clip pretrained tag, local CLIP weights file, or 'random' "
                             "(default: what the weights or the model config record)")
    parser.add_argument("--device", default="auto",
                        help="torch device: auto (CUDA when present, as the node), cpu, cuda "
                             "or cuda:N (default: %(default)s)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="torch precision; auto = as the node: bf16 on a CPU with "
                             "AVX512-BF16 or AMX (1.6x faster; the bundled model's held-out "
                             "d1 and AbsRel within 0.001 of fp32), else fp32 "
                             "(default: %(default)s)")
