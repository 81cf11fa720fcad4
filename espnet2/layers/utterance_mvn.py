"""Per-utterance mean/variance normalisation over valid frames (ESPnet `utterance_mvn`)."""

from __future__ import annotations

import logging

import torch

from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.layers.masked_norm import time_mask

logger = logging.getLogger(__name__)


class UtteranceMVN(AbsNormalize):
    """(B, T, D) -> (B, T, D): subtract each utterance's mean (and divide by its std).

    Statistics use the first ``input_lengths[b]`` frames only; padded frames are set to 0.

    Args:
        norm_means: subtract the per-utterance, per-dimension mean.
        norm_vars: divide by the per-utterance, per-dimension standard deviation.
        eps: floor on the variance (ESPnet: 1e-20).
    """

    def __init__(self, norm_means: bool = True, norm_vars: bool = False, eps: float = 1.0e-20):
        super().__init__()
        self.norm_means = norm_means
        self.norm_vars = norm_vars
        self.eps = eps

    def extra_repr(self) -> str:
        return f"norm_means={self.norm_means}, norm_vars={self.norm_vars}"

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, t, _ = input.shape
        lengths = (
            torch.full((b,), t, dtype=torch.long, device=input.device)
            if input_lengths is None
            else input_lengths.to(input.device).long()
        )
        mask = time_mask(lengths, t, input.dtype).transpose(1, 2)  # (B, T, 1)
        n = lengths.clamp(min=1).to(input.dtype).view(b, 1, 1)
        x = input * mask
        mean = x.sum(1, keepdim=True) / n  # (B, 1, D)
        if self.norm_means:
            x = (x - mean) * mask
        if self.norm_vars:
            centred = x if self.norm_means else (x - mean) * mask
            var = centred.square().sum(1, keepdim=True) / n
            x = x / var.clamp(min=self.eps).sqrt()
        return x, input_lengths
