"""Layers shared by the depth heads.

The output layers run in float32 whatever precision the rest of the model runs in: depth
rounded to bf16 (8 significant bits) comes in steps of 0.4% (1.6 cm at 3 m, 3 cm at 6 m), so
a flat floor would show as terraces in `depth` and `points`.  Their inputs stay in the
model's precision; only the last convolution and what follows it are float32.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def conv_fp32(x: torch.Tensor, conv: nn.Conv2d, weight: Optional[torch.Tensor] = None,
              bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``conv(x)`` computed in float32 (``weight`` / ``bias`` replace the module's, e.g. two
    convolutions' weights stacked into one); a float32 model pays nothing extra."""
    weight = conv.weight if weight is None else weight
    bias = conv.bias if bias is None else bias
    return F.conv2d(x.float(), weight.float(), None if bias is None else bias.float(),
                    conv.stride, conv.padding, conv.dilation, conv.groups)
