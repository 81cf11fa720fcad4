"""Mel filterbank (numpy), Slaney-style by default as librosa's ``filters.mel``.

Slaney mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above (27 mels per
factor 6.4); HTK scale: ``2595 log10(1 + f / 700)``. Each triangular filter is area-normalised
("slaney" norm): height ``2 / (f_right - f_left)``.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

_F_SP = 200.0 / 3  # Hz per mel in the linear region (Slaney)
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15 mels
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(freqs: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Frequencies in Hz -> mels (Slaney or HTK scale)."""
    f = np.asarray(freqs, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    linear = f / _F_SP
    log_part = _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, log_part, linear)


def mel_to_hz(mels: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Mels -> frequencies in Hz (inverse of :func:`hz_to_mel`)."""
    m = np.asarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    linear = m * _F_SP
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(m, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(m >= _MIN_LOG_MEL, log_part, linear)


def mel_filterbank(
    fs: int,
    n_fft: int,
    n_mels: int = 80,
    fmin: float | None = None,
    fmax: float | None = None,
    htk: bool = False,
) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 matrix mapping a power spectrum to mel bands.

    ``fmin`` defaults to 0 and ``fmax`` to ``fs / 2`` (ESPnet's LogMel defaults).
    """
    fmin = 0.0 if fmin is None else float(fmin)
    fmax = fs / 2.0 if fmax is None else float(fmax)
    if not 0.0 <= fmin < fmax <= fs / 2.0:
        raise ValueError(
            f"mel filterbank: need 0 <= fmin < fmax <= fs/2, got fmin={fmin}, fmax={fmax}, "
            f"fs={fs}; fix frontend_conf fmin/fmax"
        )
    bin_freqs = np.linspace(0.0, fs / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_freqs[None, :] - left) / (centre - left)
    falling = (right - bin_freqs[None, :]) / (right - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= 2.0 / (right - left)
    empty = np.flatnonzero(weights.max(axis=1) == 0)
    if empty.size:
        logger.warning(
            "mel filterbank: %d of %d filters cover no FFT bin (n_fft=%d too small for "
            "n_mels=%d); increase n_fft or reduce n_mels",
            empty.size,
            n_mels,
            n_fft,
            n_mels,
        )
    return weights.astype(np.float32)
