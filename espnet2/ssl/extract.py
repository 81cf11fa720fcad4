"""Per-layer hidden-state extraction for a data dir (batched, no grad, bf16 on GPU).

Written layout (``output_dir``)::

    layer<L>/shard<k>.npz      arrays keyed by utt id, each (T, D) float32 (float16 with --half)
    layer<L>/feats.scp         ``utt layer<L>/shard<k>.npz``
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from espnet2.utils.fileio import atomic_write

logger = logging.getLogger(__name__)


@torch.no_grad()
def iter_hidden_states(
    model,
    lengths: dict[str, int],
    load: Callable[[str], np.ndarray],
    layers: list[int] | None,
    batch_size: int = 8,
    device: str = "cpu",
) -> Iterator[tuple[str, list[np.ndarray]]]:
    """Yield ``(utt, [ (T, D) per requested layer ])`` in length-sorted batches.

    ``lengths`` gives every utterance's sample count (for sorting); ``load(utt)`` reads one
    waveform, so only one batch of audio is in memory at a time.
    """
    order = sorted(lengths, key=lengths.__getitem__)
    for start in range(0, len(order), batch_size):
        utts = order[start : start + batch_size]
        waves = [load(u) for u in utts]
        lens = torch.tensor([len(w) for w in waves])
        speech = torch.zeros(len(utts), int(lens.max()))
        for row, w in enumerate(waves):
            speech[row, : len(w)] = torch.as_tensor(w, dtype=torch.float32)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            hs, hlens = model.extract_features(speech.to(device), lens.to(device), layers=layers)
        for row, utt in enumerate(utts):
            n = int(hlens[row])
            yield utt, [h[row, :n].float().cpu().numpy() for h in hs]


def write_hidden_states(
    stream: Iterator[tuple[str, list[np.ndarray]]],
    layers: list[int],
    output_dir: Path,
    shard_size: int = 1000,
    half: bool = False,
) -> int:
    """Write a stream from :func:`iter_hidden_states` in npz shards; returns the utt count."""
    output_dir = Path(output_dir)
    buffers: list[dict[str, np.ndarray]] = [{} for _ in layers]
    scp: list[list[str]] = [[] for _ in layers]
    count, shard = 0, 0

    def flush() -> None:
        nonlocal shard
        for k, layer in enumerate(layers):
            if not buffers[k]:
                continue
            rel = f"layer{layer}/shard{shard}.npz"
            mem = io.BytesIO()
            np.savez(mem, **buffers[k])
            with atomic_write(output_dir / rel, "wb") as f:
                f.write(mem.getvalue())
            scp[k] += [f"{u} {rel}" for u in buffers[k]]
            buffers[k] = {}
        shard += 1

    for utt, feats in stream:
        for k, f in enumerate(feats):
            buffers[k][utt] = f.astype(np.float16 if half else np.float32)
        count += 1
        if count % shard_size == 0:
            flush()
    flush()
    for k, layer in enumerate(layers):
        with atomic_write(output_dir / f"layer{layer}" / "feats.scp") as f:
            f.write("".join(line + "\n" for line in scp[k]))
    return count


def read_hidden_states(output_dir: Path, layer: int) -> Iterator[tuple[str, np.ndarray]]:
    """Read back what :func:`write_hidden_states` wrote for one layer."""
    output_dir = Path(output_dir)
    cache: dict[str, np.lib.npyio.NpzFile] = {}
    with open(output_dir / f"layer{layer}" / "feats.scp", encoding="utf-8") as f:
        for line in f:
            utt, rel = line.split()
            if rel not in cache:
                cache.clear()
                cache[rel] = np.load(output_dir / rel)
            yield utt, cache[rel][utt]
