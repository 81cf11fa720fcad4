"""Conformer convolution module (Gulati et al., 2020, Fig. 2), padding-aware.

    x -> pointwise conv (D -> 2D) -> GLU -> [zero padded frames] -> depthwise conv (kernel K)
      -> norm -> activation (swish) -> pointwise conv (D -> D)

Padding: padded frames are zeroed right before the depthwise convolution, so a valid frame near
the end of a short utterance sees the same zeros it would see if the utterance were alone.

Normalisation (``norm_type``):
* ``"batch_norm"`` (default, ESPnet's): :class:`MaskedBatchNorm1d`, a ``BatchNorm1d`` (same
  parameters and buffers, so ESPnet checkpoints load) whose batch statistics and running-stat
  updates count only valid frames. Eval mode uses running stats: exactly padding invariant.
  Train mode: statistics do not depend on padding, but (as any BatchNorm) they do depend on the
  other utterances of the batch, so an utterance's training output changes with its batch mates.
  Under DDP, statistics are per rank (no SyncBatchNorm). With activation checkpointing the
  block's forward runs twice, so running statistics get two updates per step (as with stock
  ``BatchNorm1d`` under checkpointing).
* ``"layer_norm"``: LayerNorm over channels per frame; batch independent in train and eval.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


class MaskedBatchNorm1d(torch.nn.BatchNorm1d):
    """BatchNorm over (B, C, T) that ignores padded frames.

    ``forward(x (B, C, T), valid (B, 1, T) bool or None) -> (B, C, T)``. With ``valid=None`` it is
    the stock ``BatchNorm1d``. Statistics are computed in float32 (safe under AMP).
    """

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if valid is None or not (self.training or not self.track_running_stats):
            return super().forward(x)
        m = valid.to(torch.float32)  # (B, 1, T)
        count = m.sum().clamp(min=1.0)
        xf = x.to(torch.float32)
        mean = (xf * m).sum(dim=(0, 2)) / count  # (C,)
        var = (((xf - mean[None, :, None]) * m) ** 2).sum(dim=(0, 2)) / count  # biased
        if self.training and self.track_running_stats:
            self._update_running_stats(mean, var, count)
        y = (xf - mean[None, :, None]) * torch.rsqrt(var[None, :, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None] + self.bias[None, :, None]
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count) -> None:
        self.num_batches_tracked += 1
        if self.momentum is None:  # cumulative moving average, as BatchNorm1d does
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        unbiased = var * (count / (count - 1.0).clamp(min=1.0))
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


class ConvolutionModule(torch.nn.Module):
    """Conformer convolution module, (B, T, D) -> (B, T, D).

    Args:
        channels: model dimension D.
        kernel_size: depthwise kernel K, odd (ESPnet ``cnn_module_kernel``; Conformer paper 32,
            ESPnet 31 so that "same" padding is symmetric).
        activation: after the norm (ESPnet: the encoder's ``activation_type``, swish).
        bias: biases of the three convolutions.
        norm_type: ``"batch_norm"`` (ESPnet default, masked) or ``"layer_norm"``; see module doc.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        activation: torch.nn.Module | None = None,
        bias: bool = True,
        norm_type: str = "batch_norm",
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(
                f"convolution_module.py: cnn_module_kernel={kernel_size} must be odd so the "
                "depthwise convolution keeps the frame count; use e.g. 31"
            )
        if norm_type not in ("batch_norm", "layer_norm"):
            raise ValueError(
                f"convolution_module.py: unknown norm_type {norm_type!r}; "
                "use 'batch_norm' or 'layer_norm'"
            )
        self.norm_type = norm_type
        self.pointwise_conv1 = torch.nn.Conv1d(channels, 2 * channels, 1, bias=bias)
        self.depthwise_conv = torch.nn.Conv1d(
            channels, channels, kernel_size, padding=(kernel_size - 1) // 2,
            groups=channels, bias=bias,
        )
        if norm_type == "batch_norm":
            self.norm = MaskedBatchNorm1d(channels)
        else:
            self.norm = torch.nn.LayerNorm(channels)
        self.pointwise_conv2 = torch.nn.Conv1d(channels, channels, 1, bias=bias)
        self.activation = activation if activation is not None else torch.nn.SiLU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D), mask (B, 1, T) bool True on valid frames (None = all valid) -> (B, T, D)."""
        x = x.transpose(1, 2)  # (B, D, T)
        x = torch.nn.functional.glu(self.pointwise_conv1(x), dim=1)  # (B, D, T)
        if mask is not None:
            x = x.masked_fill(~mask, 0.0)
        x = self.depthwise_conv(x)
        if self.norm_type == "batch_norm":
            x = self.norm(x, mask)
        else:
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        x = self.pointwise_conv2(self.activation(x))
        return x.transpose(1, 2)
