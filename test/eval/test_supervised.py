"""Supervised reference: the encoder learns the probe labels end to end; bad input is refused."""

import numpy as np
import pytest
import torch
import yaml

from espnet2.eval.pooling import pooled_layer_features
from espnet2.eval.probe import ProbeConfig, fit_probe
from espnet2.eval.supervised import train_supervised
from espnet2.ssl.pretrained import build_initial_model
from espnet2.testing.corpus import TINY_YAML

FS = 8000


def _chirps(n, rng):
    """Class 0 rises 500 -> 2500 Hz, class 1 falls: the same frequencies in another order, which
    a random encoder's mean-pooled features separate poorly."""
    waves, labels = [], []
    for i in range(n):
        c = i % 2
        t = np.arange(int(rng.integers(1600, 2400))) / FS
        f0, f1 = (500.0, 2500.0) if c == 0 else (2500.0, 500.0)
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1]))
        waves.append((0.5 * np.sin(phase) + 0.2 * rng.standard_normal(t.size)).astype(np.float32))
        labels.append(c)
    return waves, np.array(labels)


def _model(tmp_path, seed=0):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(map(str, range(10))))
    config = {**yaml.safe_load(TINY_YAML), "token_list": str(tokens), "seed": seed}
    return build_initial_model(config)


def _probe_acc(model, xtr, ytr, xte, yte):
    ftr = pooled_layer_features(model.extract_features, xtr, batch_size=8)
    fte = pooled_layer_features(model.extract_features, xte, batch_size=8)
    _, predict = fit_probe(ftr, ytr, 2, ftr.shape[1] - 1, ProbeConfig(epochs=100))
    return float((predict(fte) == yte).mean())


def test_training_lowers_the_loss_and_makes_the_top_layer_separate_the_classes(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    xtr, ytr = _chirps(48, rng)
    xte, yte = _chirps(30, rng)
    model = _model(tmp_path)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    before = _probe_acc(model.eval(), xtr, ytr, xte, yte)
    losses = train_supervised(model, xtr, ytr, 2, epochs=6, batch_size=8, lr=3e-3, seed=0)
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]
    assert not model.training  # left ready for extraction
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, initial[k])]
    assert any(k.startswith("encoder.") for k in moved)
    assert any(k.startswith("frontend.") for k in moved)
    after = _probe_acc(model, xtr, ytr, xte, yte)
    assert before < 0.85 and after >= 0.95, (before, after)


def test_same_seed_same_model_and_bad_input_refused(tmp_path):
    rng = np.random.default_rng(1)
    x, y = _chirps(12, rng)
    a, b = _model(tmp_path), _model(tmp_path)
    torch.manual_seed(5)
    train_supervised(a, x, y, 2, epochs=1, batch_size=4, seed=3)
    torch.manual_seed(5)
    train_supervised(b, x, y, 2, epochs=1, batch_size=4, seed=3)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    with pytest.raises(ValueError, match="12 waveforms and 11 labels"):
        train_supervised(a, x, y[:-1], 2)
    with pytest.raises(ValueError, match="epochs=0"):
        train_supervised(a, x, y, 2, epochs=0)
