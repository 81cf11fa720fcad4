"""Multi-head attention with ESPnet's parameter names, computed with PyTorch SDPA.

Masks follow ESPnet: ``(B, 1, T2)`` (key padding) or ``(B, T1, T2)`` bool, True where a key
may be attended to. The key-padding mask is passed to
:func:`torch.nn.functional.scaled_dot_product_attention` as a broadcast boolean
``(B, 1, 1, T2)`` tensor, so no ``(B, H, T1, T2)`` float mask is built by this module.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool, True on valid positions (ESPnet's ``~make_pad_mask``)."""
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


class MultiHeadedAttention(torch.nn.Module):
    """ESPnet's ``MultiHeadedAttention`` (same parameter names, same maths), SDPA kernel.

    Args:
        n_head: number of heads (HuBERT Base: 12; fairseq ``encoder_attention_heads``).
        n_feat: model dimension, divisible by ``n_head`` (HuBERT Base: 768).
        dropout_rate: dropout on the attention weights, training only
            (fairseq ``attention_dropout``; HuBERT Base: 0.1).
    """

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float):
        super().__init__()
        if n_feat % n_head != 0:
            raise ValueError(
                f"attention: n_feat={n_feat} is not divisible by n_head={n_head}; "
                "choose output_size as a multiple of attention_heads"
            )
        self.d_k = n_feat // n_head
        self.h = n_head
        self.linear_q = torch.nn.Linear(n_feat, n_feat)
        self.linear_k = torch.nn.Linear(n_feat, n_feat)
        self.linear_v = torch.nn.Linear(n_feat, n_feat)
        self.linear_out = torch.nn.Linear(n_feat, n_feat)
        self.dropout_rate = dropout_rate

    def _heads(self, x: torch.Tensor, linear: torch.nn.Linear) -> torch.Tensor:
        """(B, T, D) -> (B, H, T, d_k)."""
        b, t, _ = x.shape
        return linear(x).view(b, t, self.h, self.d_k).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Attend ``query`` (B, T1, D) over ``key``/``value`` (B, T2, D) -> (B, T1, D).

        ``mask``: (B, 1, T2) or (B, T1, T2) bool, True on keys that may be attended, or None.
        A query row with no valid key (e.g. a zero-length utterance) yields a zero context
        vector (as ESPnet's masked softmax does), never NaN.
        """
        q = self._heads(query, self.linear_q)
        k = self._heads(key, self.linear_k)
        v = self._heads(value, self.linear_v)
        attn_mask = None
        empty_rows = None
        if mask is not None:
            mask = mask.to(torch.bool)
            # Rows without any valid key would make SDPA's softmax NaN: let them attend to
            # everything and zero their context afterwards (cheap, no host sync).
            empty_rows = ~mask.any(dim=-1, keepdim=True)  # (B, 1 or T1, 1)
            attn_mask = (mask | empty_rows).unsqueeze(1)  # (B, 1, 1 or T1, T2)
        context = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout_rate if self.training else 0.0,
        )  # (B, H, T1, d_k)
        b, _, t1, _ = context.shape
        context = context.transpose(1, 2).reshape(b, t1, self.h * self.d_k)
        if empty_rows is not None:
            context = context.masked_fill(empty_rows.reshape(b, -1, 1), 0.0)
        return self.linear_out(context)
