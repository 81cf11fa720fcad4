"""Per-epoch iteration over prebuilt batches: shuffle, DDP shard, DataLoader workers, resume.

Every rank builds the same batch list, shuffles it with ``seed + epoch`` and takes
``shard_batch(batch, rank, world_size)`` of each batch, so all ranks run the same
number of steps and the union of their shares is the global batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from espnet2.data.errors import DataError, Problem
from espnet2.data.samplers import even_out, shard_batch, shuffle_batches

logger = logging.getLogger(__name__)


class _KeyedDataset(torch.utils.data.Dataset):
    """``ds[utt] -> (utt, ds[utt])``; any error names the utterance it happened on."""

    def __init__(self, dataset: Mapping[str, Any]):
        self.dataset = dataset

    def __getitem__(self, utt: str) -> tuple[str, Any]:
        try:
            return utt, self.dataset[utt]
        except DataError:
            raise
        except Exception as e:
            raise DataError(Problem(None, None, utt, None, f"{type(e).__name__} while loading "
                                    f"the utterance: {e}", "check this utterance's files")) from e

    def __len__(self) -> int:
        return len(self.dataset)


def _worker_init(worker_id: int) -> None:
    # Each worker decodes audio; more than one intra-op thread per worker oversubscribes CPUs.
    torch.set_num_threads(1)


class EpochLoader:
    """Iterate the batches of one epoch for one rank.

    Args:
        dataset: ``dataset[utt_id] -> {"speech", "text"?}`` (e.g. :class:`SSLDataset`).
        batches: global batches of utterance ids (from :func:`build_batches`); batches
            with fewer utterances than ranks are merged by :func:`even_out`.
        collate: ``collate(list[(utt_id, item)]) -> batch``; ``set_epoch`` is called if present.
        seed: shuffling seed; the order of epoch ``e`` depends only on ``seed + e``.
        num_workers: DataLoader worker processes (0: load in this process).
        rank, world_size: DDP position; this rank yields ``shard_batch(b, rank, world_size)``.
        shuffle: shuffle the batch order each epoch (False: keep ``batches`` order).
        pin_memory: DataLoader ``pin_memory``.
    """

    def __init__(
        self,
        dataset: Mapping[str, Any],
        batches: Sequence[list[str]],
        collate: Callable[[list], dict],
        *,
        seed: int = 0,
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        pin_memory: bool = False,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        self.dataset = _KeyedDataset(dataset)
        self.batches = even_out(batches, world_size)
        if not self.batches:
            raise ValueError("no batches to iterate")
        self.collate = collate
        self.seed = seed
        self.num_workers = num_workers
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.pin_memory = pin_memory

    def num_batches(self, epoch: int) -> int:
        """Steps in ``epoch`` (the same on every rank and every epoch)."""
        return len(self.batches)

    def rank_batches(self, epoch: int, start_batch: int = 0) -> list[list[str]]:
        """This rank's utterance ids for each remaining step of ``epoch``."""
        order = shuffle_batches(self.batches, self.seed, epoch) if self.shuffle else self.batches
        return [shard_batch(b, self.rank, self.world_size) for b in order[start_batch:]]

    def iterate(self, epoch: int, start_batch: int = 0) -> Iterator[dict]:
        """Yield collated batches of ``epoch``, skipping the first ``start_batch`` (resume)."""
        if not 0 <= start_batch <= len(self.batches):
            raise ValueError(f"start_batch={start_batch} outside [0, {len(self.batches)}]")
        shares = self.rank_batches(epoch, start_batch)
        if not shares:
            return
        if hasattr(self.collate, "set_epoch"):
            self.collate.set_epoch(epoch)  # before the workers receive a copy of the collate
        loader = DataLoader(
            self.dataset,
            batch_sampler=shares,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            worker_init_fn=_worker_init if self.num_workers > 0 else None,
        )
        yield from loader
