"""E-Branchformer encoder (Kim et al., SLT 2022) with ESPnet's names, frame preserving.

Block (all LayerNorms pre-LN):

    x  = x + 1/2 FFN_macaron(LN(x))                     (use_ffn and macaron_ffn)
    x1 = MHSA(LN(x))            global branch (relative positions: rel_selfattn)
    x2 = cgMLP(LN(x))           local branch (espnet2/layers/cgmlp.py)
    c  = [x1, x2]  (B, T, 2D)
    x  = x + Linear_2D->D(c + DepthwiseConv_k(c))       enhanced merge (k = merge_conv_kernel)
    x  = x + s FFN(LN(x))                               (use_ffn; s = 1/2 with macaron_ffn)
    x  = LN_final(x)

Padding: the cgMLP's and the merge module's depthwise convolutions see zeros on padded frames,
so each utterance's valid outputs do not depend on the padding of its batch.
"""

from __future__ import annotations

import logging

import torch

from espnet2.asr.encoder.conformer_encoder import (
    FramePreservingEncoder,
    build_attention,
    build_input_layer,
    build_pos_enc,
    get_activation,
    resolve_positional_options,
)
from espnet2.layers.cgmlp import ConvolutionalGatingMLP
from espnet2.layers.positionwise_feed_forward import PositionwiseFeedForward

logger = logging.getLogger(__name__)


