"""Conformer encoder (Gulati et al., Interspeech 2020) with ESPnet's names, frame preserving.

Block (``normalize_before=True``, Fig. 1 of the paper):

    x = x + 1/2 FFN_macaron(LN(x))          (macaron_style only)
    x = x + MHSA(LN(x))                     (relative positions: rel_selfattn)
    x = x + Conv(LN(x))                     (use_cnn_module; padding-aware)
    x = x + s FFN(LN(x))                    (s = 1/2 with macaron_style, else 1)
    x = LN_final(x)                         (use_cnn_module)

This module also holds what the Conformer and E-Branchformer encoders share: option checking,
the frame-preserving input layer, the padding mask and the block loop (layer drop, activation
checkpointing, per-block hidden states, intermediate CTC).
"""

from __future__ import annotations

import logging

import torch
from torch.utils.checkpoint import checkpoint

from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.layers.convolution_module import ConvolutionModule
from espnet2.layers.positionwise_feed_forward import PositionwiseFeedForward
from espnet2.layers.rel_attention import (
    LegacyRelPositionMultiHeadedAttention,
    RelPositionMultiHeadedAttention,
)
from espnet2.layers.rel_pos_enc import (
    LegacyRelPositionalEncoding,
    PositionalEncoding,
    RelPositionalEncoding,
)

logger = logging.getLogger(__name__)

_ACTIVATIONS = {
    "hardtanh": torch.nn.Hardtanh,
    "tanh": torch.nn.Tanh,
    "relu": torch.nn.ReLU,
    "selu": torch.nn.SELU,
    "swish": torch.nn.SiLU,
    "gelu": torch.nn.GELU,
}
_POS_ENC = {
    "rel_pos": RelPositionalEncoding,
    "legacy_rel_pos": LegacyRelPositionalEncoding,
    "abs_pos": PositionalEncoding,
    "no_pos": None,
}
_ATTENTION_FOR_POS = {  # which attention each positional encoding feeds
    "rel_pos": "rel_selfattn",
    "legacy_rel_pos": "legacy_rel_selfattn",
    "abs_pos": "selfattn",
    "no_pos": "selfattn",
}


def get_activation(name: str) -> torch.nn.Module:
    """ESPnet activation names -> module ("swish" is SiLU)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation_type {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def resolve_positional_options(
    where: str, rel_pos_type: str, pos_enc_layer_type: str, selfattn_layer_type: str
) -> tuple[str, str]:
    """Map ``rel_pos_type: legacy`` to ESPnet's legacy classes and check the pair is consistent."""
    if rel_pos_type == "legacy":
        pos_enc_layer_type = {"rel_pos": "legacy_rel_pos"}.get(
            pos_enc_layer_type, pos_enc_layer_type
        )
        selfattn_layer_type = {"rel_selfattn": "legacy_rel_selfattn"}.get(
            selfattn_layer_type, selfattn_layer_type
        )
        if pos_enc_layer_type == "legacy_rel_pos":
            logger.warning(
                "%s: rel_pos_type 'legacy' uses ESPnet's legacy relative attention (absolute "
                "sinusoids, no relative shift); set rel_pos_type: latest for true relative "
                "positions", where,
            )
    elif rel_pos_type != "latest":
        raise ValueError(
            f"{where}: unknown rel_pos_type {rel_pos_type!r}; use 'latest' or 'legacy'"
        )
    if pos_enc_layer_type not in _POS_ENC:
        raise ValueError(
            f"{where}: unknown pos_enc_layer_type {pos_enc_layer_type!r}; choose one of "
            f"{sorted(_POS_ENC)}"
        )
    expected = _ATTENTION_FOR_POS[pos_enc_layer_type]
    if selfattn_layer_type != expected:
        raise ValueError(
            f"{where}: pos_enc_layer_type {pos_enc_layer_type!r} needs the attention type "
            f"{expected!r}, got {selfattn_layer_type!r} (rel_pos_type={rel_pos_type!r})"
        )
    return pos_enc_layer_type, selfattn_layer_type


def build_pos_enc(
    kind: str, size: int, dropout: float, max_len: int
) -> torch.nn.Module | None:
    """Positional encoding module for a resolved ``pos_enc_layer_type`` (None for no_pos)."""
    cls = _POS_ENC[kind]
    return cls(size, dropout, max_len) if cls is not None else None


def build_attention(kind: str, heads: int, size: int, dropout: float, zero_triu: bool):
    """Self-attention module for ``selfattn`` / ``rel_selfattn`` / ``legacy_rel_selfattn``."""
    if kind == "rel_selfattn":
        return RelPositionMultiHeadedAttention(heads, size, dropout, zero_triu)
    if kind == "legacy_rel_selfattn":
        return LegacyRelPositionMultiHeadedAttention(heads, size, dropout, zero_triu)
    # Imported here: plain attention lives in its own module, only needed for this option.
    from espnet2.layers.attention import MultiHeadedAttention

    return MultiHeadedAttention(heads, size, dropout)


