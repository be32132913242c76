"""DepthCLIP (Zhang et al., ACM MM 2022): zero-shot depth from patch-to-prompt similarity.

Patch tokens projected into the joint space are compared with the normalised embeddings of
"This object is {word}" for the depth words; a softmax over the words (temperature T)
weights the bin depths.  Nothing here is trained.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DepthCLIPConfig
from .backbone import ImageEncoder, TextEncoder


class DepthCLIPHead(nn.Module):
    """Bin-weighted depth from cosine similarity of dense features and depth-word prompts."""

    learns_text = False

    def __init__(self, config: DepthCLIPConfig, embed_dim: int):
        super().__init__()
        self.config = config
        self.temperature = float(config.temperature)
        self.register_buffer("bins_m", torch.tensor(config.bins_m, dtype=torch.float32))
        # Filled from the text encoder once (model build / export), never per frame.
        self.register_buffer("text_embedding", torch.zeros(len(config.words), embed_dim))

    def prompts(self) -> list[str]:
        """The prompt strings, one per depth bin."""
        return [self.config.prompt_template.format(w) for w in self.config.words]

    def compute_text_embedding(self, text: TextEncoder) -> torch.Tensor:
        """Normalised prompt embeddings (n_bins, D)."""
        return text.encode_prompts(self.prompts())

    def bin_probabilities(self, encoder: ImageEncoder, image: torch.Tensor,
                          text_embedding: torch.Tensor) -> torch.Tensor:
        """Softmax over the depth bins per patch, (B, n_bins, h, w) at patch resolution.

        Depth is linear in these (``forward``), which is what bin calibration fits against.
        """
        tokens = encoder.feature_maps(image, normalize=True)[-1]
        dense = F.normalize(encoder.project(tokens), dim=1)
        logits = torch.einsum("bdhw,kd->bkhw", dense, text_embedding.to(dense.dtype))
        return torch.softmax(logits / self.temperature, dim=1)

    def forward(self, encoder: ImageEncoder, image: torch.Tensor,
                text_embedding: torch.Tensor) -> torch.Tensor:
        """Depth (B, 1, h, w) at patch resolution, in the bins' units (metres)."""
        return self.forward_with_aux(encoder, image, text_embedding)[0]

    def forward_with_aux(self, encoder: ImageEncoder, image: torch.Tensor,
                         text_embedding: torch.Tensor
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(depth as ``forward`` returns it, {"bin_probs": (B, K, h, w)}): the bin
        distribution, which the confidence output reads."""
        probs = self.bin_probabilities(encoder, image, text_embedding)
        # the depth in float32 (layers.py says why)
        depth = torch.einsum("bkhw,k->bhw", probs.float(), self.bins_m.float()).unsqueeze(1)
        return depth, {"bin_probs": probs}
