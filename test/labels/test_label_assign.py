"""Frame alignment of labels, assignment with the train model, output formats (CLI end to end)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet2.bin.make_pseudo_labels import main as make_main
from espnet2.data.frames import FrameGeometry
from espnet2.data.kaldi import read_token_list
from espnet2.labels.assign import align_labels, kmeans_token_list, label_stream
from espnet2.labels.features import featurize, mfcc_geometry
from espnet2.labels.kmeans import KMeansModel, load_kmeans

MFCC = FrameGeometry(400, 160, 0)
CNN = FrameGeometry(400, 320, 0)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 200_000))
def test_label_count_equals_encoder_frames(n):
    src = np.arange(MFCC.num_frames(n))
    out = align_labels(src, n, MFCC, CNN)
    assert len(out) == CNN.num_frames(n)
    if len(out):  # 50 Hz frame i has the same centre as 100 Hz frame 2i
        np.testing.assert_array_equal(out, src[2 * np.arange(len(out))])


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 50_000),
    rf=st.integers(1, 800),
    stride=st.integers(1, 640),
    pad=st.integers(0, 200),
)
def test_alignment_count_for_any_geometry(n, rf, stride, pad):
    dst = FrameGeometry(rf, stride, pad)
    src = MFCC if MFCC.num_frames(n) else FrameGeometry(1, 160, 0)
    labels = np.arange(src.num_frames(n))
    if dst.num_frames(n) and not len(labels):
        return
    out = align_labels(labels, n, src, dst)
    assert len(out) == dst.num_frames(n)
    assert (np.diff(out) >= 0).all()  # monotone in time


def test_identity_alignment_and_length_check():
    lab = np.array([3, 1, 4, 1, 5])
    n = MFCC.num_samples_for(5)
    np.testing.assert_array_equal(align_labels(lab, n, MFCC, MFCC), lab)
    with pytest.raises(ValueError, match="6 feature frames"):
        align_labels(np.zeros(6), n, MFCC, CNN)


def test_label_stream_uses_the_given_model_for_every_set():
    model = KMeansModel(np.array([[0.0] * 39, [10.0] * 39], np.float32))
    n = CNN.num_samples_for(7)
    feats = np.zeros((MFCC.num_frames(n), 39), np.float32)
    feats[::2] = 10.0  # even 100 Hz frames near centroid 1 -> every 50 Hz frame is 1
    ((utt, lab),) = label_stream([("u", feats, n, 16000)], model, CNN, mfcc_geometry)
    assert utt == "u" and lab.tolist() == [1] * 7
    with pytest.raises(ValueError, match="13 dims"):
        list(label_stream([("u", feats[:, :13], n, 16000)], model, CNN, MFCC))


def write_set(d, utts, seed):
    """A Kaldi dir of synthetic 16 kHz tones: wav.scp, utt2num_samples."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True)
    scp, u2n = [], []
    for i, utt in enumerate(utts):
        n = int(rng.integers(3000, 12000))
        t = np.arange(n) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 150 * (i % 4)) * t) + 0.01 * rng.normal(size=n)
        sf.write(d / f"{utt}.wav", wave.astype(np.float32), 16000)
        scp.append(f"{utt} {d / (utt + '.wav')}\n")
        u2n.append(f"{utt} {n}\n")
    (d / "wav.scp").write_text("".join(scp))
    (d / "utt2num_samples").write_text("".join(u2n))
    (d / "words").write_text("".join(f"{u} w{i % 4}\n" for i, u in enumerate(utts)))


@pytest.fixture
def dump(tmp_path):
    write_set(tmp_path / "train", [f"tr{i:02d}" for i in range(12)], 0)
    write_set(tmp_path / "valid", [f"va{i:02d}" for i in range(4)], 1)
    return tmp_path


def run(dump, km, seed=0, extra=()):
    return make_main(
        [
            "--train_dir",
            str(dump / "train"),
            "--sets",
            str(dump / "valid"),
            "--n_clusters",
            "4",
            "--portion",
            "1.0",
            "--seed",
            str(seed),
            "--km_dir",
            str(km),
            "--geometry",
            "wav2vec_cnn",
            "--ref_text",
            "words",
            "--batch_size",
            "200",
            *extra,
        ]
    )


