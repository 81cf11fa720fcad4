"""SpecAugment masking (ESPnet ``specaug: specaug``), active in training only.

Masks are drawn per utterance; time masks are placed inside each utterance's valid frames.
Masked values are set to 0 (for log-mel input after mean normalisation this is the mean).
Time warping is not provided. Frequency warping (a per-utterance stretch of the feature axis,
VTLP-like) changes the apparent vocal-tract length while keeping every frame in place, so
frame-level targets computed on the clean audio stay aligned: with an EMA teacher that sees
the clean input (``ESPnetSSLModel``), the student is taught to be speaker-invariant
(the ContentVec idea, Qian et al. 2022).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from espnet2.asr.specaug.abs_specaug import AbsSpecAug

logger = logging.getLogger(__name__)


def warp_freq(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Stretch the feature axis of (B, T, D) by a per-utterance factor ``factors`` (B,).

    ``out[b, t, k] = x[b, t, k / a_b]`` with linear interpolation and the edge bin repeated:
    ``a > 1`` moves spectral peaks (formants) up, ``a < 1`` down; ``a = 1`` is the identity.
    """
    b, _, d = x.shape
    pos = (torch.arange(d, device=x.device, dtype=torch.float32)[None, :]
           / factors.to(x.device, torch.float32)[:, None]).clamp(0, d - 1)  # (B, D)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=d - 1)
    w = (pos - lo).to(x.dtype)[:, None, :]
    lo = lo[:, None, :].expand(-1, x.size(1), -1)
    hi = hi[:, None, :].expand(-1, x.size(1), -1)
    return x.gather(2, lo) * (1 - w) + x.gather(2, hi) * w


def mask_along_axis(
    x: torch.Tensor,
    widths: torch.Tensor,
    extents: torch.Tensor,
    dim: int,
) -> torch.Tensor:
    """Zero ``M`` random spans per utterance along ``dim`` (1 = time, 2 = freq) of (B, T, D).

    ``widths``: (B, M) integer span widths; ``extents``: (B,) size of the axis each
    utterance may be masked in (valid length for time, D for frequency).
    """
    b = x.size(0)
    room = (extents.view(b, 1) - widths).clamp(min=0)  # (B, M)
    starts = (torch.rand(widths.shape, device=x.device) * (room + 1)).long()  # U{0..room}
    positions = torch.arange(x.size(dim), device=x.device).view(1, 1, -1)  # (1, 1, L)
    spans = (positions >= starts.unsqueeze(-1)) & (positions < (starts + widths).unsqueeze(-1))
    masked = spans.any(dim=1)  # (B, L)
    shape = (b, -1, 1) if dim == 1 else (b, 1, -1)
    return x.masked_fill(masked.view(shape), 0.0)


