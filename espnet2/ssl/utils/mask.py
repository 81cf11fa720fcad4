"""Span masking of the encoder input (wav2vec 2.0 / HuBERT / DinoSR style).

Masked frames are replaced by a learned embedding; optional channel spans are zeroed. The
algorithm follows fairseq's ``compute_mask_indices`` in spirit, written afresh:

* per utterance with ``sz`` valid frames, the number of spans is the probabilistic rounding of
  ``mask_prob * sz / mask_length`` (``floor(x + U[0, 1))``), at least ``min_masks``;
* span starts are distinct positions drawn uniformly from the starts where the shortest span of
  the batch row fits inside the valid frames (so padding is never masked); the number of spans
  is clamped to the number of such starts, which keeps very short utterances (e.g. FSDD clips
  of ~20 frames) legal;
* with ``require_same_masks`` every utterance is randomly thinned to the smallest masked-frame
  count of the batch (fairseq ``require_same_masks``), so all rows mask the same number of frames.

Expected masked fraction for ``mask_prob=0.8, mask_length=10`` on long inputs with overlapping
spans: ``1 - (1 - 0.08) ** 10 ≈ 0.57``.

Randomness comes from torch's global CPU generator (so ``torch.manual_seed`` reproduces a mask).
In eval mode the mask is drawn under a forked RNG seeded with ``eval_seed``: validation masks
are deterministic and validation does not disturb the training random stream.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

_SELECTIONS = ("static", "uniform", "normal", "poisson")


def _span_lengths(num: int, selection: str, length: int, other: float) -> torch.Tensor:
    """Lengths of ``num`` spans (long, >= 1) for a fairseq ``mask_selection`` mode."""
    if selection == "static":
        lens = torch.full((num,), length, dtype=torch.long)
    elif selection == "uniform":  # randint in [mask_other, 2 * mask_length]
        lens = torch.randint(int(other), 2 * length + 1, (num,))
    elif selection == "normal":  # round(N(mask_length, mask_other))
        lens = torch.round(torch.normal(float(length), float(other), (num,))).long()
    else:  # poisson
        lens = torch.poisson(torch.full((num,), float(length))).long()
    return lens.clamp(min=1)


def _overlapping_spans(sz: int, lens: torch.Tensor) -> torch.Tensor:
    """(sz,) bool mask of spans at distinct random starts (spans may overlap)."""
    min_len = min(int(lens.min()), sz)
    num_starts = sz - min_len + 1
    num = min(len(lens), num_starts)
    starts = torch.randperm(num_starts)[:num]
    ends = (starts + lens[:num]).clamp(max=sz)
    pos = torch.arange(sz)
    return ((pos[None, :] >= starts[:, None]) & (pos[None, :] < ends[:, None])).any(0)


def _non_overlapping_spans(sz: int, lens: torch.Tensor, min_space: int) -> torch.Tensor:
    """(sz,) bool mask of spans that neither overlap nor come closer than ``min_space`` frames.

    Spans are placed longest first; each goes into a free interval chosen with probability
    proportional to its room, and splits that interval. Spans that no longer fit are dropped.
    """
    mask = torch.zeros(sz, dtype=torch.bool)
    free = [(0, sz)]  # half-open intervals [s, e) where a span may start and end
    for length in sorted(lens.tolist(), reverse=True):
        length = min(length, sz)
        room = torch.tensor([max(e - s - length + 1, 0) for s, e in free], dtype=torch.float)
        if room.sum() <= 0:
            break
        k = int(torch.multinomial(room, 1))
        s, e = free.pop(k)
        start = s + int(torch.randint(0, int(room[k]), (1,)))
        mask[start : start + length] = True
        free += [(s, start - min_space), (start + length + min_space, e)]
        free = [(a, b) for a, b in free if b - a >= 1]
    return mask


class Masking(torch.nn.Module):
    """Time (and optional channel) span masking with a learned mask embedding.

    Args (fairseq names; HuBERT/DinoSR Base values):
        encoder_embed_dim: D of the masked features (768); the pre-encoder output dim.
        mask_prob: expected fraction of span starts, ``mask_prob`` (0.8); 0 disables masking.
        mask_selection: span-length distribution: static | uniform | normal | poisson (static).
        mask_other: second parameter of the distribution, ``mask_other`` (0).
        mask_length: span length, ``mask_length`` (10).
        no_mask_overlap: forbid overlapping spans, ``no_mask_overlap`` (False).
        mask_min_space: frames kept between spans when not overlapping (ESPnet 0, fairseq 1).
        mask_channel_*: the same options for channel spans (``mask_channel_prob`` 0 = off);
            channel spans are drawn per utterance and zero the features at every frame.
        min_masks: minimum number of spans per utterance (HuBERT 2, DinoSR 1).
        require_same_masks: equalise the masked-frame count over the batch (True).
        eval_seed: seed of the forked RNG used in eval mode; None draws from the global RNG.
    """

    def __init__(
        self,
        encoder_embed_dim: int,
        mask_prob: float = 0.8,
        mask_selection: str = "static",
        mask_other: float = 0.0,
        mask_length: int = 10,
        no_mask_overlap: bool = False,
        mask_min_space: int = 0,
        mask_channel_prob: float = 0.0,
        mask_channel_selection: str = "static",
        mask_channel_other: float = 0.0,
        mask_channel_length: int = 10,
        no_mask_channel_overlap: bool = False,
        mask_channel_min_space: int = 0,
        min_masks: int = 2,
        require_same_masks: bool = True,
        eval_seed: int | None = 0,
    ):
        super().__init__()
        problems = []
        if not 0.0 <= mask_prob <= 1.0:
            problems.append(f"mask_prob={mask_prob} (use a value in [0, 1])")
        if not 0.0 <= mask_channel_prob <= 1.0:
            problems.append(f"mask_channel_prob={mask_channel_prob} (use a value in [0, 1])")
        for name, sel in (("mask_selection", mask_selection),
                          ("mask_channel_selection", mask_channel_selection)):
            if sel not in _SELECTIONS:
                problems.append(f"{name}={sel!r} (choose one of {_SELECTIONS})")
        if mask_length < 1 or mask_channel_length < 1:
            problems.append(f"mask_length={mask_length}, mask_channel_length="
                            f"{mask_channel_length} (must be >= 1)")
        if min_masks < 0:
            problems.append(f"min_masks={min_masks} (must be >= 0)")
        if problems:
            raise ValueError("Masking: invalid options: " + "; ".join(problems))
        self.mask_prob = mask_prob
        self.mask_selection = mask_selection
        self.mask_other = mask_other
        self.mask_length = mask_length
        self.no_mask_overlap = no_mask_overlap
        self.mask_min_space = mask_min_space
        self.mask_channel_prob = mask_channel_prob
        self.mask_channel_selection = mask_channel_selection
        self.mask_channel_other = mask_channel_other
        self.mask_channel_length = mask_channel_length
        self.no_mask_channel_overlap = no_mask_channel_overlap
        self.mask_channel_min_space = mask_channel_min_space
        self.min_masks = min_masks
        self.require_same_masks = require_same_masks
        self.eval_seed = eval_seed
        self.mask_embedding = torch.nn.Parameter(torch.empty(encoder_embed_dim).uniform_())

    def compute_spans(
        self,
        sizes: list[int],
        total: int,
        prob: float,
        selection: str,
        other: float,
        length: int,
        no_overlap: bool,
        min_space: int,
        min_masks: int,
    ) -> torch.Tensor:
        """(B, total) bool CPU mask; row b masks spans within its first ``sizes[b]`` positions."""
        mask = torch.zeros(len(sizes), total, dtype=torch.bool)
        for b, sz in enumerate(sizes):
            if sz <= 0 or prob <= 0:
                continue
            num = int(prob * sz / length + float(torch.rand(())))  # probabilistic rounding
            num = max(min_masks, num)
            if num == 0:
                continue
            lens = _span_lengths(num, selection, length, other)
            if no_overlap:
                mask[b, :sz] = _non_overlapping_spans(sz, lens, min_space)
            else:
                mask[b, :sz] = _overlapping_spans(sz, lens)
        return mask

    @staticmethod
    def equalise(mask: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """Randomly unmask frames so every non-empty row has the batch-minimum count. (B, T)."""
        counts = mask.sum(1)
        nonempty = torch.tensor(sizes) > 0
        if not bool(nonempty.any()):
            return mask
        target = int(counts[nonempty].min())
        keys = torch.rand(mask.shape).masked_fill(~mask, 2.0)  # unmasked frames sort last
        order = keys.argsort(dim=1)
        rank = torch.empty_like(order).scatter_(
            1, order, torch.arange(mask.size(1)).expand_as(order).contiguous()
        )
        return mask & (rank < target)

    def _draw(self, sizes: list[int], total: int, channels: int) -> tuple[torch.Tensor, ...]:
        mask = self.compute_spans(
            sizes, total, self.mask_prob, self.mask_selection, self.mask_other,
            self.mask_length, self.no_mask_overlap, self.mask_min_space, self.min_masks,
        )
        if self.require_same_masks:
            mask = self.equalise(mask, sizes)
        channel_mask = None
        if self.mask_channel_prob > 0:
            channel_mask = self.compute_spans(
                [channels] * len(sizes), channels, self.mask_channel_prob,
                self.mask_channel_selection, self.mask_channel_other, self.mask_channel_length,
                self.no_mask_channel_overlap, self.mask_channel_min_space, 0,
            )
        return mask, channel_mask

    def forward(
        self, x: torch.Tensor, padding_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask spans of ``x``.

        Args:
            x: (B, T, C) features (pre-encoder output).
            padding_mask: (B, T) bool, True on padding frames.

        Returns:
            x_masked: (B, T, C), a new tensor (``x`` is not modified).
            mask: (B, T) bool, True on masked frames; never True on padding; all False when
                ``mask_prob == 0``.
        """
        B, T, C = x.shape
        if padding_mask.shape != (B, T):
            raise ValueError(f"Masking: padding_mask shape {tuple(padding_mask.shape)} does not "
                             f"match features {tuple(x.shape)}; pass a (B, T) mask")
        sizes = (T - padding_mask.sum(1)).tolist()  # one host sync per batch
        if not self.training and self.eval_seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.eval_seed)
                mask, channel_mask = self._draw(sizes, T, C)
        else:
            mask, channel_mask = self._draw(sizes, T, C)
        mask = mask.to(x.device, non_blocking=True)
        x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)
        if channel_mask is not None:
            x = x.masked_fill(channel_mask.to(x.device)[:, None, :], 0.0)
        return x, mask
