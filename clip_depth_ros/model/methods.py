"""Depth methods as a registry: one ``MethodSpec`` per method, looked up by the config's name.

A spec says how its method builds a model and what training touches: the head, an optional
adaptation of the image tower (before any trained weights are loaded), the method's trainable
parameter groups and the name of its training loss (``training.objectives`` maps that name to
the loss itself).  The torch-free half of a method -- its config section, the section's check
and defaults -- is its ``MethodSection`` in :mod:`clip_depth_ros.config`; every section there
has a spec here.  Code outside these two tables asks the registry instead of comparing
``config.method`` with a name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from torch import nn

from ..config import METHOD_SECTIONS, ConfigError, MethodSection, ModelConfig
from .depthclip import DepthCLIPHead
from .mirror import MirrorHead
from .moa import MoAHead, adapt_image_encoder, adapter_modules

if TYPE_CHECKING:
    from .depth_model import DepthModel

ParamGroups = dict[str, list[nn.Parameter]]
# (config, image encoder, text tower width) -> the head
HeadBuilder = Callable[[ModelConfig, nn.Module, int], nn.Module]
# (image encoder, config) -> None: modules go into the tower in place
EncoderAdapter = Callable[[nn.Module, ModelConfig], None]
# model -> {"head", "adapters", "backbone"} -> the parameters the method trains (LoRA aside)
GroupsFn = Callable[["DepthModel"], ParamGroups]


@dataclass(frozen=True)
class MethodSpec:
    """Everything that differs between depth methods once the config is read."""

    name: str
    build_head: HeadBuilder
    trainable_groups: GroupsFn
    loss: str  # the training loss's name, a key of training.objectives.LOSSES
    adapt_encoder: Optional[EncoderAdapter] = None

    @property
    def section(self) -> MethodSection:
        """The method's torch-free config part (field name, settings class, check)."""
        return METHOD_SECTIONS[self.name]

    @property
    def config_field(self) -> str:
        """The ModelConfig attribute that holds the method's settings."""
        return self.section.field

    def default_config(self) -> object:
        """The method's settings with every default (what a config without them gets)."""
        return self.section.config_class()


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method's spec; its name must have a config section and no spec yet."""
    if spec.name not in METHOD_SECTIONS:
        raise ConfigError(f"method '{spec.name}' has no config section in "
                          "clip_depth_ros.config.METHOD_SECTIONS")
    if spec.name in _REGISTRY:
        raise ConfigError(f"method '{spec.name}' is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_methods() -> list[str]:
    """Names of the registered methods, in registration order."""
    return list(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    """The spec of a registered method; ConfigError naming the valid ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown method '{name}'; registered methods: "
                          f"{', '.join(_REGISTRY)}") from None


# ---------------------------------------------------------------------------- depthclip
def _depthclip_head(config: ModelConfig, encoder: nn.Module, text_width: int) -> nn.Module:
    """Zero-shot DepthCLIP head (nothing trained)."""
    return DepthCLIPHead(config.depthclip, encoder.embed_dim)


def _no_groups(model: "DepthModel") -> ParamGroups:
    """DepthCLIP trains nothing of its own."""
    return {"head": [], "adapters": [], "backbone": []}


# ---------------------------------------------------------------------------- mirror
def _mirror_head(config: ModelConfig, encoder: nn.Module, text_width: int) -> nn.Module:
    """Mirror head: learnable prompt + FiLM decoder over the tower's taps."""
    return MirrorHead(config.mirror, encoder.tap_channels, encoder.embed_dim, text_width,
                      encoder.patch_size, config.max_depth, encoder.tap_strides,
                      focal_conditioning=config.focal_conditioning)


def _head_groups(model: "DepthModel") -> ParamGroups:
    """Mirror trains its head (prompt and decoder); both towers stay frozen."""
    return {"head": list(model.head.parameters()), "adapters": [], "backbone": []}


# ---------------------------------------------------------------------------- moa
def _moa_head(config: ModelConfig, encoder: nn.Module, text_width: int) -> nn.Module:
    """MoA head: scene context + dual bins/regression decoder."""
    return MoAHead(config.moa, encoder.tap_channels, encoder.embed_dim, encoder.patch_size,
                   config.min_depth, config.max_depth)


def _moa_adapt(encoder: nn.Module, config: ModelConfig) -> None:
    """Insert the Mixture-of-Adapters modules into the ViT tower."""
    adapt_image_encoder(encoder, config.moa)


def _moa_groups(model: "DepthModel") -> ParamGroups:
    """MoA trains its head, its adapters and the tower's last ``unfreeze_last_blocks`` blocks."""
    visual = model.image_encoder.visual
    adapters = [p for a in adapter_modules(visual) for p in a.parameters()]
    adapter_ids = {id(p) for p in adapters}
    resblocks = visual.transformer.resblocks
    n = model.config.moa.unfreeze_last_blocks
    if n > len(resblocks):
        raise ValueError(f"unfreeze_last_blocks {n} exceeds the tower's {len(resblocks)} "
                         "blocks")
    backbone = [p for block in list(resblocks)[len(resblocks) - n:]
                for p in block.parameters() if id(p) not in adapter_ids]
    return {"head": list(model.head.parameters()), "adapters": adapters, "backbone": backbone}


register(MethodSpec("depthclip", _depthclip_head, _no_groups, loss="silog"))
register(MethodSpec("mirror", _mirror_head, _head_groups, loss="silog"))
register(MethodSpec("moa", _moa_head, _moa_groups, loss="moa", adapt_encoder=_moa_adapt))
