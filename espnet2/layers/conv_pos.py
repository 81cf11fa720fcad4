"""wav2vec 2.0 / HuBERT convolutional relative positional embedding."""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


class ConvolutionalPositionalEmbedding(torch.nn.Module):
    """Grouped Conv1d over time with weight normalisation, then GELU (wav2vec 2.0 ``pos_conv``).

    The module returns the embedding only; the caller adds it residually (``x + pos(x)``).

    Args:
        embed_dim: model dimension D (HuBERT Base: 768; fairseq ``encoder_embed_dim``).
        kernel_size: temporal kernel (fairseq ``conv_pos``; Base: 128). With an even kernel the
            ``k // 2`` symmetric padding yields one extra frame, which is dropped.
        groups: convolution groups (fairseq ``conv_pos_groups``; Base: 16).

    Weight norm is ``torch.nn.utils.parametrizations.weight_norm(dim=2)``: the magnitude
    ``original0`` has shape (1, 1, kernel_size) and the direction ``original1`` has shape
    (D, D // groups, kernel_size), as fairseq's ``weight_g`` / ``weight_v``.
    """

    def __init__(self, embed_dim: int, kernel_size: int = 128, groups: int = 16):
        super().__init__()
        if embed_dim % groups != 0:
            raise ValueError(
                f"conv positional embedding: embed_dim={embed_dim} is not divisible by "
                f"groups={groups}; pick conv_pos_groups dividing output_size"
            )
        self.embed_dim = embed_dim
        self.kernel_size = kernel_size
        conv = torch.nn.Conv1d(
            embed_dim, embed_dim, kernel_size, padding=kernel_size // 2, groups=groups
        )
        # fairseq init: N(0, sqrt(4 / (k * D))) and zero bias, before weight norm.
        torch.nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel_size * embed_dim)))
        torch.nn.init.zeros_(conv.bias)
        self.conv = torch.nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.num_remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) features -> (B, T, D) positional embedding.

        ``mask``: (B, T) or ESPnet's (B, 1, T) bool, True on valid frames. Padded frames are
        zeroed before the convolution so the valid frames do not depend on the padding.
        """
        if mask is not None:
            if mask.dim() == 3:
                mask = mask.squeeze(1)
            x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        y = self.conv(x.transpose(1, 2))  # (B, D, T + 1 - k % 2)
        if self.num_remove:
            y = y[:, :, : -self.num_remove]
        return F.gelu(y).transpose(1, 2)
