"""Per-layer hidden-state extraction for a data dir (batched, no grad, bf16 on GPU).

Written layout (``output_dir``)::

    layer<L>/shard<k>.npz      arrays keyed by utt id, each (T, D) float32 (float16 with --half)
    layer<L>/feats.scp         ``utt layer<L>/shard<k>.npz``
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from espnet2.utils.fileio import atomic_write

logger = logging.getLogger(__name__)


@torch.no_grad()
def iter_hidden_states(
    model,
    items: Sequence[tuple[str, np.ndarray]],
    layers: list[int] | None,
    batch_size: int = 8,
    device: str = "cpu",
) -> Iterator[tuple[str, list[np.ndarray]]]:
    """Yield ``(utt, [ (T, D) per requested layer ])`` in length-sorted batches."""
    order = sorted(range(len(items)), key=lambda i: len(items[i][1]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        lens = torch.tensor([len(items[i][1]) for i in idx])
        speech = torch.zeros(len(idx), int(lens.max()))
        for row, i in enumerate(idx):
            speech[row, : lens[row]] = torch.as_tensor(items[i][1], dtype=torch.float32)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            hs, hlens = model.extract_features(speech.to(device), lens.to(device), layers=layers)
        for row, i in enumerate(idx):
            n = int(hlens[row])
            yield items[i][0], [h[row, :n].float().cpu().numpy() for h in hs]


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
