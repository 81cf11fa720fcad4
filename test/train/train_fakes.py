"""A tiny model and an in-memory loader that follow the trainer's contracts (test support)."""

from __future__ import annotations

import torch
from torch import nn


class Interrupted(Exception):
    """Raised by :class:`FakeLoader` to simulate a killed run."""


class TinyModel(nn.Module):
    """Frames of 4 samples -> tanh MLP -> predicts each frame's mean; loss = per-frame MSE.

    Returns ``(loss, {"loss", "acc"}, weight = valid frames)``; records every forward's loss
    and every ``after_optimizer_step`` call (test-only host syncs).
    """

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.proj, self.out, self.drop = nn.Linear(4, 16), nn.Linear(16, 1), nn.Dropout(dropout)
        self.register_buffer("ema", torch.zeros(16))  # stands in for an EMA teacher
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.losses: list[float] = []
        self.steps: list[int] = []

    def forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor, **_):
        b, n = speech.shape
        x = speech[:, : n // 4 * 4].reshape(b, -1, 4)  # (B, T, 4)
        frames = torch.arange(x.shape[1], device=x.device)
        valid = frames[None, :] < (speech_lengths // 4)[:, None]  # (B, T)
        err = (self.out(self.drop(torch.tanh(self.proj(x)))).squeeze(-1) - x.mean(-1)) ** 2
        err = torch.where(valid, err, torch.zeros_like(err))
        weight = valid.sum()
        loss = err.sum() / weight
        acc = ((err < 0.5) & valid).sum() / weight
        self.losses.append(float(loss.detach()))
        return loss, {"loss": loss.detach(), "acc": acc.detach()}, weight

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        self.steps.append(step)
        self.ema.mul_(0.9).add_(0.1 * self.proj.weight.mean(1))
        self.updates += 1


class FakeLoader:
    """Global batches of ``global_batch`` utterances, a pure function of (seed, epoch, index);
    this rank gets ``batch[rank::world_size]`` (the contract of ``EpochLoader``)."""

    def __init__(self, num_batches: int = 4, global_batch: int = 2, rank: int = 0,
                 world_size: int = 1, seed: int = 0, max_len: int = 64,
                 nan_at: tuple = (), crash_at: tuple | None = None, equal_lengths: bool = False):
        self.n, self.bs, self.rank, self.ws, self.seed = num_batches, global_batch, rank, \
            world_size, seed
        self.max_len, self.nan_at, self.crash_at = max_len, set(nan_at), crash_at
        self.equal_lengths = equal_lengths
        self.calls = 0

    def num_batches(self, epoch: int) -> int:
        return self.n

    def global_batch(self, epoch: int, i: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch * 1009 + i)
        lens = torch.randint(16, self.max_len + 1, (self.bs,), generator=g)
        if self.equal_lengths:
            lens[:] = self.max_len
        speech = torch.randn(self.bs, self.max_len, generator=g)
        speech = speech * (torch.arange(self.max_len)[None] < lens[:, None])
        if (epoch, i) in self.nan_at:
            speech[min(1, self.bs - 1)] = float("nan")  # lands on rank 1 with 2 ranks
        return {"utt_id": [f"e{epoch}b{i}u{j}" for j in range(self.bs)], "speech": speech,
                "speech_lengths": lens}

    def iterate(self, epoch: int, start_batch: int = 0):
        for i in range(start_batch, self.n):
            if self.crash_at == (epoch, i):
                raise Interrupted(f"simulated kill at epoch {epoch} batch {i}")
            self.calls += 1
            b = self.global_batch(epoch, i)
            sl = slice(self.rank, None, self.ws)
            yield {"utt_id": b["utt_id"][sl], "speech": b["speech"][sl],
                   "speech_lengths": b["speech_lengths"][sl]}