def build_input_layer(
    where: str,
    input_layer: str | None,
    input_size: int,
    output_size: int,
    dropout_rate: float,
    pos_enc: torch.nn.Module | None,
) -> torch.nn.Sequential:
    """Frame-preserving input layer: (B, T, input_size) -> (B, T, output_size) [, pos_emb].

    ``linear``: Linear, LayerNorm, Dropout, positional encoding (ESPnet's layout).
    ``None`` / ``wav2vec``: positional encoding only, after a Linear when the sizes differ.
    """
    pos = [pos_enc] if pos_enc is not None else []
    if input_layer == "linear":
        return torch.nn.Sequential(
            torch.nn.Linear(input_size, output_size),
            torch.nn.LayerNorm(output_size),
            torch.nn.Dropout(dropout_rate),
            *pos,
        )
    if input_layer in (None, "wav2vec"):
        proj = [torch.nn.Linear(input_size, output_size)] if input_size != output_size else []
        return torch.nn.Sequential(*proj, *pos)
    if isinstance(input_layer, str) and input_layer.startswith(("conv", "embed", "vgg")):
        raise NotImplementedError(
            f"{where}: input_layer {input_layer!r} subsamples or embeds tokens; SSL needs a "
            "frame-preserving encoder (labels are one per frontend frame). Use input_layer: "
            "null, 'linear' or 'wav2vec', and do any subsampling in the frontend"
        )
    raise ValueError(
        f"{where}: unknown input_layer {input_layer!r}; use null, 'linear' or 'wav2vec'"
    )


def valid_frame_mask(
    xs_pad: torch.Tensor, ilens: torch.Tensor, masks: torch.Tensor | None
) -> torch.Tensor:
    """(B, 1, T) bool, True on valid frames.

    ``masks`` (optional) overrides ``ilens``: a (B, T) bool tensor is a *padding* mask (True on
    padding, ``make_pad_mask`` convention, as the SSL model passes it); a (B, 1, T) bool tensor
    is ESPnet's attention mask (True on valid frames).
    """
    b, t = xs_pad.shape[:2]
    if masks is not None:
        if masks.dtype != torch.bool or masks.shape not in ((b, t), (b, 1, t)):
            raise ValueError(
                f"encoder masks must be bool (B, T)=({b}, {t}) padding mask or (B, 1, T) valid "
                f"mask, got {tuple(masks.shape)} {masks.dtype}"
            )
        return (~masks)[:, None, :] if masks.dim() == 2 else masks
    if ilens.shape != (b,) or int(ilens.max()) > t or int(ilens.min()) < 0:
        raise ValueError(
            f"encoder ilens {ilens.tolist()} do not fit xs_pad of shape {tuple(xs_pad.shape)}; "
            "lengths must be in [0, T] with one per utterance"
        )
    return (torch.arange(t, device=xs_pad.device)[None, :] < ilens.to(xs_pad.device)[:, None])[
        :, None, :
    ]


class FramePreservingEncoder(AbsEncoder):
    """Shared forward of the Conformer / E-Branchformer encoders.

    Subclasses set ``embed``, ``encoders`` (ModuleList of blocks ``block(x, mask, pos_emb)``),
    ``after_norm`` (or None), ``layer_drop_rate``, ``activation_checkpointing``,
    ``interctc_layer_idx``, ``interctc_use_conditioning``, ``conditioning_layer`` (None until a
    model sets ``Linear(vocab_size, output_size)``, as in ESPnet) and ``_output_size``.
    """

    norm_intermediate: bool = False  # apply after_norm to intermediate CTC outputs (Conformer)

    def output_size(self) -> int:
        return self._output_size

    def _run_block(self, block, x, mask, pos_emb) -> torch.Tensor:
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, mask, pos_emb, use_reentrant=False)
        return block(x, mask, pos_emb)

    def _condition(self, layer: int, x: torch.Tensor, ctc, inter: list) -> torch.Tensor:
        """Record an intermediate-CTC output and optionally condition on its posteriors."""
        out = self.after_norm(x) if self.norm_intermediate and self.after_norm is not None else x
        inter.append((layer, out))
        if not self.interctc_use_conditioning:
            return x
        if ctc is None or self.conditioning_layer is None:
            raise ValueError(
                "interctc_use_conditioning needs a ctc module in forward() and "
                "encoder.conditioning_layer = Linear(vocab_size, output_size) set by the model"
            )
        return x + self.conditioning_layer(ctc.softmax(out))

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor | None = None,
        ctc: object | None = None,
        masks: torch.Tensor | None = None,
        return_all_hs: bool = False,
    ) -> tuple[object, torch.Tensor, None]:
        """Encode.

        Args:
            xs_pad: (B, T, input_size) features.
            ilens: (B,) valid frames.
            prev_states: unused (ESPnet signature).
            ctc: CTC module, only for ``interctc_use_conditioning``.
            masks: optional padding mask, see :func:`valid_frame_mask`.
            return_all_hs: also return one (B, T, D) hidden state per block.

        Returns:
            ``((out, hidden_states) if return_all_hs else out, olens, None)``; out (B, T, D);
            the last hidden state is ``out`` (after ``after_norm``). With intermediate CTC
            layers and no ``return_all_hs``: ``((out, [(layer, (B, T, D)), ...]), olens, None)``.
        """
        mask = valid_frame_mask(xs_pad, ilens, masks)  # (B, 1, T)
        x = self.embed(xs_pad)
        x, pos_emb = x if isinstance(x, tuple) else (x, None)
        hidden, inter = [], []
        for idx, block in enumerate(self.encoders):
            # LayerDrop (Fan et al., 2019): skip the whole block while training.
            if not (self.training and torch.rand(1).item() < self.layer_drop_rate):
                x = self._run_block(block, x, mask, pos_emb)
            if idx + 1 in self.interctc_layer_idx:
                x = self._condition(idx + 1, x, ctc, inter)
            if return_all_hs:
                hidden.append(x)
        out = self.after_norm(x) if self.after_norm is not None else x
        olens = mask.squeeze(1).sum(1)
        if return_all_hs:
            hidden[-1] = out
            return (out, hidden), olens, None
        if inter:
            return (out, inter), olens, None
        return out, olens, None


