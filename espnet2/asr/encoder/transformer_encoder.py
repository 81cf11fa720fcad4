"""Transformer encoder with ESPnet's constructor arguments, set up for SSL (no subsampling).

HuBERT / wav2vec 2.0 Base (fairseq) corresponds to::

    TransformerEncoder(768, output_size=768, attention_heads=12, linear_units=3072, num_blocks=12,
                       dropout_rate=0.1, attention_dropout_rate=0.1, input_layer="wav2vec",
                       normalize_before=False, pos_enc_layer_type="conv", layer_drop_rate=0.05)

Embedding stage (``input_layer``):
  * ``"wav2vec"``: [Linear if ``input_size != output_size``] -> positional module -> Dropout.
    With ``pos_enc_layer_type="conv"`` the positional module is ``x + pos_conv(x)`` followed, for
    post-LN blocks (``normalize_before=False``), by a LayerNorm, as wav2vec 2.0 does.
  * ``"linear"``: Linear -> LayerNorm -> Dropout -> ReLU -> positional module (ESPnet).
  * ``None``: Linear only if the sizes differ; no positional encoding (ESPnet).
  * ``"conv2d"`` (ESPnet's default, 4x subsampling) is not provided: SSL targets are frame-aligned.

FFN activation: GELU when ``input_layer == "wav2vec"`` (fairseq), ReLU otherwise (ESPnet).
LayerNorm eps is 1e-5 (fairseq/PyTorch default; ESPnet uses 1e-12, same parameters).
"""

from __future__ import annotations

import logging
import math

import torch
from torch.utils.checkpoint import checkpoint

from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.layers.attention import MultiHeadedAttention, lengths_to_mask
from espnet2.layers.conv_pos import ConvolutionalPositionalEmbedding
from espnet2.layers.positionwise_feed_forward import PositionwiseFeedForward

logger = logging.getLogger(__name__)


