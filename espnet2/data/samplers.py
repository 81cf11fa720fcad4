"""Batch building with ESPnet's batch types, epoch shuffling, DDP sharding, scp splitting.

A *batch* is a list of utterance ids. The batch list is built once from the
lengths in a shape file (``speech_shape``: samples per utterance), shuffled per
epoch with ``seed + epoch`` and each batch is split across DDP ranks.

Batch types (ESPnet ``--batch_type``):

* ``unsorted``: file order, ``batch_size`` utterances per batch.
* ``sorted``: sorted by length, ``batch_size`` utterances per batch.
* ``length``: sorted by length; grow a batch while ``sum(lengths) <= batch_bins``.
* ``numel``: sorted by length; grow while ``len(batch) * max(lengths) <= batch_bins``
  (padded samples per batch; SSL's choice). Unlike ESPnet, which lets the sample that
  first crosses ``batch_bins`` into the batch, the inequality holds for every batch here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from operator import itemgetter

import numpy as np

from espnet2.data.errors import DataError, Problem, raise_if
from espnet2.data.kaldi import check_same_utts, read_kv
from espnet2.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

BATCH_TYPES = ("unsorted", "sorted", "length", "numel")


def build_batches(
    batch_type: str,
    lengths: Mapping[str, int],
    *,
    batch_size: int | None = None,
    batch_bins: int | None = None,
    min_batch_size: int = 1,
    sort_in_batch: str = "descending",
    sort_batch: str = "ascending",
    drop_last: bool = False,
) -> list[list[str]]:
    """Group the utterances of ``lengths`` (``utt -> length``) into batches.

    Args:
        batch_type: one of :data:`BATCH_TYPES`.
        batch_size: utterances per batch (unsorted, sorted). ESPnet default 20.
        batch_bins: budget per batch (length: summed lengths; numel: batch size times the
            longest length). ESPnet default 1,000,000; in DDP it is the *global* budget.
        min_batch_size: fewest utterances per batch (use ``world_size`` under DDP).
        sort_in_batch: order inside a batch by length, "descending" or "ascending"
            (unsorted keeps file order).
        sort_batch: order of the batch list by length, "ascending" or "descending".
        drop_last: drop the final, incomplete batch (unless it is the only one).

    Returns:
        Batches of utterance ids; every utterance appears exactly once, except those
        dropped by ``drop_last`` or by the last-batch rule of :func:`_fix_last_batch`.
    """
    if batch_type not in BATCH_TYPES:
        raise ValueError(f"batch_type={batch_type!r}; choose one of {BATCH_TYPES}")
    for name, val, ok in (("sort_in_batch", sort_in_batch, ("descending", "ascending")),
                          ("sort_batch", sort_batch, ("ascending", "descending"))):
        if val not in ok:
            raise ValueError(f"{name}={val!r}; choose one of {ok}")
    if min_batch_size < 1:
        raise ValueError(f"min_batch_size={min_batch_size} must be >= 1")
    if not lengths:
        raise DataError(Problem(None, None, None, None, "no utterances to batch",
                                "check the shape file is not empty"))
    if batch_type in ("unsorted", "sorted"):
        if batch_size is None or batch_size < 1:
            raise ValueError(f"batch_type={batch_type} needs batch_size >= 1, got {batch_size}")
        keys = list(lengths)
        if batch_type == "sorted":
            keys.sort(key=lengths.__getitem__)
        batches = [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)]
        batches = _fix_small_last(batches, max(min_batch_size, 1), drop_last, batch_size)
    else:
        if batch_bins is None or batch_bins < 1:
            raise ValueError(f"batch_type={batch_type} needs batch_bins >= 1, got {batch_bins}")
        batches = _bin_batches(batch_type, lengths, batch_bins, min_batch_size, drop_last)
    if batch_type != "unsorted":
        # batches hold length-ascending runs of the sorted keys (also after the last-batch fixes)
        if sort_in_batch == "descending":
            for b in batches:
                b.reverse()
        if sort_batch == "descending":
            batches.reverse()
    return batches


def _bin_batches(
    batch_type: str, lengths: Mapping[str, int], bins: int, min_bs: int, drop_last: bool
) -> list[list[str]]:
    """Greedy grouping of length-sorted utterances under a bins budget."""
    if min_bs * max(lengths.values()) > bins:
        raise_if([
            Problem(None, None, utt, str(n), f"{min_bs} utterance(s) of length {n} need "
                    f"{min_bs * n} bins > batch_bins={bins}",
                    f"raise batch_bins to at least {min_bs * n}, or filter long utterances "
                    "(--max_wav_duration)")
            for utt, n in lengths.items() if min_bs * n > bins
        ])
    numel = batch_type == "numel"
    batches: list[list[str]] = []
    cur: list[str] = []
    total = 0  # running sum of lengths (length type)
    for key, n in sorted(lengths.items(), key=itemgetter(1)):
        cost = (len(cur) + 1) * n if numel else total + n  # ascending: n is the new max
        if cost > bins and len(cur) >= min_bs:
            batches.append(cur)
            cur, total = [], 0
        cur.append(key)
        total += n
    if cur:
        batches.append(cur)
    if drop_last and len(batches) > 1:
        batches.pop()
    elif len(batches) > 1 and len(batches[-1]) < min_bs:
        _fix_last_batch(batches, min_bs)
    return batches


def _fix_last_batch(batches: list[list[str]], min_bs: int) -> None:
    """Top up a too-small last batch with the longest utterances of the one before.

    The moved utterances are no longer than the last batch's own, so both batches stay
    within budget (``min_bs * max_len <= batch_bins`` was checked). If the previous batch
    cannot spare them, the last batch's utterances are dropped with a warning.
    """
    last, prev = batches[-1], batches[-2]
    need = min_bs - len(last)
    if len(prev) - need >= min_bs:
        batches[-1] = prev[-need:] + last
        batches[-2] = prev[:-need]
    else:
        logger.warning("dropping %d utterance(s) (%s ...) of the last batch: fewer than "
                       "min_batch_size=%d and no batch to take utterances from",
                       len(last), last[:3], min_bs)
        batches.pop()


def _fix_small_last(
    batches: list[list[str]], min_bs: int, drop_last: bool, batch_size: int
) -> list[list[str]]:
    if len(batches) > 1 and len(batches[-1]) < batch_size and drop_last:
        return batches[:-1]
    if len(batches) > 1 and len(batches[-1]) < min_bs:
        # ESPnet: spread the leftovers over the other batches, last ones first
        leftover = batches.pop()
        for i, utt in enumerate(leftover):
            batches[-(i % len(batches)) - 1].append(utt)
    return batches


def shuffle_batches(batches: Sequence[list[str]], seed: int, epoch: int) -> list[list[str]]:
    """The batch list in an order that depends only on ``seed + epoch`` (as ESPnet)."""
    order = np.random.RandomState(seed + epoch).permutation(len(batches))
    return [batches[i] for i in order]


def shard_batch(batch: Sequence[str], rank: int, world_size: int) -> list[str]:
    """This rank's share of a batch: ``batch[rank::world_size]`` (ESPnet).

    Every rank gets at least one utterance. When the batch has fewer utterances than
    ranks, rank ``r >= len(batch)`` gets ``[batch[r % len(batch)]]``, a duplicate that
    is counted twice in that step's gradient; :func:`even_out` removes such batches.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    if not batch:
        raise ValueError("cannot shard an empty batch")
    share = list(batch[rank::world_size])
    return share if share else [batch[rank % len(batch)]]