class ConformerEncoderLayer(torch.nn.Module):
    """One Conformer block (ESPnet ``EncoderLayer``), (B, T, D) -> (B, T, D).

    Args:
        size: model dimension D.
        self_attn: ``RelPositionMultiHeadedAttention`` (or plain ``MultiHeadedAttention``).
        feed_forward, feed_forward_macaron: FFN modules (macaron optional).
        conv_module: :class:`ConvolutionModule` or None.
        dropout_rate: dropout on every residual branch.
        normalize_before: pre-LN (True) or post-LN blocks.
        concat_after: ``x + Linear([x, att(x)])`` instead of ``x + att(x)``.
        stochastic_depth_rate: probability of skipping the block while training; kept branches
            are scaled by 1 / (1 - p) (Huang et al., 2016).
    """

    def __init__(
        self,
        size: int,
        self_attn: torch.nn.Module,
        feed_forward: torch.nn.Module,
        feed_forward_macaron: torch.nn.Module | None,
        conv_module: torch.nn.Module | None,
        dropout_rate: float,
        normalize_before: bool = True,
        concat_after: bool = False,
        stochastic_depth_rate: float = 0.0,
    ):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.feed_forward_macaron = feed_forward_macaron
        self.conv_module = conv_module
        self.norm_ff = torch.nn.LayerNorm(size, eps=1e-12)
        self.norm_mha = torch.nn.LayerNorm(size, eps=1e-12)
        self.ff_scale = 0.5 if feed_forward_macaron is not None else 1.0
        if feed_forward_macaron is not None:
            self.norm_ff_macaron = torch.nn.LayerNorm(size, eps=1e-12)
        if conv_module is not None:
            self.norm_conv = torch.nn.LayerNorm(size, eps=1e-12)
            self.norm_final = torch.nn.LayerNorm(size, eps=1e-12)
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.size = size
        self.normalize_before = normalize_before
        self.concat_after = concat_after
        if concat_after:
            self.concat_linear = torch.nn.Linear(size + size, size)
        self.stochastic_depth_rate = stochastic_depth_rate

    def _residual(self, x, norm, fn, scale: float, drop: bool = True) -> torch.Tensor:
        """Pre-/post-LN residual branch: x + scale * dropout(fn(norm(x)))."""
        y = fn(norm(x) if self.normalize_before else x)
        x = x + scale * (self.dropout(y) if drop else y)
        return x if self.normalize_before else norm(x)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, pos_emb: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, T, D), mask (B, 1, T) True on valid frames, pos_emb (1, 2T-1, D) -> (B, T, D)."""
        coeff = 1.0
        if self.training and self.stochastic_depth_rate > 0:
            if torch.rand(1).item() < self.stochastic_depth_rate:
                return x
            coeff = 1.0 / (1.0 - self.stochastic_depth_rate)
        if self.feed_forward_macaron is not None:
            x = self._residual(
                x, self.norm_ff_macaron, self.feed_forward_macaron, coeff * self.ff_scale
            )

        def attend(h: torch.Tensor) -> torch.Tensor:
            if pos_emb is not None:
                att = self.self_attn(h, h, h, pos_emb, mask)
            else:
                att = self.self_attn(h, h, h, mask)
            if self.concat_after:
                return self.concat_linear(torch.cat((h, att), dim=-1))
            return att

        # ESPnet applies no dropout after concat_linear.
        x = self._residual(x, self.norm_mha, attend, coeff, drop=not self.concat_after)
        if self.conv_module is not None:
            x = self._residual(x, self.norm_conv, lambda h: self.conv_module(h, mask), coeff)
        x = self._residual(x, self.norm_ff, self.feed_forward, coeff * self.ff_scale)
        if self.conv_module is not None:
            x = self.norm_final(x)
        return x


class ConformerEncoder(FramePreservingEncoder):
    """Conformer encoder, ESPnet constructor (same argument order and defaults).

    (B, T, input_size) -> (B, T, output_size); frame preserving. Paper sizes: Conformer (S)
    D=144, 4 heads, 16 blocks; (M) 256/4/16; (L) 512/8/17; FFN 4D, conv kernel 32 (ESPnet 31).

    Args beyond ESPnet's meaning (see ESPnet docs for the rest):
        input_layer: None / "linear" / "wav2vec" (no subsampling); "conv2d*" etc raise
            NotImplementedError (SSL labels are one per frame). ESPnet's default "conv2d" is
            kept in the signature for compatibility, so configs must set it.
        rel_pos_type: "latest" (true relative positions) or "legacy" (ESPnet's default here:
            maps rel_pos / rel_selfattn to the legacy classes, logged).
        positionwise_layer_type: only "linear" (conv1d FFNs are not implemented).
        stochastic_depth_rate: float or one value per block.
        cnn_module_norm: "batch_norm" (ESPnet, masked so padding does not enter the statistics)
            or "layer_norm" (batch independent); see ``espnet2/layers/convolution_module.py``.
        activation_checkpointing: recompute each block in backward (training only).
        positionwise_conv_kernel_size, padding_idx: accepted for ESPnet YAML compatibility;
            unused (no conv1d FFN, no token embedding).
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
        normalize_before: bool = True,
        concat_after: bool = False,
        positionwise_layer_type: str = "linear",
        positionwise_conv_kernel_size: int = 3,
        macaron_style: bool = False,
        rel_pos_type: str = "legacy",
        pos_enc_layer_type: str = "rel_pos",
        selfattn_layer_type: str = "rel_selfattn",
        activation_type: str = "swish",
        use_cnn_module: bool = True,
        zero_triu: bool = False,
        cnn_module_kernel: int = 31,
        padding_idx: int = -1,
        interctc_layer_idx: list[int] | None = None,
        interctc_use_conditioning: bool = False,
        stochastic_depth_rate: float | list[float] = 0.0,
        layer_drop_rate: float = 0.0,
        max_pos_emb_len: int = 5000,
        cnn_module_norm: str = "batch_norm",
        activation_checkpointing: bool = False,
    ):
        super().__init__()
        where = "ConformerEncoder"
        self._output_size = output_size
        pos_type, attn_type = resolve_positional_options(
            where, rel_pos_type, pos_enc_layer_type, selfattn_layer_type
        )
        if positionwise_layer_type != "linear":
            raise NotImplementedError(
                f"{where}: positionwise_layer_type {positionwise_layer_type!r} is not "
                "implemented; use 'linear'"
            )
        if isinstance(stochastic_depth_rate, (int, float)):
            stochastic_depth_rate = [float(stochastic_depth_rate)] * num_blocks
        if len(stochastic_depth_rate) != num_blocks:
            raise ValueError(
                f"{where}: stochastic_depth_rate has {len(stochastic_depth_rate)} values for "
                f"num_blocks={num_blocks}; give one float or one value per block"
            )
        pos_enc = build_pos_enc(pos_type, output_size, positional_dropout_rate, max_pos_emb_len)
        self.embed = build_input_layer(
            where, input_layer, input_size, output_size, dropout_rate, pos_enc
        )

        def ffn() -> PositionwiseFeedForward:
            return PositionwiseFeedForward(
                output_size, linear_units, dropout_rate, get_activation(activation_type)
            )

        self.encoders = torch.nn.ModuleList(
            ConformerEncoderLayer(
                output_size,
                build_attention(
                    attn_type, attention_heads, output_size, attention_dropout_rate, zero_triu
                ),
                ffn(),
                ffn() if macaron_style else None,
                ConvolutionModule(
                    output_size, cnn_module_kernel, get_activation(activation_type),
                    norm_type=cnn_module_norm,
                )
                if use_cnn_module
                else None,
                dropout_rate,
                normalize_before,
                concat_after,
                stochastic_depth_rate[i],
            )
            for i in range(num_blocks)
        )
        self.normalize_before = normalize_before
        self.after_norm = torch.nn.LayerNorm(output_size, eps=1e-12) if normalize_before else None
        self.norm_intermediate = normalize_before
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
