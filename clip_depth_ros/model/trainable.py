"""Which parameters each method trains: parameter groups for the optimiser, requires_grad flags.

Each method's ``MethodSpec.trainable_groups`` says what it trains: DepthCLIP nothing; Mirror
its head (the mirror prompt and the decoder) with both CLIP towers frozen; MoA-DepthCLIP its
head, the adapters and the last ``unfreeze_last_blocks`` transformer blocks of the image
tower.  With a ``lora`` section, any method also trains the LoRA parameters (in the
"adapters" group, ahead of the method's own adapters).
"""
from __future__ import annotations

from torch import nn

from .depth_model import DepthModel
from .lora import lora_parameters
from .methods import get_method

GROUPS = ("head", "adapters", "backbone")


def trainable_parameter_groups(model: DepthModel,
                               apply: bool = False) -> dict[str, list[nn.Parameter]]:
    """{"head", "adapters", "backbone"} -> the parameters the model's method trains.

    With apply=True every other parameter of the model (text tower included) gets
    requires_grad False and these get True.
    """
    method = get_method(model.config.method).trainable_groups(model)
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in GROUPS}
    groups["head"] = list(method.get("head", []))
    groups["adapters"] = lora_parameters(model.image_encoder) + list(method.get("adapters", []))
    # a parameter trains in one group only: LoRA inside an unfrozen block is an adapter
    taken = {id(p) for p in groups["head"] + groups["adapters"]}
    groups["backbone"] = [p for p in method.get("backbone", []) if id(p) not in taken]
    if apply:
        model.requires_grad_(False)
        for params in groups.values():
            for p in params:
                p.requires_grad_(True)
    return groups
