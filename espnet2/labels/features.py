"""Frame features for k-means pseudo-labels, streamed one utterance at a time.

Two sources, both generators of ``(utt_id, feats)`` with ``feats`` a ``(T, D)`` float32
array (never a whole-corpus matrix):

* :func:`iter_mfcc` -- iteration 0 of HuBERT: Kaldi-compatible MFCC (13 cepstra, no energy,
  no dither, ``snip_edges``) + Kaldi ``add-deltas`` (window 2) = 39 dims at 100 Hz. This is
  what hubert1's ``dump_feats.py --feature_type mfcc`` / fairseq ``dump_mfcc_feature.py``
  compute (the waveform is fed in [-1, 1] scale like they do; the scale only shifts c0).
* :class:`ModelLayerFeatures` -- iteration >= 1: the output of block ``L`` of a trained
  model's ``extract_features(speech, speech_lengths, layers=[L])``, batched, on GPU when
  available. Its frames are already the encoder's frames.

The MFCC frame ``t`` covers samples ``[t * hop, t * hop + win)``; that is the
:class:`~espnet2.data.frames.FrameGeometry` ``(win, hop, 0)`` returned by
:func:`mfcc_geometry` (``(400, 160, 0)`` at 16 kHz). :mod:`espnet2.labels.assign` maps it
onto the encoder geometry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import kaldi_native_fbank as knf
import numpy as np
import torch

from espnet2.data.audio import read_audio
from espnet2.data.frames import FrameGeometry

logger = logging.getLogger(__name__)

#: Number of static cepstra (Kaldi ``--num-ceps``; hubert1/fairseq use the default 13).
NUM_CEPS = 13
#: Kaldi ``add-deltas`` ``--delta-window`` and ``--delta-order`` (defaults 2 and 2).
DELTA_WINDOW = 2
DELTA_ORDER = 2
MFCC_DIM = NUM_CEPS * (DELTA_ORDER + 1)

Utterance = tuple[str, np.ndarray]


def mfcc_options(fs: int) -> knf.MfccOptions:
    """Kaldi ``compute-mfcc-feats`` options as hubert1 uses them (25 ms / 10 ms, 23 mel bins).

    ``use_energy=False`` (c0 instead of log energy) and ``dither=0`` (deterministic labels)
    follow ``torchaudio.compliance.kaldi.mfcc(..., use_energy=False)`` used by fairseq.
    """
    opts = knf.MfccOptions()
    opts.frame_opts.samp_freq = float(fs)
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = True
    opts.use_energy = False
    opts.num_ceps = NUM_CEPS
    return opts


def mfcc_geometry(fs: int) -> FrameGeometry:
    """Geometry of :func:`compute_mfcc` frames: 25 ms window, 10 ms hop, no padding."""
    opts = mfcc_options(fs)
    win = int(fs * opts.frame_opts.frame_length_ms / 1000)
    hop = int(fs * opts.frame_opts.frame_shift_ms / 1000)
    return FrameGeometry(win, hop, 0)


def compute_mfcc(wave: np.ndarray, fs: int) -> np.ndarray:
    """Static MFCC of a mono waveform ``(N,)`` in [-1, 1] -> ``(T, 13)`` float32.

    ``T == mfcc_geometry(fs).num_frames(N)`` (0 rows for fewer than one window of samples).
    """
    wave = np.ascontiguousarray(wave, dtype=np.float32).reshape(-1)
    mfcc = knf.OnlineMfcc(mfcc_options(fs))
    mfcc.accept_waveform(float(fs), wave)
    mfcc.input_finished()
    n = mfcc.num_frames_ready
    if n == 0:
        return np.zeros((0, NUM_CEPS), dtype=np.float32)
    return np.stack([mfcc.get_frame(i) for i in range(n)]).astype(np.float32, copy=False)


def add_deltas(
    feats: np.ndarray, window: int = DELTA_WINDOW, order: int = DELTA_ORDER
) -> np.ndarray:
    """Kaldi ``add-deltas``: ``(T, D) -> (T, D * (order + 1))`` as ``[x, Δx, Δ²x]``."""
    if feats.shape[0] == 0:
        return np.zeros((0, feats.shape[1] * (order + 1)), dtype=np.float32)
    opts = knf.DeltaOptions()
    opts.window = window
    opts.order = order
    return np.asarray(knf.compute_deltas(opts, np.ascontiguousarray(feats, dtype=np.float32)))


def mfcc_features(wave: np.ndarray, fs: int) -> np.ndarray:
    """39-dim MFCC + Δ + ΔΔ at 100 Hz: ``(N,) -> (T, 39)`` float32."""
    return add_deltas(compute_mfcc(wave, fs))


def utterance_cmvn(feats: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Per-utterance mean and variance normalisation of (T, D) features (Kaldi
    ``apply-cmvn`` with per-utterance stats and ``--norm-vars``): removes channel and much of the
    speaker's spectral tilt, so k-means clusters follow phones rather than speakers."""
    feats = np.asarray(feats, dtype=np.float32)
    mean = feats.mean(axis=0, keepdims=True)
    std = feats.std(axis=0, keepdims=True)
    return ((feats - mean) / (std + eps)).astype(np.float32)