class EBranchformerEncoderLayer(torch.nn.Module):
    """One E-Branchformer block, (B, T, D) -> (B, T, D).

    Args:
        size: model dimension D (ESPnet ``output_size``).
        attn: self-attention module (relative or plain).
        cgmlp: :class:`ConvolutionalGatingMLP`.
        feed_forward, feed_forward_macaron: optional FFN modules.
        dropout_rate: dropout on every residual branch.
        merge_conv_kernel: depthwise kernel of the merge module (ESPnet, 3; odd).
    """

    def __init__(
        self,
        size: int,
        attn: torch.nn.Module,
        cgmlp: torch.nn.Module,
        feed_forward: torch.nn.Module | None,
        feed_forward_macaron: torch.nn.Module | None,
        dropout_rate: float,
        merge_conv_kernel: int = 3,
    ):
        super().__init__()
        if merge_conv_kernel % 2 != 1:
            raise ValueError(
                f"e_branchformer_encoder.py: merge_conv_kernel={merge_conv_kernel} must be odd "
                "so the merge convolution keeps the frame count; use e.g. 3 or 31"
            )
        self.size = size
        self.attn = attn
        self.cgmlp = cgmlp
        self.feed_forward = feed_forward
        self.feed_forward_macaron = feed_forward_macaron
        self.ff_scale = 0.5 if feed_forward_macaron is not None else 1.0
        if feed_forward is not None:
            self.norm_ff = torch.nn.LayerNorm(size, eps=1e-12)
        if feed_forward_macaron is not None:
            self.norm_ff_macaron = torch.nn.LayerNorm(size, eps=1e-12)
        self.norm_mha = torch.nn.LayerNorm(size, eps=1e-12)
        self.norm_mlp = torch.nn.LayerNorm(size, eps=1e-12)
        self.norm_final = torch.nn.LayerNorm(size, eps=1e-12)
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.depthwise_conv_fusion = torch.nn.Conv1d(
            2 * size, 2 * size, merge_conv_kernel, stride=1,
            padding=(merge_conv_kernel - 1) // 2, groups=2 * size, bias=True,
        )
        self.merge_proj = torch.nn.Linear(2 * size, size)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, pos_emb: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, T, D), mask (B, 1, T) True on valid frames, pos_emb (1, 2T-1, D) -> (B, T, D)."""
        if self.feed_forward_macaron is not None:
            ff = self.feed_forward_macaron(self.norm_ff_macaron(x))
            x = x + self.ff_scale * self.dropout(ff)

        h = self.norm_mha(x)
        if pos_emb is not None:
            x1 = self.attn(h, h, h, pos_emb, mask)
        else:
            x1 = self.attn(h, h, h, mask)
        x1 = self.dropout(x1)
        x2 = self.dropout(self.cgmlp(self.norm_mlp(x), mask))

        concat = torch.cat([x1, x2], dim=-1)  # (B, T, 2D)
        fused = concat.transpose(1, 2)  # (B, 2D, T)
        if mask is not None:
            fused = fused.masked_fill(~mask, 0.0)
        fused = self.depthwise_conv_fusion(fused).transpose(1, 2)  # (B, T, 2D)
        x = x + self.dropout(self.merge_proj(concat + fused))

        if self.feed_forward is not None:
            x = x + self.ff_scale * self.dropout(self.feed_forward(self.norm_ff(x)))
        return self.norm_final(x)


class EBranchformerEncoder(FramePreservingEncoder):
    """E-Branchformer encoder, ESPnet constructor (same argument order and defaults).

    (B, T, input_size) -> (B, T, output_size); frame preserving. Defaults are ESPnet's; the
    sizes (output_size, attention_heads, cgmlp_linear_units, num_blocks) come from the config.

    Args beyond ESPnet's meaning:
        input_layer: None / "linear" / "wav2vec" (no subsampling); "conv2d*" etc raise
            NotImplementedError. ESPnet's default "conv2d" is kept in the signature, so configs
            must set it.
        attention_layer_type: "rel_selfattn" (with pos_enc_layer_type "rel_pos") or
            "selfattn" (with "abs_pos" / "no_pos"); "fast_selfattn" is not implemented.
        positionwise_layer_type: "linear" (only used with ``use_ffn``).
        activation_checkpointing: recompute each block in backward (training only).
        padding_idx: accepted for ESPnet YAML compatibility; unused (no token embedding).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        attention_heads: int = 4,
        attention_layer_type: str = "rel_selfattn",
        pos_enc_layer_type: str = "rel_pos",
        rel_pos_type: str = "latest",
        cgmlp_linear_units: int = 2048,
        cgmlp_conv_kernel: int = 31,
        use_linear_after_conv: bool = False,
        gate_activation: str = "identity",
        num_blocks: int = 12,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.0,
        input_layer: str | None = "conv2d",
        zero_triu: bool = False,
        padding_idx: int = -1,
        layer_drop_rate: float = 0.0,
        max_pos_emb_len: int = 5000,
        use_ffn: bool = False,
        macaron_ffn: bool = False,
        ffn_activation_type: str = "swish",
        linear_units: int = 2048,
        positionwise_layer_type: str = "linear",
        merge_conv_kernel: int = 3,
        interctc_layer_idx: list[int] | None = None,
        interctc_use_conditioning: bool = False,
        activation_checkpointing: bool = False,
    ):
        super().__init__()
        where = "EBranchformerEncoder"
        self._output_size = output_size
        pos_type, attn_type = resolve_positional_options(
            where, rel_pos_type, pos_enc_layer_type, attention_layer_type
        )
        if use_ffn and positionwise_layer_type != "linear":
            raise NotImplementedError(
                f"{where}: positionwise_layer_type {positionwise_layer_type!r} is not "
                "implemented; use 'linear'"
            )
        pos_enc = build_pos_enc(pos_type, output_size, positional_dropout_rate, max_pos_emb_len)
        self.embed = build_input_layer(
            where, input_layer, input_size, output_size, dropout_rate, pos_enc
        )

        def ffn() -> PositionwiseFeedForward:
            return PositionwiseFeedForward(
                output_size, linear_units, dropout_rate, get_activation(ffn_activation_type)
            )

        self.encoders = torch.nn.ModuleList(
            EBranchformerEncoderLayer(
                output_size,
                build_attention(
                    attn_type, attention_heads, output_size, attention_dropout_rate, zero_triu
                ),
                ConvolutionalGatingMLP(
                    output_size, cgmlp_linear_units, cgmlp_conv_kernel, dropout_rate,
                    use_linear_after_conv, gate_activation,
                ),
                ffn() if use_ffn else None,
                ffn() if use_ffn and macaron_ffn else None,
                dropout_rate,
                merge_conv_kernel,
            )
            for _ in range(num_blocks)
        )
        self.after_norm = torch.nn.LayerNorm(output_size, eps=1e-12)
        self.interctc_layer_idx = list(interctc_layer_idx or [])
        if self.interctc_layer_idx and not (
            0 < min(self.interctc_layer_idx) and max(self.interctc_layer_idx) < num_blocks
        ):
            raise ValueError(
                f"{where}: interctc_layer_idx {self.interctc_layer_idx} must lie in "
                f"[1, {num_blocks - 1}] (1-based block numbers, last block excluded)"
            )
        self.interctc_use_conditioning = interctc_use_conditioning
        self.conditioning_layer = None
        self.layer_drop_rate = layer_drop_rate
        self.activation_checkpointing = activation_checkpointing
