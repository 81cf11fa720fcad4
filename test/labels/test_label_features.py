"""MFCC features (Kaldi-compatible, 39 dims, 100 Hz) and model-layer features."""

from __future__ import annotations

import csv

import kaldi_native_fbank as knf
import numpy as np
import pytest
import soundfile as sf
import soxr

from espnet2.labels.features import (
    MFCC_DIM,
    ModelLayerFeatures,
    compute_mfcc,
    featurize,
    iter_mfcc,
    mfcc_features,
    mfcc_geometry,
)


def fsdd_16k(root, n=4):
    """The first ``n`` FSDD recordings resampled 8 -> 16 kHz: [(utt, wave)]."""
    with open(root / "utterances.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))[:n]
    out = []
    for r in rows:
        x, fs = sf.read(root / r["path"], dtype="float32")
        assert fs == 8000
        out.append((r["utt_id"], soxr.resample(x, fs, 16000).astype(np.float32)))
    return out


def kaldi_deltas(x: np.ndarray, window: int = 2) -> np.ndarray:
    """Independent numpy version of Kaldi add-deltas (order 2, edge frames replicated)."""
    w1 = np.arange(-window, window + 1) / (2 * sum(j * j for j in range(1, window + 1)))
    w2 = np.convolve(w1, w1)
    out = [x]
    for w in (w1, w2):
        h = (len(w) - 1) // 2
        idx = np.clip(np.arange(len(x))[:, None] + np.arange(-h, h + 1)[None, :], 0, len(x) - 1)
        out.append(np.einsum("tjd,j->td", x[idx], w))
    return np.concatenate(out, 1)


def test_mfcc_shape_and_rate_on_fsdd(fsdd_root):
    geom = mfcc_geometry(16000)
    assert geom.frame_rate(16000) == 100.0
    for utt, wave in fsdd_16k(fsdd_root):
        feats = mfcc_features(wave, 16000)
        assert feats.dtype == np.float32
        assert (
            feats.shape
            == ((len(wave) - 400) // 160 + 1, MFCC_DIM)
            == (geom.num_frames(len(wave)), 39)
        )
        assert np.isfinite(feats).all(), utt


def test_mfcc_equals_direct_kaldi_native_fbank(fsdd_root):
    _, wave = fsdd_16k(fsdd_root, 1)[0]
    opts = knf.MfccOptions()
    opts.frame_opts.samp_freq = 16000
    opts.frame_opts.dither = 0.0
    opts.use_energy = False
    m = knf.OnlineMfcc(opts)
    m.accept_waveform(16000, wave)
    m.input_finished()
    direct = np.stack([m.get_frame(i) for i in range(m.num_frames_ready)])
    np.testing.assert_array_equal(compute_mfcc(wave, 16000), direct)
    np.testing.assert_allclose(
        mfcc_features(wave, 16000), kaldi_deltas(direct), rtol=1e-4, atol=1e-3
    )


@pytest.mark.parametrize("n", [0, 1, 399, 400, 401, 559, 560, 16000])
def test_mfcc_frame_count_matches_geometry(n):
    wave = np.random.default_rng(n).normal(scale=0.1, size=n).astype(np.float32)
    assert mfcc_features(wave, 16000).shape == (mfcc_geometry(16000).num_frames(n), 39)


def test_iter_mfcc_is_lazy():
    calls = []

    def audio():
        for i in range(3):
            calls.append(i)
            yield f"u{i}", np.zeros(800, np.float32) + i * 0.01, 16000

    gen = iter_mfcc(audio())
    assert calls == []
    utt, feats = next(gen)
    assert (utt, calls, feats.shape) == ("u0", [0], (3, 39))


def test_featurize_reads_wav_scp_and_keeps_lengths(tmp_path):
    rng = np.random.default_rng(0)
    scp = []
    for i, n in enumerate([1600, 4000, 900]):
        p = tmp_path / f"u{i}.wav"
        sf.write(p, rng.normal(scale=0.1, size=n).astype(np.float32), 16000)
        scp.append((f"u{i}", str(p)))
    out = list(featurize(scp, expected_fs=16000))
    assert [(u, n, fs) for u, _, n, fs in out] == [
        ("u0", 1600, 16000),
        ("u1", 4000, 16000),
        ("u2", 900, 16000),
    ]
    assert [f.shape[0] for _, f, _, _ in out] == [
        mfcc_geometry(16000).num_frames(n) for n in (1600, 4000, 900)
    ]


def test_model_layer_features_batched_equals_single():
    from espnet2.testing.tiny import tiny_model

    model = tiny_model().eval()
    rng = np.random.default_rng(0)
    audio = [
        (f"u{i}", rng.normal(size=n).astype(np.float32), 16000)
        for i, n in enumerate([300, 120, 256, 64])
    ]
    geom = model.frontend.frame_geometry()
    batched = list(
        ModelLayerFeatures(model, layer=1, device="cpu", max_batch_samples=700)(iter(audio))
    )
    single = list(
        ModelLayerFeatures(lambda: model, layer=1, device="cpu", max_batch_samples=1)(iter(audio))
    )
    assert [u for u, _ in batched] == [u for u, _, _ in audio]
    for (u, a), (_, b), (_, w, _) in zip(batched, single, audio):
        assert a.shape == (geom.num_frames(len(w)), 16), u
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert model.training is False


def test_featurize_parallel_equals_serial(tmp_path):
    rng = np.random.default_rng(1)
    scp = []
    for i, n in enumerate([1600, 4000, 900, 3000]):
        p = tmp_path / f"u{i}.wav"
        sf.write(p, rng.normal(scale=0.1, size=n).astype(np.float32), 16000)
        scp.append((f"u{i}", str(p)))
    serial = list(featurize(scp, expected_fs=16000, nj=1))
    parallel = list(featurize(scp, expected_fs=16000, nj=2))
    assert [(u, n) for u, _, n, _ in parallel] == [(u, n) for u, _, n, _ in serial]
    for (_, a, _, _), (_, b, _, _) in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


def test_model_layer_features_rejects_missing_layer_before_any_audio():
    from espnet2.testing.tiny import tiny_model

    model = tiny_model()
    n = model.encoder.num_layers()
    with pytest.raises(ValueError, match=rf"layer {n} does not exist.*{n} encoder blocks"):
        ModelLayerFeatures(model, layer=n, device="cpu")
    with pytest.raises(ValueError, match=rf"layer -{n + 1} does not exist"):
        ModelLayerFeatures(model, layer=-n - 1, device="cpu")
    assert ModelLayerFeatures(model, layer=-1, device="cpu").layer == -1
