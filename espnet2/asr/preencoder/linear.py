"""Linear pre-encoder (ESPnet ``preencoder: linear``): frontend dim -> encoder dim."""

from __future__ import annotations

import logging

import torch

from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder

logger = logging.getLogger(__name__)


class LinearProjection(AbsPreEncoder):
    """``Linear(Dropout(x))``: (B, T, input_size) -> (B, T, output_size), lengths unchanged.

    HuBERT Base: 512 -> 768 (fairseq ``post_extract_proj``; ``dropout_input`` 0.1 is applied
    by the SSL model in fairseq, here it is this module's ``dropout``).
    ``layer_norm=True`` adds a learned ``LayerNorm(input_size)`` before the projection: fairseq
    HuBERT/wav2vec 2.0/DinoSR's ``layer_norm`` on the CNN features (False keeps ESPnet's form).
    """

    def __init__(
        self, input_size: int, output_size: int, dropout: float = 0.0, layer_norm: bool = False
    ):
        super().__init__()
        self._output_size = output_size
        self.layer_norm = torch.nn.LayerNorm(input_size) if layer_norm else None
        self.dropout = torch.nn.Dropout(dropout)
        self.linear_out = torch.nn.Linear(input_size, output_size)

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D_in), (B,) -> (B, T, D_out), (B,)."""
        if self.layer_norm is not None:
            input = self.layer_norm(input)
        return self.linear_out(self.dropout(input)), input_lengths
