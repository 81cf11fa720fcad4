"""Frozen-feature linear probes in the SUPERB manner.

A probe sees per-utterance, per-layer mean-pooled features ``x`` of shape (N, L, D) and learns

    z_n = sum_l softmax(a)_l * standardise(x_{n,l})   (learned layer weights a, or one fixed layer)
    p(y | z_n) = softmax(W z_n + b)                    (a linear classifier)

by full-batch cross-entropy with L2 weight decay. Mean pooling commutes with the weighted sum, so
pooling every layer once and learning the weights afterwards is exact and cheap.

The "best layer" is chosen on validation folds carved out of the probe-training data
(:func:`select_and_evaluate`; e.g. leave-one-speaker-out), never on the test speakers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class ProbeConfig:
    """Optimisation of one probe. Defaults suit a few thousand utterances on a CPU."""

    epochs: int = 300  # full-batch Adam steps
    lr: float = 0.05
    weight_decay: float = 1e-3  # L2 on the classifier weights
    seed: int = 0


@dataclass
class ProbeResult:
    name: str
    layer: str  # "weighted" or the index of the single layer used
    valid_acc: float
    test_acc: float
    per_group_acc: dict[str, float] = field(default_factory=dict)
    layer_weights: list[float] | None = None
    selected: bool = False  # best validation accuracy among this feature set's probes
    test_pred: list[int] | None = None  # predicted class id of every test utterance, in order


class LinearProbe(torch.nn.Module):
    """(N, L, D) pooled features -> (N, C) logits; ``layer`` None learns softmax layer weights."""

    def __init__(self, num_layers: int, dim: int, num_classes: int, layer: int | None):
        super().__init__()
        self.layer = layer
        self.layer_logits = torch.nn.Parameter(torch.zeros(num_layers))
        self.classifier = torch.nn.Linear(dim, num_classes)

    def layer_weights(self) -> torch.Tensor:
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer is not None:
            z = x[:, self.layer]
        else:
            z = torch.einsum("nld,l->nd", x, self.layer_weights())
        return self.classifier(z)


def fit_probe(
    x_train: np.ndarray, y_train: np.ndarray, num_classes: int, layer: int | None, cfg: ProbeConfig
) -> tuple[LinearProbe, callable]:
    """Train a probe; returns it and a ``predict(x: np.ndarray) -> np.ndarray`` closure."""
    if x_train.ndim != 3:
        raise ValueError(f"probe features must be (N, L, D), got shape {x_train.shape}")
    torch.manual_seed(cfg.seed)
    mean = x_train.mean(axis=0, keepdims=True)
    std = x_train.std(axis=0, keepdims=True) + 1e-5
    xt = torch.from_numpy(((x_train - mean) / std).astype(np.float32))
    yt = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    probe = LinearProbe(x_train.shape[1], x_train.shape[2], num_classes, layer)
    opt = torch.optim.Adam(
        [
            {"params": [probe.layer_logits], "weight_decay": 0.0},
            {"params": probe.classifier.parameters(), "weight_decay": cfg.weight_decay},
        ],
        lr=cfg.lr,
    )
    for _ in range(cfg.epochs):
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(probe(xt), yt).backward()
        opt.step()
    probe.eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            xs = torch.from_numpy(((x - mean) / std).astype(np.float32))
            return probe(xs).argmax(-1).numpy()

    return probe, predict


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float((np.asarray(pred) == np.asarray(y)).mean()) if len(y) else float("nan")


def _folds(name: str, folds: np.ndarray) -> tuple[np.ndarray, list]:
    """Bool ``is_valid`` (one fold) or int fold ids (``-1``: never validated) -> (ids, folds)."""
    folds = np.asarray(folds)
    if folds.dtype == bool:
        if not folds.any() or folds.all():
            raise ValueError(f"{name}: the validation fold must be a non-empty proper subset")
        return folds.astype(np.int64), [1]  # fold 1 = the valid part; 0 is never held out
    ids = sorted(set(folds.tolist()) - {-1})
    if not ids or (len(ids) == 1 and not (folds == -1).any()):
        raise ValueError(f"{name}: cross-validation needs >= 2 folds (or one fold and "
                         f"utterances marked -1 to train on), got folds {ids}")
    return folds, ids


def select_and_evaluate(
    name: str,
    fit: tuple[np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    num_classes: int,
    cfg: ProbeConfig,
) -> list[ProbeResult]:
    """Choose on validation folds, refit on all probe-training data, then test once.

    ``fit = (x, y, folds)``: ``folds`` is a bool ``is_valid`` mask (one validation fold) or
    per-utterance integer fold ids (e.g. the speaker: leave-one-speaker-out; ``-1`` = always
    trained on). Every candidate (learned weighted sum, and each single layer) is trained
    without a fold and scored on it; its validation accuracy is the mean over folds. The
    weighted probe and the best single layer are then refitted on all of ``x`` and evaluated on
    ``test = (x, y, groups)``, with accuracies per group (held-out speaker). The entry with the
    best validation accuracy is marked ``selected``. Test data never influences a choice.
    """
    (x, y, folds), (xte, yte, gte) = fit, test
    folds, fold_ids = _folds(name, folds)
    num_layers = x.shape[1]
    candidates: list[int | None] = [None, *range(num_layers)] if num_layers > 1 else [0]
    scored = []
    for layer in candidates:
        accs = []
        for f in fold_ids:
            held = folds == f
            _, predict = fit_probe(x[~held], y[~held], num_classes, layer, cfg)
            accs.append(accuracy(predict(x[held]), y[held]))
        scored.append((layer, float(np.mean(accs))))
    chosen = [s for s in scored if s[0] is None]
    singles = [s for s in scored if s[0] is not None]
    if singles:
        chosen.append(max(singles, key=lambda s: s[1]))
    results = []
    for layer, vacc in chosen:
        probe, predict = fit_probe(x, y, num_classes, layer, cfg)
        pred = predict(xte)
        groups = sorted(set(np.asarray(gte).tolist()))
        results.append(
            ProbeResult(
                name=name,
                layer="weighted" if layer is None else str(layer),
                valid_acc=vacc,
                test_acc=accuracy(pred, yte),
                per_group_acc={str(g): accuracy(pred[gte == g], yte[gte == g]) for g in groups},
                layer_weights=probe.layer_weights().tolist() if layer is None else None,
                test_pred=[int(v) for v in pred],
            )
        )
    best = max(results, key=lambda r: r.valid_acc)
    best.selected = True
    return results
