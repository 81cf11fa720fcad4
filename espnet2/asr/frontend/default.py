"""ESPnet's ``DefaultFrontend``: STFT -> power -> log-mel, (B, N) -> (B, T, n_mels).

Centred framing reflects each utterance at its *own* ends (not at the padded batch end), so
a padded utterance gives the same valid frames as alone.
"""

from __future__ import annotations

import logging

import humanfriendly
import torch

from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.data.frames import FrameGeometry
from espnet2.layers.masked_norm import time_mask
from espnet2.layers.mel import mel_filterbank

logger = logging.getLogger(__name__)


def reflect_pad_per_utterance(x: torch.Tensor, lengths: torch.Tensor, pad: int) -> torch.Tensor:
    """(B, N) -> (B, N + 2 pad): reflect-pad each row at 0 and at its own length.

    Indices that reflection cannot reach (utterances shorter than ``pad``) are clamped to the
    nearest valid sample; positions beyond ``length + pad`` only feed padded frames.
    """
    positions = torch.arange(-pad, x.size(1) + pad, device=x.device).abs().unsqueeze(0)
    last = (lengths.to(x.device).long() - 1).clamp(min=0).unsqueeze(1)  # (B, 1)
    idx = torch.where(positions > last, 2 * last - positions, positions)
    idx = torch.minimum(idx.clamp(min=0), last)
    return torch.gather(x, 1, idx)


class DefaultFrontend(AbsFrontend):
    """Log-mel filterbank frontend (ESPnet ``frontend: default``).

    Args:
        fs: sampling rate, int or string like "16k".
        n_fft: FFT size (ESPnet default 512). win_length: window (None = n_fft).
        hop_length: frame shift in samples (default 128).
        window: torch window name ("hann", "hamming", "blackman", "bartlett", "kaiser").
        center: centred frames (reflect padding of n_fft // 2 at each end).
        normalized, onesided: passed to :func:`torch.stft`.
        n_mels, fmin, fmax, htk: mel filterbank (see :mod:`espnet2.layers.mel`).
        frontend_conf: ESPnet's multichannel/WPE options; not supported (must be None/empty).
        apply_stft: False = input is already an STFT, (B, T, F, 2) real/imag with frame lengths.
    """

    def __init__(
        self,
        fs: int | str = 16000,
        n_fft: int = 512,
        win_length: int | None = None,
        hop_length: int = 128,
        window: str | None = "hann",
        center: bool = True,
        normalized: bool = False,
        onesided: bool = True,
        n_mels: int = 80,
        fmin: int | None = None,
        fmax: int | None = None,
        htk: bool = False,
        frontend_conf: dict | None = None,
        apply_stft: bool = True,
    ):
        super().__init__()
        if frontend_conf:
            raise NotImplementedError(
                f"DefaultFrontend: frontend_conf={frontend_conf} (multichannel enhancement) is "
                "not supported; remove frontend_conf.frontend_conf"
            )
        self.fs = humanfriendly.parse_size(fs) if isinstance(fs, str) else int(fs)
        self.n_fft = n_fft
        self.win_length = n_fft if win_length is None else win_length
        self.hop_length = hop_length
        self.center = center
        self.normalized = normalized
        self.onesided = onesided
        self.apply_stft = apply_stft
        self.n_mels = n_mels
        if window is None:
            win = torch.ones(self.win_length)
        else:
            window_fn = getattr(torch, f"{window}_window", None)
            if window_fn is None:
                raise ValueError(
                    f"DefaultFrontend: unknown window={window!r}; use e.g. 'hann' or 'hamming'"
                )
            win = window_fn(self.win_length)
        self.register_buffer("window", win, persistent=False)
        melmat = mel_filterbank(self.fs, n_fft, n_mels, fmin, fmax, htk)  # (n_mels, F)
        self.register_buffer("melmat", torch.from_numpy(melmat).T.contiguous(), persistent=False)
        self._geometry = FrameGeometry(n_fft, hop_length, n_fft // 2 if center else 0)

    def output_size(self) -> int:
        return self.n_mels

    def frame_geometry(self) -> FrameGeometry:
        return self._geometry

    def _power_spectrum(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, N) float32 -> (B, T, F) power |STFT|^2."""
        if self.center:
            x = reflect_pad_per_utterance(x, lengths, self.n_fft // 2)
        spec = torch.stft(
            x,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=False,
            normalized=self.normalized,
            onesided=self.onesided,
            return_complex=True,
        )  # (B, F, T)
        return torch.view_as_real(spec).square().sum(-1).transpose(1, 2)

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) waveform, (B,) samples -> (B, T, n_mels) log-mel, (B,) frames (padding = 0)."""
        with torch.autocast(input.device.type, enabled=False):
            if self.apply_stft:
                if input.dim() != 2:
                    raise ValueError(
                        f"DefaultFrontend: expected (batch, samples), got {tuple(input.shape)}"
                    )
                power = self._power_spectrum(input.float(), input_lengths)
                olens = self._geometry.num_frames_tensor(input_lengths).to(input.device)
            else:
                power = input[..., 0].float().square() + input[..., 1].float().square()
                olens = input_lengths.to(input.device).long()
            feats = torch.matmul(power, self.melmat).clamp(min=1e-10).log()  # (B, T, n_mels)
        mask = time_mask(olens, feats.size(1), feats.dtype).transpose(1, 2)  # (B, T, 1)
        return feats * mask, olens
