"""Normalisations whose statistics ignore padded time steps (for padding invariance).

PyTorch's GroupNorm averages over the whole padded time axis, so a padded utterance is
normalised differently from the same utterance alone. :class:`MaskedGroupNorm` takes the
valid lengths and averages over valid steps only; without lengths it is ``nn.GroupNorm``.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def time_mask(lengths: torch.Tensor, max_len: int, dtype: torch.dtype) -> torch.Tensor:
    """(B,) lengths -> (B, 1, T) mask of ``dtype``, 1 on valid steps."""
    positions = torch.arange(max_len, device=lengths.device)
    return (positions.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1).to(dtype)


def masked_mean_var(
    x: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row mean and ``rsqrt(var + eps)`` of (B, T) ``x`` over its first ``lengths`` steps.

    Returns two (B, 1) tensors (float32 at least). Zero-length rows get mean 0, var 0.
    """
    xf = x.float()
    m = time_mask(lengths, x.size(1), xf.dtype).squeeze(1)  # (B, T)
    n = lengths.clamp(min=1).to(xf.dtype).unsqueeze(1)  # (B, 1)
    mean = (xf * m).sum(1, keepdim=True) / n
    var = ((xf - mean).square() * m).sum(1, keepdim=True) / n
    return mean, torch.rsqrt(var + eps)


def _group_sum(per_channel: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, C) per-channel sums -> (B, C): each channel gets its group's total."""
    b, c = per_channel.shape
    total = per_channel.view(b, groups, c // groups).sum(-1, keepdim=True)
    return total.expand(b, groups, c // groups).reshape(b, c)


def _channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, C, T) x (B, C, T) -> (B, C) sums over T of ``a * b`` without a (B, C, T) temporary."""
    bsz, c, t = a.shape
    return torch.bmm(a.reshape(bsz * c, 1, t), b.reshape(bsz * c, t, 1)).view(bsz, c)


class _MaskedGroupNormFunction(torch.autograd.Function):
    """Group norm over valid steps with a hand-written backward (two (B, C, T) temporaries).

    Output on padded steps is ``bias`` (it does not depend on the input).
    """

    @staticmethod
    def forward(ctx, x, lengths, groups, weight, bias, eps):  # noqa: D401
        b, c, t = x.shape
        dtype = torch.promote_types(x.dtype, torch.float32)  # statistics in >= float32
        xf = x.to(dtype)
        m = time_mask(lengths, t, dtype)  # (B, 1, T)
        n = (lengths.clamp(min=1) * (c // groups)).to(dtype).view(b, 1)  # values per group
        mean = _group_sum(torch.bmm(xf, m.transpose(1, 2)).view(b, c), groups) / n  # (B, C)
        d = xf - mean.unsqueeze(-1)  # the only (B, C, T) buffer; becomes the output
        d.mul_(m)
        rstd = torch.rsqrt(_group_sum(_channel_dot(d, d), groups) / n + eps)  # (B, C)
        d.mul_(rstd.unsqueeze(-1))  # x_hat, 0 on padding
        if weight is not None:
            d.mul_(weight.to(dtype).view(1, c, 1)).add_(bias.to(dtype).view(1, c, 1))
        ctx.save_for_backward(x, lengths, mean, rstd, weight)
        ctx.groups = groups
        return d.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        x, lengths, mean, rstd, weight = ctx.saved_tensors
        b, c, t = x.shape
        groups = ctx.groups
        dtype = mean.dtype
        m = time_mask(lengths, t, dtype)
        n = (lengths.clamp(min=1) * (c // groups)).to(dtype).view(b, 1)
        gy = grad_out.to(dtype)
        x_hat = (x.to(dtype) - mean.unsqueeze(-1)).mul_(m).mul_(rstd.unsqueeze(-1))
        grad_w = grad_b = None
        if weight is not None:
            if ctx.needs_input_grad[3]:
                grad_w = _channel_dot(gy, x_hat).sum(0).to(weight.dtype)
            if ctx.needs_input_grad[4]:
                grad_b = gy.sum((0, 2)).to(weight.dtype)
            g = gy * weight.to(dtype).view(1, c, 1)
        else:
            g = gy.clone()
        g.mul_(m)
        # d x = rstd * (g - mean_group(g) - x_hat * mean_group(g * x_hat)) on valid steps
        mean_g = _group_sum(g.sum(-1), groups) / n
        mean_gx = _group_sum(_channel_dot(g, x_hat), groups) / n
        g.sub_(mean_g.unsqueeze(-1)).addcmul_(x_hat, mean_gx.unsqueeze(-1), value=-1.0)
        g.mul_(rstd.unsqueeze(-1)).mul_(m)
        return g.to(x.dtype), None, None, grad_w, grad_b, None


class MaskedGroupNorm(torch.nn.GroupNorm):
    """GroupNorm over (B, C, T) with statistics over valid time steps only.

    Same parameters (``weight``, ``bias``) as :class:`torch.nn.GroupNorm`, so checkpoints are
    interchangeable. wav2vec 2.0's first CNN layer uses ``num_groups == num_channels`` = 512
    (fairseq ``extractor_mode="default"``): per-channel normalisation over time.
    Without lengths this is ``F.group_norm``; with lengths a fused custom autograd function
    (statistics in float32, output in the input's dtype, ``bias`` on padded steps).
    """

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, C, T), optional (B,) valid lengths -> (B, C, T)."""
        if lengths is None:
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        lengths = lengths.to(device=x.device, dtype=torch.long)
        return _MaskedGroupNormFunction.apply(
            x, lengths, self.num_groups, self.weight, self.bias, self.eps
        )