def even_out(batches: Sequence[list[str]], world_size: int) -> list[list[str]]:
    """Make every batch splittable over ``world_size`` ranks without duplicates.

    A batch with fewer than ``world_size`` utterances is merged into its neighbour
    (the next one, or the previous one at the end), so :func:`shard_batch` gives every
    rank a distinct, non-empty share and all ranks see the same number of batches.
    If the whole corpus has fewer utterances than ranks, utterances are repeated.
    A merged batch may exceed ``batch_bins``; build with ``min_batch_size=world_size``
    to avoid merging.
    """
    if world_size <= 1:
        return [list(b) for b in batches if b]
    out: list[list[str]] = []
    carry: list[str] = []
    for b in batches:
        carry = carry + list(b)
        if len(carry) >= world_size:
            out.append(carry)
            carry = []
    if carry:
        if out:
            out[-1] = out[-1] + carry
        else:
            logger.warning("only %d utterance(s) for %d ranks: repeating utterances",
                           len(carry), world_size)
            out.append([carry[i % len(carry)] for i in range(world_size)])
    return out


def padding_fraction(batches: Sequence[Sequence[str]], lengths: Mapping[str, int]) -> float:
    """Fraction of padded samples: ``1 - sum(lengths) / sum(len(b) * max_len(b))``."""
    real = padded = 0
    for b in batches:
        ls = [lengths[u] for u in b]
        real += sum(ls)
        padded += len(ls) * max(ls, default=0)
    return 0.0 if padded == 0 else 1.0 - real / padded


def split_scps(
    files: Sequence[str | os.PathLike], num_splits: int, output_dir: str | os.PathLike
) -> list[str]:
    """Split aligned Kaldi files (wav.scp, text, speech_shape ...) into ``num_splits`` shards.

    Keys must agree across files (checked). Keys are sorted and line ``i`` goes to shard
    ``i % num_splits`` (ESPnet ``split_scps``), written to
    ``output_dir/split.{i}/<basename>``; ``output_dir/num_splits`` holds the count.
    Each output file is opened once. Returns the split directories.
    """
    if num_splits < 1:
        raise ValueError(f"num_splits={num_splits} must be >= 1")
    names = [os.path.basename(str(f)) for f in files]
    if len(set(names)) != len(names):
        raise DataError(Problem(None, None, None, str(names), "two input files share a "
                                "basename, their shards would overwrite each other",
                                "rename one of them"))
    tables = {str(f): read_kv(f, allow_empty_value=True) for f in files}
    check_same_utts({f: t.keys() for f, t in tables.items()})
    keys = sorted(next(iter(tables.values()))) if tables else []
    if len(keys) < num_splits:
        raise DataError(Problem(str(files[0]), None, None, str(len(keys)), f"{len(keys)} "
                                f"utterances cannot fill num_splits={num_splits} shards",
                                "use fewer splits"))
    out_dirs = [os.path.join(str(output_dir), f"split.{i}") for i in range(num_splits)]
    for name, table in zip(names, tables.values()):
        for i, d in enumerate(out_dirs):
            with atomic_write(os.path.join(d, name)) as f:
                f.writelines(f"{k} {table[k]}\n" if table[k] else f"{k}\n"
                             for k in keys[i::num_splits])
    with atomic_write(os.path.join(str(output_dir), "num_splits")) as f:
        f.write(f"{num_splits}\n")
    return out_dirs
