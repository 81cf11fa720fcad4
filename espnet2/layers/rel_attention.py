"""Relative-position multi-head self-attention (Transformer-XL style) through SDPA.

Scores of query i on key j (Dai et al., 2019, section 3.3; Conformer uses the same):

    s_ij = [ (q_i + u) . k_j  +  (q_i + v) . W_pos p_{i-j} ] / sqrt(d_k)

with learnt per-head biases u = ``pos_bias_u``, v = ``pos_bias_v`` and the sinusoid ``p_{i-j}`` of
the relative position (:class:`espnet2.layers.rel_pos_enc.RelPositionalEncoding`). The content
term ``(q + u) . k`` is what ``torch.nn.functional.scaled_dot_product_attention`` computes; the
positional term (after the relative shift) and the key-padding mask are folded into one float
``attn_mask`` (B, H, T, T), so fused CUDA kernels that accept an additive bias are used.
Parameter names equal ESPnet's (``linear_q/k/v/out``, ``linear_pos``, ``pos_bias_u/v``).
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def rel_shift(scores: torch.Tensor) -> torch.Tensor:
    """Re-index positional scores from relative to key positions.

    Args:
        scores: (B, H, T, 2T-1); column k holds relative position ``T - 1 - k``.

    Returns:
        (B, H, T, T) with ``out[..., i, j] = scores[..., i, T - 1 - i + j]`` (position ``i - j``).
    """
    b, h, t, p = scores.shape
    if p != 2 * t - 1:
        raise ValueError(
            f"rel_attention.py: pos_emb gives {p} relative positions for {t} frames, "
            f"expected {2 * t - 1}; feed the output of RelPositionalEncoding for this input"
        )
    # Prepend one zero column, fold rows so each one starts one step further left, drop the
    # extra row: row i then starts at column T-1-i of the original (classic Transformer-XL trick).
    padded = F.pad(scores, (1, 0))  # (B, H, T, 2T)
    padded = padded.view(b, h, 2 * t, t)[:, :, 1:]  # (B, H, 2T-1, T)
    return padded.reshape(b, h, t, p)[..., :t]


class RelPositionMultiHeadedAttention(torch.nn.Module):
    """ESPnet ``rel_selfattn``: relative-position MHSA, (B, T, D) -> (B, T, D).

    Args:
        n_head: number of heads H (ESPnet ``attention_heads``; Conformer (S) 4, (L) 8).
        n_feat: model dimension D, divisible by H (ESPnet ``output_size``).
        dropout_rate: dropout on the attention weights (ESPnet ``attention_dropout_rate``).
        zero_triu: zero the positional term for keys after the query (j > i), as ESPnet does.
    """

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float, zero_triu: bool = False):
        super().__init__()
        if n_feat % n_head != 0:
            raise ValueError(
                f"rel_attention.py: n_feat={n_feat} is not divisible by n_head={n_head}; "
                "choose output_size as a multiple of attention_heads"
            )
        self.h = n_head
        self.d_k = n_feat // n_head
        self.dropout_rate = dropout_rate
        self.zero_triu = zero_triu
        self.linear_q = torch.nn.Linear(n_feat, n_feat)
        self.linear_k = torch.nn.Linear(n_feat, n_feat)
        self.linear_v = torch.nn.Linear(n_feat, n_feat)
        self.linear_out = torch.nn.Linear(n_feat, n_feat)
        self.linear_pos = torch.nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = torch.nn.Parameter(torch.empty(n_head, self.d_k))
        self.pos_bias_v = torch.nn.Parameter(torch.empty(n_head, self.d_k))
        torch.nn.init.xavier_uniform_(self.pos_bias_u)
        torch.nn.init.xavier_uniform_(self.pos_bias_v)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, H, T, d_k)."""
        return x.view(x.size(0), x.size(1), self.h, self.d_k).transpose(1, 2)

    def positional_scores(self, q: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        """Positional term ``(q + v) . W_pos p_{i-j}``: q (B, H, T1, d_k) -> (B, H, T1, T2)."""
        p = self._heads(self.linear_pos(pos_emb))  # (1 or B, H, 2T-1, d_k)
        bd = torch.matmul(q + self.pos_bias_v[:, None, :], p.transpose(-2, -1))
        bd = rel_shift(bd)
        if self.zero_triu:
            t1, t2 = bd.shape[-2:]
            future = torch.ones(t1, t2, dtype=torch.bool, device=bd.device).triu(t2 - t1 + 1)
            bd = bd.masked_fill(future, 0.0)
        return bd

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        pos_emb: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Attend.

        Args:
            query, key, value: (B, T, D) (self-attention: the same tensor).
            pos_emb: (1 or B, 2T-1, D) from RelPositionalEncoding.
            mask: (B, 1, T) or (B, T, T) bool, True on keys a query may attend to; None = all.

        Returns:
            (B, T, D).
        """
        q = self._heads(self.linear_q(query))
        k = self._heads(self.linear_k(key))
        v = self._heads(self.linear_v(value))
        bias = self.positional_scores(q, pos_emb) / math.sqrt(self.d_k)  # (B, H, T1, T2)
        bias = bias.to(v.dtype)
        empty_rows = None
        if mask is not None:
            mask = mask.to(torch.bool)
            # A query with no valid key (zero-length utterance) would give NaN: let it attend
            # to everything, then zero its context below (as ESPnet's masked softmax does).
            empty_rows = ~mask.any(dim=-1, keepdim=True)  # (B, 1 or T1, 1)
            keep = (mask | empty_rows).unsqueeze(1)  # (B, 1, 1 or T1, T2)
            bias = bias.masked_fill(~keep, torch.finfo(bias.dtype).min)
        # fp32 biases would promote bf16/fp16 activations under autocast: keep one dtype.
        out = F.scaled_dot_product_attention(
            (q + self.pos_bias_u[:, None, :]).to(v.dtype),
            k.to(v.dtype),
            v,
            attn_mask=bias,
            dropout_p=self.dropout_rate if self.training else 0.0,
        )  # (B, H, T1, d_k)
        out = out.transpose(1, 2).reshape(query.size(0), -1, self.h * self.d_k)
        if empty_rows is not None:
            out = out.masked_fill(empty_rows, 0.0)
        return self.linear_out(out)


class LegacyRelPositionMultiHeadedAttention(RelPositionMultiHeadedAttention):
    """ESPnet ``legacy_rel_selfattn``: the positional term uses T absolute sinusoids
    (:class:`espnet2.layers.rel_pos_enc.LegacyRelPositionalEncoding`) without a relative shift,
    i.e. ``(q_i + v) . W_pos p_j``. ``zero_triu`` has no effect, as in ESPnet.
    """

    def positional_scores(self, q: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        p = self._heads(self.linear_pos(pos_emb))  # (1 or B, H, T, d_k)
        return torch.matmul(q + self.pos_bias_v[:, None, :], p.transpose(-2, -1))
