"""wav2vec 2.0 / HuBERT convolutional feature extractor (ESPnet ``frontend: wav2vec_cnn``).

Padding invariance: an utterance padded inside a batch gives the same valid frames as alone.
An unpadded strided convolution's valid output frames only read valid inputs, so the only
leak would be normalisation statistics; the first layer's GroupNorm therefore uses
:class:`~espnet2.layers.masked_norm.MaskedGroupNorm` (valid steps only), LayerNorm is per
frame, and padded output frames are zeroed once at the end (intermediate padded values
never reach a valid frame, so zeroing them after every block would only cost memory traffic).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import humanfriendly
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.data.frames import FrameGeometry, compose
from espnet2.layers.masked_norm import MaskedGroupNorm, masked_mean_var, time_mask

logger = logging.getLogger(__name__)

WAV2VEC2_SHAPES: tuple[tuple[int, int, int], ...] = (
    ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
)


class ChannelLayerNorm(torch.nn.LayerNorm):
    """LayerNorm over channels of a (B, C, T) tensor, per frame (fairseq ``layer_norm`` mode)."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        y = F.layer_norm(x.transpose(1, 2), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.transpose(1, 2)


class ConvBlock(torch.nn.Module):
    """conv -> [norm] -> GELU on (B, C_in, N) -> (B, C_out, floor((N - k) / s) + 1).

    ``conv_mode``: "standard" (dense Conv1d), "depth_only" (grouped Conv1d with
    ``groups = C_in``), "depth_sep" (depthwise k-tap conv, then pointwise 1x1 conv).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        bias: bool,
        norm: torch.nn.Module | None,
        conv_mode: str,
    ):
        super().__init__()
        self.kernel = kernel
        self.stride = stride
        if conv_mode == "standard":
            self.conv = torch.nn.Conv1d(in_channels, out_channels, kernel, stride, bias=bias)
        elif conv_mode == "depth_only":
            if out_channels % in_channels != 0:
                raise ValueError(
                    f"CNNFrontend: conv_mode=depth_only needs out_channels ({out_channels}) to "
                    f"be a multiple of in_channels ({in_channels}); fix frontend_conf.shapes"
                )
            self.conv = torch.nn.Conv1d(
                in_channels, out_channels, kernel, stride, bias=bias, groups=in_channels
            )
        elif conv_mode == "depth_sep":
            self.conv = torch.nn.Sequential(
                torch.nn.Conv1d(
                    in_channels, in_channels, kernel, stride, bias=bias, groups=in_channels
                ),
                torch.nn.Conv1d(in_channels, out_channels, 1, bias=bias),
            )
        else:
            raise ValueError(
                f"CNNFrontend: unknown conv_mode={conv_mode!r}; "
                "choose 'standard', 'depth_only' or 'depth_sep'"
            )
        for module in self.modules():
            if isinstance(module, torch.nn.Conv1d):
                torch.nn.init.kaiming_normal_(module.weight)  # fairseq's init
        self.norm = norm

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """(B, C_in, N), output lengths (B,) or None (no padding) -> (B, C_out, T)."""
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, lengths)
        return F.gelu(x)


class CNNFrontend(AbsFrontend):
    """wav2vec 2.0 feature extractor: (B, N) waveform -> (B, T, C) at 20 ms hop (16 kHz).

    Args:
        norm_mode: "group_norm" (GroupNorm, groups = channels, first layer only; fairseq
            ``extractor_mode="default"``, HuBERT/wav2vec 2.0 Base) or "layer_norm" (channel
            LayerNorm in every layer; ``extractor_mode="layer_norm"``, Large).
        conv_mode: "standard" (Base), "depth_only" or "depth_sep" (cheaper variants).
        bias: conv bias (fairseq ``conv_bias``; Base: False).
        shapes: (channels, kernel, stride) per layer (fairseq ``conv_feature_layers``;
            Base: [(512,10,5)] + [(512,3,2)]*4 + [(512,2,2)]*2 = 400-sample window, 320 hop).
        fs: sampling rate, int or string like "16k" (recorded for the frame rate).
        normalize_audio: per-utterance zero-mean unit-variance over valid samples
            (fairseq ``normalize``; Base: False, Large: True).
        normalize_output: LayerNorm (no affine) over channels of every output frame.
        checkpoint_layers: recompute the first k blocks in backward (training only); the first
            block's output is the largest activation, so k=1 already cuts peak memory a lot.
    """

    def __init__(
        self,
        norm_mode: str = "group_norm",
        conv_mode: str = "standard",
        bias: bool = False,
        shapes: Sequence[Sequence[int]] = WAV2VEC2_SHAPES,
        fs: int | str = 16000,
        normalize_audio: bool = False,
        normalize_output: bool = False,
        checkpoint_layers: int = 0,
    ):
        super().__init__()
        if norm_mode not in ("group_norm", "layer_norm"):
            raise ValueError(
                f"CNNFrontend: unknown norm_mode={norm_mode!r}; choose 'group_norm' or 'layer_norm'"
            )
        shapes = [tuple(int(v) for v in shape) for shape in shapes]
        bad = [shape for shape in shapes if len(shape) != 3 or min(shape) < 1]
        if not shapes or bad:
            raise ValueError(
                f"CNNFrontend: shapes must be a non-empty list of positive (channels, kernel, "
                f"stride) triples; got {shapes}"
            )
        self.fs = humanfriendly.parse_size(fs) if isinstance(fs, str) else int(fs)
        self.normalize_audio = normalize_audio
        self.normalize_output = normalize_output
        self.checkpoint_layers = checkpoint_layers
        self.shapes = shapes
        blocks = []
        in_channels = 1
        for i, (channels, kernel, stride) in enumerate(shapes):
            if norm_mode == "layer_norm":
                norm = ChannelLayerNorm(channels)
            elif i == 0:
                norm = MaskedGroupNorm(channels, channels)
            else:
                norm = None
            blocks.append(ConvBlock(in_channels, channels, kernel, stride, bias, norm, conv_mode))
            in_channels = channels
        self.conv_layers = torch.nn.ModuleList(blocks)
        self._geometry = compose([(k, s) for _, k, s in shapes])

    def output_size(self) -> int:
        return self.shapes[-1][0]

    def frame_geometry(self) -> FrameGeometry:
        return self._geometry

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) waveform, (B,) sample counts -> (B, T, C) features, (B,) frame counts."""
        if input.dim() != 2:
            raise ValueError(
                f"CNNFrontend: expected a (batch, samples) waveform, got shape "
                f"{tuple(input.shape)}; mix multi-channel audio down before the frontend"
            )
        lengths = input_lengths.to(device=input.device, dtype=torch.long)
        padded = bool((lengths < input.size(1)).any())  # one host sync per batch
        x = input
        if self.normalize_audio:
            mean, rstd = masked_mean_var(x, lengths)
            x = ((x.float() - mean) * rstd).to(input.dtype)
            if padded:
                x = x * time_mask(lengths, x.size(1), x.dtype).squeeze(1)
        x = x.unsqueeze(1)  # (B, 1, N)
        for i, block in enumerate(self.conv_layers):
            lengths = torch.div(lengths - block.kernel, block.stride, rounding_mode="floor") + 1
            lengths = lengths.clamp(min=0)
            block_lengths = lengths if padded else None
            if i < self.checkpoint_layers and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, block_lengths, use_reentrant=False)
            else:
                x = block(x, block_lengths)
        x = x.transpose(1, 2)  # (B, T, C)
        if self.normalize_output:
            x = F.layer_norm(x, x.shape[-1:])
        if padded:
            x = x * time_mask(lengths, x.size(1), x.dtype).transpose(1, 2)
        return x, lengths
