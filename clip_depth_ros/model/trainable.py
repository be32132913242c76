"""Which parameters each method trains: parameter groups for the optimiser, requires_grad flags.

DepthCLIP trains nothing; Mirror trains its head (the mirror prompt and the decoder) with both
CLIP towers frozen; MoA-DepthCLIP trains its head, the adapters and the last
``unfreeze_last_blocks`` transformer blocks of the image tower.  With a ``lora`` section, any
method also trains the LoRA parameters (in the "adapters" group).
"""
from __future__ import annotations

from torch import nn

from .depth_model import DepthModel
from .lora import lora_parameters
from .moa import adapter_modules

GROUPS = ("head", "adapters", "backbone")


def trainable_parameter_groups(model: DepthModel,
                               apply: bool = False) -> dict[str, list[nn.Parameter]]:
    """{"head", "adapters", "backbone"} -> the parameters the model's method trains.

    With apply=True every other parameter of the model (text tower included) gets
    requires_grad False and these get True.
    """
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in GROUPS}
    method = model.config.method
    if method in ("mirror", "moa"):
        groups["head"] = list(model.head.parameters())
    groups["adapters"] = lora_parameters(model.image_encoder)
    if method == "moa":
        visual = model.image_encoder.visual
        groups["adapters"] += [p for a in adapter_modules(visual) for p in a.parameters()]
        adapter_ids = {id(p) for p in groups["adapters"]}
        resblocks = visual.transformer.resblocks
        n = model.config.moa.unfreeze_last_blocks
        if n > len(resblocks):
            raise ValueError(f"unfreeze_last_blocks {n} exceeds the tower's {len(resblocks)} "
                             "blocks")
        for block in list(resblocks)[len(resblocks) - n:]:
            groups["backbone"] += [p for p in block.parameters() if id(p) not in adapter_ids]
    elif method not in ("depthclip", "mirror"):
        raise ValueError(f"no trainable parameter groups for method '{method}'")
    if apply:
        model.requires_grad_(False)
        for params in groups.values():
            for p in params:
                p.requires_grad_(True)
    return groups
