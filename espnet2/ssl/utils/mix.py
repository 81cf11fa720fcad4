"""Utterance mixing of the student's waveform (WavLM's denoising masked speech modelling).

In training mode, each utterance ``b`` of a batch is, with probability ``mix_prob``, overlaid
with a random segment of another utterance ``j != b`` of the same batch:

    x_b[t0 : t0 + L] += g * x_j[s0 : s0 + L],   L ~ U{1, ..., floor(max_overlap * N_b)}
    g = sqrt(E_b / (E_s * 10^(r / 10))),        r ~ U[snr_low, snr_high] dB

with ``N_b`` the valid samples of ``b``, ``E_b`` the mean energy of its valid samples and ``E_s``
that of the segment, so ``b`` stays dominant by ``r`` dB over the overlapped region's source.
The targets (k-means labels, an EMA teacher's features of the clean input) still describe
``b`` alone: the model learns to predict the primary speaker's content through interference.
WavLM: ``mix_prob`` 0.2, overlap < 50 %, energy ratio U[-5, 5] dB.

Randomness comes from torch's global CPU generator (seeded by the trainer); in eval mode the
input is returned unchanged.
"""

from __future__ import annotations

import torch


class UtteranceMixing(torch.nn.Module):
    """``(speech (B, N), lengths (B,)) -> mixed (B, N)``; no parameters."""

    def __init__(self, mix_prob: float = 0.2, max_overlap: float = 0.5,
                 snr_range: tuple[float, float] = (-5.0, 5.0)):
        super().__init__()
        if not 0.0 <= mix_prob <= 1.0:
            raise ValueError(f"UtteranceMixing: mix_prob={mix_prob} must be in [0, 1]")
        if not 0.0 < max_overlap <= 1.0:
            raise ValueError(f"UtteranceMixing: max_overlap={max_overlap} must be in (0, 1]")
        low, high = (float(v) for v in snr_range)
        if low > high:
            raise ValueError(f"UtteranceMixing: snr_range {list(snr_range)} must be [low, high]")
        self.mix_prob, self.max_overlap, self.snr_range = float(mix_prob), float(max_overlap), \
            (low, high)

    def extra_repr(self) -> str:
        return (f"mix_prob={self.mix_prob}, max_overlap={self.max_overlap}, "
                f"snr_range={list(self.snr_range)}")

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B = speech.size(0)
        if not self.training or self.mix_prob <= 0.0 or B < 2:
            return speech
        chosen = torch.nonzero(torch.rand(B) < self.mix_prob).flatten().tolist()
        if not chosen:
            return speech
        out = speech.clone()
        lens = lengths.cpu().tolist()
        low, high = self.snr_range
        for b in chosen:  # the draws are CPU scalars; the energies stay on the device (no sync)
            j = (b + int(torch.randint(1, B, ()))) % B  # any other utterance
            n_b, n_j = int(lens[b]), int(lens[j])
            if n_b < 1 or n_j < 1:
                continue
            size = int(torch.randint(1, min(max(1, int(self.max_overlap * n_b)), n_j) + 1, ()))
            src = int(torch.randint(0, n_j - size + 1, ()))
            dst = int(torch.randint(0, n_b - size + 1, ()))
            seg = speech[j, src: src + size].float()
            ratio_db = low + (high - low) * float(torch.rand(()))
            # a silent segment adds zeros and a silent primary gets gain 0: no special case
            e_b = speech[b, :n_b].float().pow(2).mean()
            e_s = (seg.pow(2).mean() * 10.0 ** (ratio_db / 10.0)).clamp_min(1e-20)
            out[b, dst: dst + size] += (torch.sqrt(e_b / e_s) * seg).to(out.dtype)
        return out