def test_make_pseudo_labels_end_to_end(dump, capsys):
    km = dump / "km"
    assert run(dump, km) == 0
    assert (km / "tokens.txt").read_text() == "0\n1\n2\n3\n<sos/eos>\n<unk>\n"
    assert read_token_list(km / "tokens.txt") == kmeans_token_list(4)
    model = load_kmeans(km)
    assert model.meta["feature"] == "mfcc" and model.meta["dim"] == 39 and model.meta["seed"] == 0
    for name in ("train", "valid"):
        lines = (km / name / "pseudo_labels_km4.txt").read_text()
        assert (dump / name / "text").read_text() == lines
        u2n = dict(
            line.split() for line in (dump / name / "utt2num_samples").read_text().splitlines()
        )
        for line in lines.splitlines():
            utt, *labels = line.split()
            assert len(labels) == CNN.num_frames(int(u2n[utt]))
            assert set(labels) <= {"0", "1", "2", "3"}
        rep = json.loads((km / name / "quality.json").read_text())
        assert rep["ref_level"] == "utt" and 0 <= rep["pnmi"] <= 1
    out = capsys.readouterr().out
    assert "valid: word purity" in out and "PNMI" in out
    # valid is labelled with the TRAIN model: re-assigning valid with it gives the same labels
    valid_scp = [tuple(x.split()) for x in (dump / "valid" / "wav.scp").read_text().splitlines()]
    again = label_stream(featurize(valid_scp, expected_fs=16000), model, CNN, mfcc_geometry)
    expect = "".join(" ".join([u, *map(str, lab)]) + "\n" for u, lab in again)
    assert expect == (km / "valid" / "pseudo_labels_km4.txt").read_text()
    # and the model was fit on train frames only
    assert model.meta["n_frames"] == sum(
        MFCC.num_frames(int(x.split()[1]))
        for x in (dump / "train" / "utt2num_samples").read_text().splitlines()
    )


def test_same_seed_same_labels(dump):
    assert run(dump, dump / "a", seed=5, extra=["--no_dump_text"]) == 0
    assert run(dump, dump / "b", seed=5, extra=["--no_dump_text"]) == 0
    for name in ("train", "valid"):
        a = (dump / "a" / name / "pseudo_labels_km4.txt").read_text()
        assert a == (dump / "b" / name / "pseudo_labels_km4.txt").read_text()
    assert not (dump / "train" / "text").exists()


def test_utterance_cmvn_labels_are_invariant_to_a_channel_gain_and_recorded(dump):
    """--cmvn utterance: a per-utterance offset/scale of the MFCCs (a channel) is normalised
    away, so the k-means model fits unit-variance features and the choice is recorded."""
    from espnet2.labels.features import utterance_cmvn

    x = np.random.default_rng(0).normal(size=(50, 39)).astype(np.float32)
    y = utterance_cmvn(x)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(0), 1, atol=1e-3)
    np.testing.assert_allclose(utterance_cmvn(3 * x + 7), y, atol=1e-4)
    assert run(dump, dump / "c", extra=["--no_dump_text", "--cmvn", "utterance"]) == 0
    model = load_kmeans(dump / "c")
    assert model.meta["cmvn"] == "utterance"
    assert np.abs(model.centroids).max() < 10  # normalised features, not raw MFCC scale
    assert run(dump, dump / "r", extra=["--no_dump_text"]) == 0
    raw = load_kmeans(dump / "r")
    assert raw.meta["cmvn"] == "none" and np.abs(raw.centroids).max() > 10


def test_model_layer_features_iteration(dump):
    """Iteration >= 1: k-means on block outputs of a (tiny) SSL model, labels on its frames."""
    from espnet2.bin.make_pseudo_labels import make_pseudo_labels
    from espnet2.labels.features import ModelLayerFeatures
    from espnet2.testing.tiny import tiny_model

    model = tiny_model().eval()
    geom = model.frontend.frame_geometry()
    extractor = ModelLayerFeatures(model, layer=1, device="cpu", max_batch_samples=30000)
    make_pseudo_labels(
        dump / "train",
        [dump / "valid"],
        dump / "km1",
        4,
        feature="model",
        portion=0.5,
        geometry="16,8,0",
        extractor=extractor,
        batch_size=500,
        max_passes=2,
    )
    meta = load_kmeans(dump / "km1").meta
    assert (meta["feature"], meta["layer"], meta["dim"], meta["train_utts"]) == ("model", 1, 16, 6)
    u2n = dict(x.split() for x in (dump / "valid" / "utt2num_samples").read_text().splitlines())
    for line in (dump / "valid" / "text").read_text().splitlines():
        utt, *labels = line.split()
        assert len(labels) == geom.num_frames(int(u2n[utt]))
