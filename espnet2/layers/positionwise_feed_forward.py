"""Position-wise feed-forward block (Transformer FFN)."""

from __future__ import annotations

import torch


class PositionwiseFeedForward(torch.nn.Module):
    """``w_2(dropout(act(w_1(x))))``: (B, T, idim) -> (B, T, idim).

    Args:
        idim: model dimension (HuBERT Base: 768).
        hidden_units: inner dimension (HuBERT Base: 3072; fairseq ``encoder_ffn_embed_dim``).
        dropout_rate: dropout after the activation (fairseq ``activation_dropout``).
        activation: activation module (default ReLU as in ESPnet; wav2vec 2.0 uses GELU).
    """

    def __init__(
        self,
        idim: int,
        hidden_units: int,
        dropout_rate: float,
        activation: torch.nn.Module | None = None,
    ):
        super().__init__()
        self.w_1 = torch.nn.Linear(idim, hidden_units)
        self.w_2 = torch.nn.Linear(hidden_units, idim)
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.activation = activation if activation is not None else torch.nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(self.activation(self.w_1(x))))
