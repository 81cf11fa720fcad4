"""Sinusoidal positional encodings with ESPnet's names and outputs.

* ``RelPositionalEncoding`` (ESPnet ``rel_pos``, ``rel_pos_type: latest``): returns the scaled
  input and the embeddings of the relative positions ``T-1, ..., 0, ..., -(T-1)`` (length 2T-1),
  consumed by :class:`espnet2.layers.rel_attention.RelPositionMultiHeadedAttention`.
* ``LegacyRelPositionalEncoding`` (ESPnet ``legacy_rel_pos``): returns the scaled input and T
  absolute sinusoids (positions counted down from ``max_len - 1``, as ESPnet does).
* ``PositionalEncoding`` (ESPnet ``abs_pos``): ``x * sqrt(d) + pe`` (Vaswani et al., 2017).

None of them has parameters or buffers (the table is a plain attribute moved to the input's
device on use, as in ESPnet), so checkpoints load unchanged and EMA buffer copies ignore it.
"""

from __future__ import annotations

import logging
import math

import torch

logger = logging.getLogger(__name__)


def sinusoids(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """Sinusoidal table: (P,) float positions -> (P, d_model), sin on even, cos on odd channels."""
    if d_model % 2 != 0:
        raise ValueError(
            f"rel_pos_enc.py: sinusoidal encodings need an even model dimension, got {d_model}; "
            "choose an even output_size"
        )
    freq = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model)
    )
    angles = positions.to(torch.float32)[:, None] * freq[None, :]  # (P, d_model / 2)
    table = torch.zeros(positions.numel(), d_model)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table


class RelPositionalEncoding(torch.nn.Module):
    """Relative positional encoding (Transformer-XL / Conformer, ESPnet "latest" version).

    ``forward(x (B, T, D)) -> (dropout(x * sqrt(D)) (B, T, D), dropout(pos_emb) (1, 2T-1, D))``;
    ``pos_emb[:, k]`` encodes the relative position ``T - 1 - k`` (query index minus key index).

    Args:
        d_model: model dimension D (ESPnet ``output_size``; Conformer paper: 256 (S) / 512 (L)).
        dropout_rate: dropout on both outputs (ESPnet ``positional_dropout_rate``, 0.1).
        max_len: table length precomputed at construction (ESPnet ``max_pos_emb_len``, 5000);
            longer inputs extend the table on the fly.
    """

    def __init__(self, d_model: int, dropout_rate: float, max_len: int = 5000):
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = torch.nn.Dropout(p=dropout_rate)
        self.pe = self._table(max_len)  # plain attribute: moved lazily, not in state/buffers

    def _table(self, length: int) -> torch.Tensor:
        """(1, 2 length - 1, D): relative positions length-1 ... -(length-1)."""
        rel = torch.arange(length - 1, -length, -1)
        return sinusoids(rel, self.d_model).unsqueeze(0)

    def extend_pe(self, length: int, ref: torch.Tensor) -> None:
        """Make the (float32) table cover ``length`` frames, on ``ref``'s device."""
        if self.pe.size(1) < 2 * length - 1:
            self.pe = self._table(length)
        if self.pe.device != ref.device:
            self.pe = self.pe.to(ref.device)

    def position_embeddings(self, length: int, ref: torch.Tensor) -> torch.Tensor:
        """(1, 2 length - 1, D) embeddings of relative positions length-1 ... -(length-1)."""
        self.extend_pe(length, ref)
        center = self.pe.size(1) // 2  # index of relative position 0
        return self.pe[:, center - length + 1 : center + length].to(ref.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos_emb = self.position_embeddings(x.size(1), x)
        return self.dropout(x * self.xscale), self.dropout(pos_emb)


class LegacyRelPositionalEncoding(torch.nn.Module):
    """ESPnet ``legacy_rel_pos``: ``(dropout(x * sqrt(D)), dropout(pe[:, :T]))`` with pe (1, T, D).

    ESPnet builds this table with positions ``max_len - 1, ..., 0`` (reverse order), so the
    embeddings a length-T input sees depend on ``max_len``; kept for checkpoint compatibility.
    Inputs longer than ``max_len`` rebuild the table with positions ``T - 1, ..., 0``.
    """

    def __init__(self, d_model: int, dropout_rate: float, max_len: int = 5000):
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = torch.nn.Dropout(p=dropout_rate)
        self.pe = self._table(max_len)  # plain attribute: moved lazily, not in state/buffers

    def _table(self, length: int) -> torch.Tensor:
        return sinusoids(torch.arange(length - 1, -1, -1), self.d_model).unsqueeze(0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pe.size(1) < x.size(1):
            self.pe = self._table(x.size(1))
        if self.pe.device != x.device:
            self.pe = self.pe.to(x.device)
        pe = self.pe[:, : x.size(1)].to(x.dtype)
        return self.dropout(x * self.xscale), self.dropout(pe)


class PositionalEncoding(torch.nn.Module):
    """ESPnet ``abs_pos``: ``dropout(x * sqrt(D) + pe[:, :T])``, (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, dropout_rate: float, max_len: int = 5000):
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = torch.nn.Dropout(p=dropout_rate)
        self.pe = self._table(max_len)  # plain attribute: moved lazily, not in state/buffers

    def _table(self, length: int) -> torch.Tensor:
        return sinusoids(torch.arange(length), self.d_model).unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pe.size(1) < x.size(1):
            self.pe = self._table(x.size(1))
        if self.pe.device != x.device:
            self.pe = self.pe.to(x.device)
        return self.dropout(x * self.xscale + self.pe[:, : x.size(1)].to(x.dtype))
