"""A supervised reference for the probes: the same encoder trained on the probe's own labels.

A frozen-feature probe says how much of a task pre-training put within linear reach. What it
cannot say is how much *could* be there: on a small corpus (FSDD: 4 training speakers) the
generalisation to unseen speakers is bounded by the data, whatever the objective. This module
trains the model's encoder end to end on the probe-training labels, from the weights its
pre-training run started from, with the model's own training-time augmentation (SpecAug) and
dropout::

    z_n = W · mean_t h_t(x_n) + b          h: the top block's output (B, T, D)
    L   = (1/B) Σ_n CE(z_n, y_n)           Adam, ``epochs`` passes over the labelled set

The trained model is then probed like any pre-trained one (``ssl_probe``), on the same split:
the supervised row is what this encoder reaches when the labels themselves are the objective.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from espnet2.eval.pooling import masked_mean, pad_waves

logger = logging.getLogger(__name__)


def train_supervised(
    model,
    waves: Sequence[np.ndarray],
    labels: np.ndarray,
    num_classes: int,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Train ``model``'s frontend-to-encoder path and a linear head on ``labels`` (N,) int.

    ``model`` is an ESPnetSSLModel; it is trained in place (its SSL losses are not used) and
    left in eval mode. Returns the mean training loss of each epoch.
    """
    if len(waves) != len(labels) or len(waves) == 0:
        raise ValueError(f"train_supervised: {len(waves)} waveforms and {len(labels)} labels")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"train_supervised: epochs={epochs}, batch_size={batch_size} (>= 1)")
    head = torch.nn.Linear(model.encoder.output_size(), num_classes)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    y = torch.as_tensor(labels, dtype=torch.long)
    rng = np.random.default_rng(seed)
    losses = []
    model.train()
    for epoch in range(epochs):
        order, total = rng.permutation(len(waves)), 0.0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            x, lens = pad_waves(waves, index)
            (h,), hlens = model.extract_features(x, lens, layers=[-1])  # SpecAug: train mode
            loss = torch.nn.functional.cross_entropy(head(masked_mean(h, hlens)), y[index])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(index)
        losses.append(total / len(order))
        logger.info("supervised epoch %d/%d: loss %.4f", epoch + 1, epochs, losses[-1])
    model.eval()
    return losses
