"""LoRA on the CLIP image tower through ``peft`` (LLM-MDE's adaptation, METHODS.md section 4).

open_clip's ViT attention is ``nn.MultiheadAttention``, whose q/k/v projection is a raw
``in_proj_weight`` Parameter, not a Linear.  The target "attn.in_proj" reaches it through
peft's ``target_parameters`` (a parametrisation: W + B A, q/k/v jointly); "attn" uses peft's
MultiheadAttention layer (in_proj and out_proj together); other targets are module-name suffixes
of Linears ("mlp.c_fc", "mlp.c_proj", FastViT's "token_mixer.qkv", ...).

LoRA goes in after the backbone weights are loaded (CLIP files keep their original keys) and
before trained parts are loaded; saved image_encoder weights hold the unmerged LoRA keys.
``merge_lora`` folds the adapters into the base weights with peft's ``merge_and_unload``,
leaving plain torch modules (inference, ONNX export).  peft is imported only here.
"""
from __future__ import annotations

from torch import nn

from ..config import ConfigError, LoRAConfig

ADAPTER_NAME = "default"
# our target name -> the peft target_parameters entry for a raw Parameter
_PARAMETER_TARGETS = {"attn.in_proj": "attn.in_proj_weight"}
_TUNER = "_lora_tuner"


def peft_lora_config(config: LoRAConfig):
    """The ``peft.LoraConfig`` for our LoRA section."""
    try:
        from peft import LoraConfig
    except ImportError as exc:
        raise ConfigError("LoRA needs the 'peft' package (pip install peft)") from exc
    params = [_PARAMETER_TARGETS[t] for t in config.targets if t in _PARAMETER_TARGETS]
    modules = [t for t in config.targets if t not in _PARAMETER_TARGETS]
    return LoraConfig(r=int(config.rank), lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=modules, target_parameters=params or None, bias="none")


def apply_lora(encoder: nn.Module, config: LoRAConfig) -> list[nn.Parameter]:
    """Insert LoRA into ``encoder.visual`` in place; returns the LoRA parameters.

    B starts at zero (peft's default), so the adapted tower starts as the pretrained one.
    """
    if _TUNER in encoder.__dict__:
        raise ValueError("the image tower already has LoRA; build a fresh backbone")
    from peft.tuners.lora import LoraModel
    try:
        tuner = LoraModel(encoder.visual, peft_lora_config(config), ADAPTER_NAME)
    except ValueError as exc:  # no matching module / unsupported layer type
        raise ConfigError(f"lora targets {config.targets} do not fit the "
                          f"{type(encoder.visual).__name__} tower: {exc}") from None
    # Kept outside the module tree (it wraps the same modules: no duplicate state keys) for
    # merge_and_unload; deepcopy / pickle carry it along with the encoder.
    encoder.__dict__[_TUNER] = tuner
    return lora_parameters(encoder)


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The LoRA parameters (peft's lora_A / lora_B ...) inside a module, in module order."""
    return [p for name, p in module.named_parameters() if ".lora_" in f".{name}"]


def has_lora(module: nn.Module) -> bool:
    """Whether any peft layer is left inside the module."""
    return any(type(m).__module__.startswith("peft.") for m in module.modules())


def merge_lora(encoder: nn.Module) -> bool:
    """Fold the LoRA weights into the base weights and remove every peft layer, in place.

    Returns False if the encoder had no LoRA.  The merged tower computes the same function with
    plain torch modules under the original CLIP keys.
    """
    tuner = encoder.__dict__.pop(_TUNER, None)
    if tuner is None:
        return False
    # merge_and_unload swaps the peft layers for their (merged) base layers inside the tower
    merged = tuner.merge_and_unload()
    if merged is not encoder.visual:
        encoder.visual = merged
    return True
