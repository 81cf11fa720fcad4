"""Utterance-level pooled features for probing: SSL layers and MFCC baselines."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch


def masked_mean(hs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B,) -> (B, D): mean over valid frames only."""
    t = torch.arange(hs.size(1), device=hs.device)
    valid = (t[None, :] < lengths[:, None]).to(hs.dtype)  # (B, T)
    return (hs * valid[..., None]).sum(1) / lengths.clamp(min=1)[:, None].to(hs.dtype)


def masked_mean_std(hs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B,) -> (B, 2 D): [mean, std] over valid frames (population std, as NumPy).

    The SSL counterpart of the ``mfcc39_meanstd`` baseline's statistics pooling.
    """
    mean = masked_mean(hs, lengths)
    var = masked_mean((hs - mean[:, None, :]) ** 2, lengths)
    return torch.cat([mean, var.clamp(min=0).sqrt()], dim=-1)


POOLINGS = {"mean": masked_mean, "meanstd": masked_mean_std}


def pad_waves(
    waves: Sequence[np.ndarray], index: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``waves[i]`` for i in ``index`` -> zero-padded (B, N) float32 batch and (B,) lengths."""
    lens = torch.tensor([len(waves[i]) for i in index])
    speech = torch.zeros(len(index), int(lens.max()))
    for row, i in enumerate(index):
        speech[row, : lens[row]] = torch.from_numpy(np.asarray(waves[i], dtype=np.float32))
    return speech, lens


@torch.no_grad()
def pooled_layer_features(
    extract: Callable[[torch.Tensor, torch.Tensor], tuple[list[torch.Tensor], torch.Tensor]],
    waves: Sequence[np.ndarray],
    batch_size: int = 16,
    device: str = "cpu",
    pooling: str = "mean",
) -> np.ndarray:
    """Pool every layer of ``extract(speech, lengths)`` per utterance -> (N, L, D') float32.

    ``pooling``: ``mean`` (D' = D) or ``meanstd`` (D' = 2 D, mean and std over frames).

    Utterances are batched in length order (little padding); the encoders are padding-aware, so
    the result does not depend on batch composition. bf16 autocast on CUDA.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; use one of {sorted(POOLINGS)}")
    pool = POOLINGS[pooling]
    order = np.argsort([len(w) for w in waves])
    out: list[np.ndarray | None] = [None] * len(waves)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        speech, lens = pad_waves(waves, idx)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            hs, hlens = extract(speech.to(device), lens.to(device))
        pooled = torch.stack([pool(h.float(), hlens) for h in hs], dim=1)  # (B, L, D')
        for row, i in enumerate(idx):
            out[i] = pooled[row].cpu().numpy()
    return np.stack(out).astype(np.float32)


def pooled_mfcc(
    mfcc: Callable[[np.ndarray, int], np.ndarray], waves: Sequence[np.ndarray], fs: int, kind: str
) -> np.ndarray:
    """MFCC baselines -> (N, 1, D): ``mfcc13_mean`` (13 dims) or ``mfcc39_meanstd`` (78 dims).

    ``mfcc(wave, fs)`` must return (T, 39) Kaldi-compatible MFCC + deltas.
    """
    rows = []
    for w in waves:
        m = mfcc(np.asarray(w, dtype=np.float32), fs)
        if kind == "mfcc13_mean":
            rows.append(m[:, :13].mean(0))
        elif kind == "mfcc39_meanstd":
            rows.append(np.concatenate([m.mean(0), m.std(0)]))
        else:
            raise ValueError(f"unknown MFCC baseline {kind!r}; use mfcc13_mean or mfcc39_meanstd")
    return np.stack(rows)[:, None, :].astype(np.float32)
