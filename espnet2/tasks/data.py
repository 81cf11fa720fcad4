"""Data helpers of the task: utterance lengths for batching and the split-corpus loader."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def speech_lengths(dataset, shape_file: str | None) -> dict[str, int]:
    """``utt -> num_samples`` from the shape file, else from the audio headers (slow)."""
    from espnet2.data.kaldi import read_lengths

    if shape_file is not None:
        return read_lengths(shape_file)
    logger.info("no shape file: reading %d audio headers (run --collect_stats to avoid this)",
                len(dataset))
    return {k: dataset.num_samples(k) for k in dataset.keys()}  # header only; honours segments


class MultiSplitLoader:
    """``--multiple_iterator``: the splits of an epoch in a seeded random order, each split's
    loader built when reached and released after (memory ~ one split). Batch counts per split
    are computed once from the shape files."""

    def __init__(self, make_loader, num_splits: int, seed: int):
        self.make_loader, self.num_splits, self.seed = make_loader, num_splits, seed
        self.counts = []
        for i in range(num_splits):
            loader = make_loader(i)
            self.counts.append(loader.num_batches(1))
            del loader

    def _order(self, epoch: int) -> list[int]:
        import numpy as np

        return list(np.random.RandomState(self.seed + epoch).permutation(self.num_splits))

    def num_batches(self, epoch: int) -> int:
        return sum(self.counts)

    def iterate(self, epoch: int, start_batch: int = 0):
        for i in self._order(epoch):
            if start_batch >= self.counts[i]:
                start_batch -= self.counts[i]
                continue
            loader = self.make_loader(i)
            yield from loader.iterate(epoch, start_batch)
            start_batch = 0
            del loader
