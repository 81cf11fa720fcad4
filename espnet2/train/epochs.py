"""Training epochs as slices of an endless stream of data epochs (``--num_iters_per_epoch``).

ESPnet semantics: with ``num_iters_per_epoch = N``, training epoch ``e`` (1-based) runs
batches ``[(e - 1)·N, e·N)`` of the stream *data epoch 1, data epoch 2, ...*, each data epoch
being the loader's full (shuffled with ``seed + epoch``) batch list. A cap below the data size
therefore walks through the whole corpus over successive epochs instead of re-reading the
first N batches of a fresh shuffle; a cap above it spans several data epochs.
"""

from __future__ import annotations

from collections.abc import Callable

Segment = tuple[int, int, int]
"""``(data_epoch, first_batch, end_batch)``: batches ``[first, end)`` of one data epoch."""


def epoch_segments(epoch: int, per_epoch: int, count: Callable[[int], int]) -> list[Segment]:
    """The data-epoch slices that make up training ``epoch`` (``per_epoch`` batches in all).

    ``count(r)`` is the number of batches of data epoch ``r`` (>= 1; usually the same for
    every ``r``; it is called for data epochs 1.. up to the last one used, so cache it if it
    is costly). Raises ValueError for a non-positive cap or an empty data epoch.
    """
    if epoch < 1 or per_epoch < 1:
        raise ValueError(f"epoch={epoch} and num_iters_per_epoch={per_epoch} must be >= 1")

    def size(r: int) -> int:
        c = int(count(r))
        if c < 1:
            raise ValueError(f"data epoch {r} has no batches; cannot fill num_iters_per_epoch")
        return c

    skip, r = (epoch - 1) * per_epoch, 1
    while skip >= (c := size(r)):
        skip, r = skip - c, r + 1
    segments, need = [], per_epoch
    while need > 0:
        take = min(size(r) - skip, need)
        segments.append((r, skip, skip + take))
        need, r, skip = need - take, r + 1, 0
    return segments


def skip_batches(segments: list[Segment], start: int) -> list[Segment]:
    """Drop the first ``start`` batches of ``segments`` (resume inside a training epoch)."""
    out = []
    for r, first, end in segments:
        if start >= end - first:
            start -= end - first
            continue
        out.append((r, first + start, end))
        start = 0
    return out
