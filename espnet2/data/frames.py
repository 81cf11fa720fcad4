"""The single place that turns a number of audio samples into a number of frames.

Every piece that needs frame arithmetic (the collate's crop, the label importer,
the k-means labeller, the preflight label-length check) calls this module, so
labels are frame-aligned by construction.

A frontend describes itself with a :class:`FrameGeometry`: frame ``i`` covers the
samples ``[i * stride - pad, i * stride - pad + receptive_field)`` and the number
of frames for ``n`` samples is ``floor((n + 2 * pad - receptive_field) / stride) + 1``
(never negative). Stacked unpadded strided convolutions compose exactly into one
such geometry (see :func:`compose`), e.g. the wav2vec 2.0 CNN is (400, 320, 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FrameGeometry:
    """Receptive field, stride and symmetric padding of a frontend, in samples."""

    receptive_field: int
    stride: int
    pad: int = 0

    def __post_init__(self) -> None:
        if self.receptive_field < 1 or self.stride < 1 or self.pad < 0:
            raise ValueError(f"invalid frame geometry {self}")

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples (0 when too short)."""
        n = int(num_samples) + 2 * self.pad - self.receptive_field
        return n // self.stride + 1 if n >= 0 else 0

    def num_frames_tensor(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Vectorised :meth:`num_frames` for a (B,) integer tensor."""
        n = num_samples.long() + 2 * self.pad - self.receptive_field
        return torch.where(n >= 0, torch.div(n, self.stride, rounding_mode="floor") + 1, 0)

    def num_samples_for(self, num_frames: int) -> int:
        """Fewest samples that give ``num_frames`` frames (inverse of :meth:`num_frames`)."""
        if num_frames <= 0:
            return 0
        return (num_frames - 1) * self.stride + self.receptive_field - 2 * self.pad

    def frame_rate(self, fs: int) -> float:
        """Frames per second at sampling rate ``fs``."""
        return fs / self.stride


def compose(layers: Iterable[tuple[int, int]]) -> FrameGeometry:
    """Geometry of stacked unpadded convolutions given as ``(kernel, stride)`` pairs.

    Nested floors of integer divisions compose::

        floor((floor((n - k1) / s1) + 1 - k2) / s2) + 1
        == floor((n - k1 - (k2 - 1) s1) / (s1 s2)) + 1

    so receptive fields and strides compose exactly.
    """
    rf, stride = 1, 1
    for kernel, s in layers:
        rf += (kernel - 1) * stride
        stride *= s
    return FrameGeometry(rf, stride, 0)


def num_frames_per_layer(num_samples: int, layers: Sequence[tuple[int, int]]) -> int:
    """Reference layer-by-layer computation ``floor((n - k) / s) + 1`` (for tests)."""
    n = int(num_samples)
    for kernel, s in layers:
        if n < kernel:
            return 0
        n = (n - kernel) // s + 1
    return n