class SpecAug(AbsSpecAug):
    """Frequency and time masking (Park et al. 2019) on (B, T, D) features.

    Args:
        apply_time_warp, time_warp_window, time_warp_mode: time warping is not implemented;
            ``apply_time_warp=True`` raises NotImplementedError.
        apply_freq_mask: enable frequency masks.
        freq_mask_width_range: (min, max) width in bins, max exclusive (ESPnet default (0, 20)).
        num_freq_mask: frequency masks per utterance.
        apply_time_mask: enable time masks.
        time_mask_width_range: (min, max) width in frames, max exclusive.
        time_mask_width_ratio_range: (min, max) width as a ratio of each utterance's length
            (used when ``time_mask_width_range`` is None).
        num_time_mask: time masks per utterance.
        apply_freq_warp: stretch the feature axis by a factor drawn per utterance from
            ``freq_warp_range`` (applied before the masks).
        freq_warp_range: (min, max) stretch factors, e.g. (0.85, 1.15).
    """

    def __init__(
        self,
        apply_time_warp: bool = False,
        time_warp_window: int = 5,
        time_warp_mode: str = "bicubic",
        apply_freq_mask: bool = True,
        freq_mask_width_range: Sequence[int] | int = (0, 20),
        num_freq_mask: int = 2,
        apply_time_mask: bool = True,
        time_mask_width_range: Sequence[int] | int | None = None,
        time_mask_width_ratio_range: Sequence[float] | float | None = None,
        num_time_mask: int = 2,
        apply_freq_warp: bool = False,
        freq_warp_range: Sequence[float] = (0.9, 1.1),
    ):
        super().__init__()
        if apply_time_warp:
            raise NotImplementedError(
                "SpecAug: time warping is not implemented; set specaug_conf.apply_time_warp: false"
            )
        if not (apply_freq_mask or apply_time_mask or apply_freq_warp):
            raise ValueError(
                "SpecAug: apply_freq_mask, apply_time_mask and apply_freq_warp are all false; "
                "set specaug: null instead"
            )
        warp = tuple(float(v) for v in freq_warp_range)
        if len(warp) != 2 or not 0 < warp[0] <= warp[1]:
            raise ValueError(f"SpecAug: freq_warp_range={list(freq_warp_range)} must be "
                             "(min, max) with 0 < min <= max, e.g. [0.85, 1.15]")
        self.apply_freq_warp = apply_freq_warp
        self.freq_warp_range = warp
        no_time_width = time_mask_width_range is None and time_mask_width_ratio_range is None
        if apply_time_mask and no_time_width:
            raise ValueError(
                "SpecAug: apply_time_mask needs time_mask_width_range or "
                "time_mask_width_ratio_range in specaug_conf"
            )
        self.apply_freq_mask = apply_freq_mask
        self.freq_range = _as_range(freq_mask_width_range, "freq_mask_width_range")
        self.num_freq_mask = num_freq_mask
        self.apply_time_mask = apply_time_mask
        self.time_range = (
            None
            if time_mask_width_range is None
            else _as_range(time_mask_width_range, "time_mask_width_range")
        )
        self.time_ratio_range = (
            None
            if time_mask_width_ratio_range is None
            else _as_range(time_mask_width_ratio_range, "time_mask_width_ratio_range", ratio=True)
        )
        self.num_time_mask = num_time_mask

    def forward(
        self, x: torch.Tensor, x_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, D), (B,) -> masked (B, T, D), (B,); identity in eval mode."""
        if not self.training:
            return x, x_lengths
        b, t, d = x.shape
        lengths = (
            torch.full((b,), t, device=x.device)
            if x_lengths is None
            else x_lengths.to(x.device).long()
        )
        if self.apply_freq_warp:
            lo, hi = self.freq_warp_range
            x = warp_freq(x, lo + (hi - lo) * torch.rand(b, device=x.device))
        if self.apply_freq_mask and self.num_freq_mask > 0:
            lo, hi = self.freq_range
            widths = torch.randint(int(lo), int(hi), (b, self.num_freq_mask), device=x.device)
            x = mask_along_axis(x, widths, torch.full((b,), d, device=x.device), dim=2)
        if self.apply_time_mask and self.num_time_mask > 0:
            shape = (b, self.num_time_mask)
            if self.time_range is not None:
                lo, hi = self.time_range
                widths = torch.randint(int(lo), int(hi), shape, device=x.device)
            else:
                lo, hi = self.time_ratio_range
                ratio = lo + (hi - lo) * torch.rand(shape, device=x.device)
                widths = (ratio * lengths.view(b, 1)).long()
            x = mask_along_axis(x, widths, lengths, dim=1)
        return x, x_lengths


def _as_range(
    value: Sequence[float] | float, name: str, ratio: bool = False
) -> tuple[float, float]:
    """ESPnet accepts ``max`` or ``(min, max)``; returns (min, max).

    Integer widths are drawn from ``[min, max)`` (needs min < max); ratios from
    ``[min, max]`` within [0, 1].
    """
    lo, hi = (0, value) if isinstance(value, (int, float)) else tuple(value)
    ok = 0 <= lo <= hi <= 1 if ratio else 0 <= lo < hi
    if not ok:
        rule = "0 <= min <= max <= 1" if ratio else "0 <= min < max (max exclusive)"
        raise ValueError(f"SpecAug: {name}={value} must satisfy {rule}; fix specaug_conf")
    return lo, hi
