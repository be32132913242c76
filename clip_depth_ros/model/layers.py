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


def _fused_conv_op() -> Optional[object]:
    """oneDNN's convolution with a fused post-op, the op torch.compile's CPU backend emits
    (None in a torch built without it)."""
    try:
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None


_FUSED_CONV = _fused_conv_op()


def _mkldnn_bf16_supported() -> bool:
    """Whether oneDNN runs bf16 on this CPU (the fused op raises where it does not, while
    the plain convolution falls back to a slow kernel)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


_BF16_FUSABLE = _FUSED_CONV is not None and _mkldnn_bf16_supported()


def compiling() -> bool:
    """True while torch.compile traces (False on a torch without ``torch.compiler``)."""
    check = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(check()) if check is not None else False


def _fusion_allowed(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the fused convolution may run: a CPU tensor at inference (no autograd: the
    fused op has none), oneDNN on (bf16 only where oneDNN computes it), not while tracing for
    ONNX or compiling (aten ops there)."""
    return (_FUSED_CONV is not None and x.device.type == "cpu"
            and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _BF16_FUSABLE))
            and weight.dtype == x.dtype and not torch.is_grad_enabled()
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and not torch.jit.is_tracing() and not compiling())


def conv_gelu(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``gelu(conv(x))`` (exact erf GELU).  On a CPU at inference it is one oneDNN
    convolution with the GELU as a post-op, the op torch.compile's CPU backend fuses into:
    the GELU reads the convolution's float32 accumulators before they are rounded to the
    model's precision (as close to float32's result as the unfused bf16 path, or closer), and
    the activation is not written and read again (the demo model's last decoder convolution,
    32 channels at 256x192 in bf16, alone: 2.8 -> 1.4 ms on 2 cores; BENCHMARKS.md has it in
    the model).  Elsewhere (autograd, CUDA, ONNX export): the two aten ops."""
    if (isinstance(conv.padding, tuple) and conv.padding_mode == "zeros"
            and _fusion_allowed(x, conv.weight)):
        return _FUSED_CONV(x, conv.weight, conv.bias, list(conv.padding), list(conv.stride),
                           list(conv.dilation), conv.groups, "gelu", [None], "none")
    return F.gelu(conv(x))