def iter_audio(
    wav_scp: Iterable[tuple[str, str]], expected_fs: int | None = None
) -> Iterator[tuple[str, np.ndarray, int]]:
    """``(utt, spec)`` pairs -> ``(utt, wave (N,), fs)``, one file in memory at a time."""
    for utt, spec in wav_scp:
        wave, fs = read_audio(spec, expected_fs=expected_fs, utt=utt)
        yield utt, wave, fs


def iter_mfcc(audio: Iterable[tuple[str, np.ndarray, int]]) -> Iterator[Utterance]:
    """``(utt, wave, fs)`` -> ``(utt, (T, 39) float32 MFCC+Δ+ΔΔ)``."""
    for utt, wave, fs in audio:
        yield utt, mfcc_features(wave, fs)


def _mfcc_job(item: tuple[str, str, int | None]) -> tuple[str, np.ndarray, int, int]:
    utt, spec, expected_fs = item
    wave, fs = read_audio(spec, expected_fs=expected_fs, utt=utt)
    return utt, mfcc_features(wave, fs), len(wave), fs


def featurize(
    wav_scp: Iterable[tuple[str, str]],
    extractor: Callable[[Iterable[tuple[str, np.ndarray, int]]], Iterator[Utterance]] | None = None,
    expected_fs: int | None = None,
    nj: int = 1,
) -> Iterator[tuple[str, np.ndarray, int, int]]:
    """``(utt, wav.scp value)`` -> ``(utt, feats (T, D), num_samples, fs)`` in input order.

    ``extractor`` None means MFCC (:func:`iter_mfcc`), computed in ``nj`` processes when
    ``nj > 1``; a :class:`ModelLayerFeatures` batches on its device (``nj`` unused).
    """
    if extractor is None and nj > 1:
        import multiprocessing as mp

        items = ((utt, spec, expected_fs) for utt, spec in wav_scp)
        with mp.get_context("spawn").Pool(nj) as pool:
            yield from pool.imap(_mfcc_job, items, chunksize=16)
        return
    lengths: dict[str, tuple[int, int]] = {}

    def tap() -> Iterator[tuple[str, np.ndarray, int]]:
        for utt, wave, fs in iter_audio(wav_scp, expected_fs):
            lengths[utt] = (len(wave), fs)
            yield utt, wave, fs

    for utt, feats in (extractor or iter_mfcc)(tap()):
        n, fs = lengths.pop(utt)
        yield utt, feats, n, fs


class ModelLayerFeatures:
    """Hidden states of one block of a trained SSL model, batched (iteration >= 1 features).

    Args:
        model: an object with ``extract_features(speech (B, N), speech_lengths (B,),
            layers=[L]) -> ([(B, T, D)], (B,) frames)`` (``ESPnetSSLModel``), or a callable
            returning such an object (loaded lazily, so no trainer import is needed here).
        layer: block index ``L`` (hubert1 ``layers_km``, e.g. 6 for iteration 1 of Base;
            negative counts from the end).
        device: ``"cuda"`` when available unless given.
        max_batch_samples: total padded samples per forward (hubert1 chunks at 1.6M samples).
    """

    def __init__(
        self,
        model: object | Callable[[], object],
        layer: int,
        device: str | torch.device | None = None,
        max_batch_samples: int = 1_600_000,
    ):
        if not hasattr(model, "extract_features"):
            model = model()  # type: ignore[operator]
        if not hasattr(model, "extract_features"):
            raise TypeError(
                f"{type(model).__name__} has no extract_features(speech, speech_lengths, layers)"
            )
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval() if isinstance(model, torch.nn.Module) else model
        self.layer = int(layer)
        encoder = getattr(self.model, "encoder", None)
        if hasattr(encoder, "num_layers"):
            n = int(encoder.num_layers())
            if not -n <= self.layer < n:
                raise ValueError(
                    f"layer {self.layer} does not exist: the model has {n} encoder blocks "
                    f"(valid layers 0..{n - 1}, or -{n}..-1 from the end); pick one of them "
                    "(ssl.sh --km_layer, make_pseudo_labels --layer)"
                )
        self.max_batch_samples = int(max_batch_samples)

    def __call__(self, audio: Iterable[tuple[str, np.ndarray, int]]) -> Iterator[Utterance]:
        """``(utt, wave, fs)`` -> ``(utt, (T, D) float32)`` in input order."""
        batch: list[tuple[str, np.ndarray]] = []
        longest = 0
        for utt, wave, _fs in audio:
            longest_new = max(longest, len(wave))
            if batch and longest_new * (len(batch) + 1) > self.max_batch_samples:
                yield from self._run(batch)
                batch, longest_new = [], len(wave)
            batch.append((utt, wave))
            longest = longest_new
        if batch:
            yield from self._run(batch)

    @torch.no_grad()
    def _run(self, batch: list[tuple[str, np.ndarray]]) -> Iterator[Utterance]:
        lengths = torch.tensor([len(w) for _, w in batch], dtype=torch.long)
        speech = torch.zeros(len(batch), int(lengths.max()), dtype=torch.float32)
        for i, (_, w) in enumerate(batch):
            speech[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
        states, olens = self.model.extract_features(
            speech.to(self.device), lengths.to(self.device), layers=[self.layer]
        )
        feats = states[0].float().cpu().numpy()  # (B, T, D)
        for i, (utt, _) in enumerate(batch):
            yield utt, np.ascontiguousarray(feats[i, : int(olens[i])])
