import json

import numpy as np
import pytest
import torch

from espnet2.eval.pooling import masked_mean, masked_mean_std, pooled_layer_features
from espnet2.eval.probe import ProbeConfig, fit_probe, select_and_evaluate
from espnet2.eval.run_probe import (
    ProbeSet,
    content_split,
    format_table,
    run_probe_suite,
    write_report,
)

FS = 8000
FREQS = [300.0, 700.0, 1100.0, 1500.0]


def _tone(cls: int, rng: np.random.Generator) -> np.ndarray:
    n = int(rng.integers(1200, 3000))
    t = np.arange(n) / FS
    f = FREQS[cls] * (1 + 0.02 * rng.standard_normal())
    return (0.5 * np.sin(2 * np.pi * f * t) + 0.3 * rng.standard_normal(n)).astype(np.float32)


def _extract(speech: torch.Tensor, lengths: torch.Tensor):
    """Two 'layers': pure noise (uninformative) and a framewise magnitude spectrum."""
    frames = speech.unfold(1, 256, 128)  # (B, T, 256)
    spec = torch.fft.rfft(frames * torch.hann_window(256), dim=-1).abs()[..., :64].log1p()
    noise = torch.randn_like(spec)
    olens = (lengths - 256) // 128 + 1
    return [noise, spec], olens


def test_masked_mean_ignores_padding():
    hs = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(hs, torch.tensor([2])).item() == 2.0


def test_masked_mean_std_matches_numpy_on_valid_frames():
    hs = torch.randn(2, 7, 3)
    hs[0, 4:] = 1e6  # padding garbage must not leak
    out = masked_mean_std(hs, torch.tensor([4, 7]))
    for row, n in ((0, 4), (1, 7)):
        ref = hs[row, :n].numpy()
        np.testing.assert_allclose(
            out[row].numpy(), np.concatenate([ref.mean(0), ref.std(0)]), rtol=1e-5, atol=1e-6
        )


def test_pooled_features_independent_of_batching():
    rng = np.random.default_rng(0)
    waves = [_tone(i % 4, rng) for i in range(6)]

    def extract(speech, lengths):
        frames = speech.unfold(1, 256, 128)
        return [frames.abs().mean(-1, keepdim=True)], (lengths - 256) // 128 + 1

    a = pooled_layer_features(extract, waves, batch_size=1)
    b = pooled_layer_features(extract, waves, batch_size=6)
    assert a.shape == (6, 1, 1)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _probe_set(speakers: list[str], per: int, rng) -> ProbeSet:
    utts, waves, labels, spks = [], [], [], []
    for s in speakers:
        for i in range(per):
            c = i % 4
            utts.append(f"{s}_{i}")
            waves.append(_tone(c, rng))
            labels.append(str(c))
            spks.append(s)
    return ProbeSet(utts, waves, np.array(labels), np.array(spks))


def test_probe_beats_chance_and_picks_informative_layer():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train = _probe_set(["a", "b", "c"], 24, rng)
    test = _probe_set(["d", "e"], 24, rng)

    def ssl(waves):
        return pooled_layer_features(_extract, waves, batch_size=8)

    report = run_probe_suite(train, test, {"toy": ssl}, ProbeConfig(epochs=150), tasks=("digit",))
    results = report["tasks"]["digit"]["results"]
    best_layer = next(r for r in results if r["layer"] != "weighted")
    assert best_layer["layer"] == "1", "validation must pick the spectral layer"
    assert best_layer["test_acc"] > 0.8  # chance is 0.25
    assert set(best_layer["per_group_acc"]) == {"d", "e"}
    weighted = next(r for r in results if r["layer"] == "weighted")
    assert weighted["layer_weights"][1] > weighted["layer_weights"][0]


def test_selection_never_sees_test_labels():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 2, 3)).astype(np.float32)
    y = rng.integers(0, 2, 40)
    is_valid = np.arange(40) >= 30
    xte = rng.standard_normal((10, 2, 3)).astype(np.float32)
    r1 = select_and_evaluate(
        "n", (x, y, is_valid), (xte, np.zeros(10, int), np.zeros(10)), 2, ProbeConfig(epochs=20)
    )
    r2 = select_and_evaluate(
        "n", (x, y, is_valid), (xte, np.ones(10, int), np.zeros(10)), 2, ProbeConfig(epochs=20)
    )
    assert [r.layer for r in r1] == [r.layer for r in r2]
    assert [r.valid_acc for r in r1] == [r.valid_acc for r in r2]


def test_fit_probe_deterministic():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 1, 4)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(int)
    _, p1 = fit_probe(x, y, 2, 0, ProbeConfig(epochs=50, seed=3))
    _, p2 = fit_probe(x, y, 2, 0, ProbeConfig(epochs=50, seed=3))
    assert (p1(x) == p2(x)).all()
    assert (p1(x) == y).mean() > 0.9