class PositionalEncoding(torch.nn.Module):
    """ESPnet's absolute sinusoidal encoding: ``dropout(x * sqrt(D) + PE)``, (B, T, D) -> same."""

    def __init__(self, d_model: int, dropout_rate: float, max_len: int = 5000):
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.pe: torch.Tensor | None = None  # not a buffer: not in the state dict (as ESPnet)
        self._extend(max_len, torch.device("cpu"), torch.float32)

    def _extend(self, length: int, device: torch.device, dtype: torch.dtype) -> None:
        if self.pe is not None and self.pe.size(1) >= length:
            if self.pe.device != device or self.pe.dtype != dtype:
                self.pe = self.pe.to(device=device, dtype=dtype)
            return
        position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
        even = torch.arange(0, self.d_model, 2, dtype=torch.float32)
        div_term = torch.exp(even * -(math.log(10000.0) / self.d_model))
        pe = torch.zeros(length, self.d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.pe = pe.unsqueeze(0).to(device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._extend(x.size(1), x.device, x.dtype)
        return self.dropout(x * self.xscale + self.pe[:, : x.size(1)])


class EncoderLayer(torch.nn.Module):
    """ESPnet's Transformer block: self-attention and FFN, each with residual + LayerNorm.

    ``normalize_before=True``: pre-LN ``x + drop(f(LN(x)))``; False: post-LN
    ``LN(x + drop(f(x)))`` (BERT / wav2vec 2.0 Base, fairseq ``layer_norm_first=False``).
    ``concat_after``: ``x + Linear([x, att(x)])`` instead of ``x + att(x)`` (ESPnet option).
    """

    def __init__(
        self,
        size: int,
        self_attn: torch.nn.Module,
        feed_forward: torch.nn.Module,
        dropout_rate: float,
        normalize_before: bool = True,
        concat_after: bool = False,
    ):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.norm1 = torch.nn.LayerNorm(size)
        self.norm2 = torch.nn.LayerNorm(size)
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.size = size
        self.normalize_before = normalize_before
        self.concat_after = concat_after
        if concat_after:
            self.concat_linear = torch.nn.Linear(size + size, size)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, cache: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, D), (B, 1, T) bool mask (True = valid) or None -> (B, T, D), mask."""
        if cache is not None:
            raise NotImplementedError("EncoderLayer: incremental decoding cache is not supported")
        residual = x
        if self.normalize_before:
            x = self.norm1(x)
        att = self.self_attn(x, x, x, mask)
        if self.concat_after:
            x = residual + self.concat_linear(torch.cat((x, att), dim=-1))
        else:
            x = residual + self.dropout(att)
        if not self.normalize_before:
            x = self.norm1(x)
        residual = x
        if self.normalize_before:
            x = self.norm2(x)
        x = residual + self.dropout(self.feed_forward(x))
        if not self.normalize_before:
            x = self.norm2(x)
        return x, mask


class TransformerEncoder(AbsEncoder):
    """Transformer encoder (ESPnet ``encoder: transformer``), frame-preserving.

    Args (fairseq name and HuBERT Base value in brackets):
        input_size: input feature dimension (pre-encoder output, 768).
        output_size: model dimension D (``encoder_embed_dim``, 768).
        attention_heads: heads (``encoder_attention_heads``, 12).
        linear_units: FFN inner dimension (``encoder_ffn_embed_dim``, 3072).
        num_blocks: blocks (``encoder_layers``, 12).
        dropout_rate: residual / embedding dropout (``dropout``, 0.1).
        positional_dropout_rate: dropout of the sinusoidal encoding ("abs" only).
        attention_dropout_rate: dropout on attention weights (``attention_dropout``, 0.1).
        input_layer: "wav2vec", "linear" or None (see module docstring).
        pos_enc_class: class used for "abs" instead of :class:`PositionalEncoding`.
        normalize_before: pre-LN with a final LayerNorm (True) or post-LN (False,
            ``layer_norm_first=False`` in Base).
        concat_after: ESPnet's concat-linear residual.
        positionwise_layer_type: only "linear".
        positionwise_conv_kernel_size, padding_idx: accepted for ESPnet YAML compatibility; unused.
        interctc_layer_idx, interctc_use_conditioning: intermediate CTC is not supported
            (the list must be empty).
        layer_drop_rate: probability of skipping a block in training (``encoder_layerdrop``, 0.05).
        pos_enc_layer_type: "conv" (wav2vec 2.0 conv positional embedding), "abs" (sinusoidal)
            or "none".
        conv_pos: kernel of the conv positional embedding in frames (fairseq ``conv_pos``;
            Base: 128 = 2.56 s at 50 Hz). Its cost grows with the kernel: short clips need far
            less (FSDD: 16).
        conv_pos_groups: its groups (fairseq ``conv_pos_groups``; Base: 16).
        activation_checkpointing: recompute each block in backward (training only) to save memory.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        attention_heads: int = 4,
        linear_units: int = 2048,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.0,
        input_layer: str | None = "conv2d",
        pos_enc_class: type | None = None,
        normalize_before: bool = True,
        concat_after: bool = False,
        positionwise_layer_type: str = "linear",
        positionwise_conv_kernel_size: int = 1,
        padding_idx: int = -1,
        interctc_layer_idx: list[int] | None = None,
        interctc_use_conditioning: bool = False,
        layer_drop_rate: float = 0.0,
        pos_enc_layer_type: str = "abs",
        activation_checkpointing: bool = False,
        conv_pos: int = 128,
        conv_pos_groups: int = 16,
    ):
        super().__init__()
        _check_options(input_layer, positionwise_layer_type, interctc_layer_idx, pos_enc_layer_type)
        self._output_size = output_size
        self.input_layer = input_layer
        self.normalize_before = normalize_before
        self.layer_drop_rate = layer_drop_rate
        self.activation_checkpointing = activation_checkpointing
        self.pos_enc_layer_type = pos_enc_layer_type or "none"

        self.embed = self._build_embed(input_size, output_size, input_layer, dropout_rate)
        self.pos_conv = None
        self.pos_abs = None
        self.embed_norm = None
        if input_layer is not None and self.pos_enc_layer_type == "conv":
            self.pos_conv = ConvolutionalPositionalEmbedding(output_size, conv_pos,
                                                             conv_pos_groups)
            if not normalize_before:
                self.embed_norm = torch.nn.LayerNorm(output_size)
        elif input_layer is not None and self.pos_enc_layer_type == "abs":
            pos_cls = pos_enc_class if pos_enc_class is not None else PositionalEncoding
            self.pos_abs = pos_cls(output_size, positional_dropout_rate)
        self.embed_dropout = torch.nn.Dropout(dropout_rate if self.pos_conv is not None else 0.0)

        activation = torch.nn.GELU() if input_layer == "wav2vec" else torch.nn.ReLU()
        self.encoders = torch.nn.ModuleList(
            EncoderLayer(
                output_size,
                MultiHeadedAttention(attention_heads, output_size, attention_dropout_rate),
                PositionwiseFeedForward(output_size, linear_units, dropout_rate, activation),
                dropout_rate,
                normalize_before,
                concat_after,
            )
            for _ in range(num_blocks)
        )
        self.after_norm = torch.nn.LayerNorm(output_size) if normalize_before else None

    @staticmethod
    def _build_embed(
        input_size: int, output_size: int, input_layer: str | None, dropout_rate: float
    ) -> torch.nn.Module | None:
        if input_layer == "linear":
            return torch.nn.Sequential(
                torch.nn.Linear(input_size, output_size),
                torch.nn.LayerNorm(output_size),
                torch.nn.Dropout(dropout_rate),
                torch.nn.ReLU(),
            )
        if input_size != output_size:  # "wav2vec" or None
            return torch.nn.Linear(input_size, output_size)
        return None

    def output_size(self) -> int:
        return self._output_size

    def _embed(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(B, T, input_size) -> (B, T, D): projection and positional information."""
        if self.embed is not None:
            x = self.embed(x)
        if self.pos_conv is not None:
            x = x + self.pos_conv(x, mask)
            if self.embed_norm is not None:
                x = self.embed_norm(x)
        elif self.pos_abs is not None:
            x = self.pos_abs(x)
        return self.embed_dropout(x)

    def _run_block(
        self, block: EncoderLayer, x: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, mask, use_reentrant=False)[0]
        return block(x, mask)[0]

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor | None = None,
        ctc: object | None = None,
        masks: torch.Tensor | None = None,
        return_all_hs: bool = False,
    ) -> tuple[object, torch.Tensor, None]:
        """(B, T, input_size), (B,) -> ``(out | (out, hidden_states), olens, None)``.

        ``masks``: optional ESPnet (B, 1, T) bool, True on valid frames (built from ``ilens``
        otherwise). ``hidden_states`` holds one (B, T, D) tensor per block; a block skipped by
        layer drop contributes its input; the last element is ``out`` (after ``after_norm``).
        """
        if masks is None:
            masks = lengths_to_mask(ilens, xs_pad.size(1)).unsqueeze(1)  # (B, 1, T)
        # Unpadded batches (the usual SSL crop) need no mask: lets SDPA use its fastest kernel.
        attn_mask = None if bool(masks.all()) else masks
        x = self._embed(xs_pad, attn_mask)
        hidden_states = []
        for block in self.encoders:
            # Layer drop (Fan et al. 2019) draws on the CPU generator: no device sync.
            skip = (
                self.training
                and self.layer_drop_rate > 0
                and float(torch.rand(1)) < self.layer_drop_rate
            )
            if not skip:
                x = self._run_block(block, x, attn_mask)
            if return_all_hs:
                hidden_states.append(x)
        if self.after_norm is not None:
            x = self.after_norm(x)
            if return_all_hs and hidden_states:
                hidden_states[-1] = x
        olens = masks.squeeze(1).sum(1) if ilens is None else ilens
        if return_all_hs:
            return (x, hidden_states), olens, None
        return x, olens, None


def _check_options(
    input_layer: str | None,
    positionwise_layer_type: str,
    interctc_layer_idx: list[int] | None,
    pos_enc_layer_type: str | None,
) -> None:
    if input_layer in ("conv2d", "conv2d2", "conv2d6", "conv2d8", "vgg2l", "embed"):
        raise NotImplementedError(
            f"TransformerEncoder: input_layer={input_layer!r} (subsampling/embedding) is not "
            "provided; SSL needs a frame-preserving encoder: use input_layer 'wav2vec', "
            "'linear' or null in encoder_conf"
        )
    if input_layer not in ("wav2vec", "linear", None):
        raise ValueError(
            f"TransformerEncoder: unknown input_layer={input_layer!r}; "
            "choose 'wav2vec', 'linear' or null"
        )
    if positionwise_layer_type != "linear":
        raise NotImplementedError(
            f"TransformerEncoder: positionwise_layer_type={positionwise_layer_type!r} is not "
            "supported; use 'linear'"
        )
    if interctc_layer_idx:
        raise NotImplementedError(
            f"TransformerEncoder: interctc_layer_idx={interctc_layer_idx} (intermediate CTC) is "
            "not supported in SSL pre-training; leave it empty"
        )
    if (pos_enc_layer_type or "none") not in ("abs", "conv", "none"):
        raise ValueError(
            f"TransformerEncoder: unknown pos_enc_layer_type={pos_enc_layer_type!r}; "
            "choose 'conv' (wav2vec 2.0), 'abs' (sinusoidal) or 'none'"
        )