def test_content_split_is_disjoint():
    labels = np.array([str(i % 10) for i in range(100)])
    is_valid, is_test = content_split(labels)
    assert not (is_valid & is_test).any()
    assert set(labels[is_test]) == {"8", "9"} and set(labels[is_valid]) == {"6", "7"}


def test_cross_validation_averages_every_fold():
    """Fold ids: each fold is held out once and the validation accuracy is the mean; a layer
    that is informative for one fold only loses to one that is informative for all."""
    from espnet2.eval.run_probe import digit_split

    rng = np.random.default_rng(3)
    n_per, folds = 40, np.repeat(np.arange(4), 40)
    y = rng.integers(0, 2, 4 * n_per)
    x = rng.standard_normal((4 * n_per, 2, 3)).astype(np.float32)
    x[:, 0, 0] += 3.0 * (2 * y - 1) * (folds == 0)  # layer 0: the label only in fold 0
    x[:, 1, 0] += 1.5 * (2 * y - 1)  # layer 1: the label everywhere
    xte = rng.standard_normal((20, 2, 3)).astype(np.float32)
    res = select_and_evaluate("cv", (x, y, folds), (xte, np.zeros(20, int), np.zeros(20)), 2,
                              ProbeConfig(epochs=100))
    single = next(r for r in res if r.layer != "weighted")
    assert single.layer == "1"
    # the mean of per-fold accuracies, recomputed by hand
    accs = []
    for f in range(4):
        _, predict = fit_probe(x[folds != f], y[folds != f], 2, 1, ProbeConfig(epochs=100))
        accs.append(float((predict(x[folds == f]) == y[folds == f]).mean()))
    assert single.valid_acc == pytest.approx(np.mean(accs))
    # one fold and nothing to train on is refused
    with pytest.raises(ValueError, match=">= 2 folds"):
        select_and_evaluate("cv", (x, y, np.zeros(len(y), int)), (xte, y[:20], y[:20]), 2,
                            ProbeConfig(epochs=5))
    # digit_split: leave-one-speaker-out by default, one named speaker on request
    train = _probe_set(["a", "b", "c"], 4, rng)
    ids, spk = digit_split(train)
    assert spk == ["a", "b", "c"] and ids.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    mask, spk = digit_split(train, "b")
    assert spk == ["b"] and mask.tolist() == [False] * 4 + [True] * 4 + [False] * 4


def test_report_pairs_selected_probes_with_interval_and_mcnemar(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    train = _probe_set(["a", "b", "c"], 24, rng)
    test = _probe_set(["d", "e"], 24, rng)

    def spectral(waves):
        return pooled_layer_features(_extract, waves, batch_size=8)[:, 1:]

    def noise(waves):
        return np.random.default_rng(0).standard_normal((len(waves), 1, 8)).astype(np.float32)

    report = run_probe_suite(train, test, {"spec": spectral, "noise": noise},
                             ProbeConfig(epochs=150), tasks=("digit",))
    rep = report["tasks"]["digit"]
    pred = rep["predictions"]
    assert pred["utts"] == test.utts and pred["groups"] == test.speakers.tolist()
    sel = {r["name"]: r for r in rep["results"] if r["selected"]}
    for name, r in sel.items():  # the stored predictions reproduce the reported accuracy
        acc = np.mean(np.array(pred["by_probe"][name]) == np.array(pred["targets"]))
        assert acc == pytest.approx(r["test_acc"])
    assert list(rep["paired_differences"]) == ["spec - noise"]  # each pair once
    diff = rep["paired_differences"]["spec - noise"]
    assert diff["overall"] == pytest.approx(sel["spec"]["test_acc"] - sel["noise"]["test_acc"])
    assert 0 < diff["ci95"][0] <= diff["overall"] <= diff["ci95"][1]
    assert diff["mcnemar_p"] < 0.01 and diff["a_only_correct"] > diff["b_only_correct"]
    assert set(diff["per_group"]) == {"d", "e"}
    table = format_table(report)
    assert "| digit | spec - noise | +" in table and "McNemar" in table
    write_report(report, tmp_path)
    on_disk = json.loads((tmp_path / "probe.json").read_text())
    assert "predictions" not in on_disk["tasks"]["digit"]
    assert on_disk["tasks"]["digit"]["paired_differences"] == rep["paired_differences"]
    lines = (tmp_path / "digit_predictions.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["utt", "group", "target", "spec", "noise"]
    first = lines[1].split("\t")
    assert first[:3] == [test.utts[0], "d", test.labels[0]]
    assert first[3] == rep["classes"][pred["by_probe"]["spec"][0]]
