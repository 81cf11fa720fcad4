"""Paired bootstrap intervals and exact McNemar p-values of probe differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from espnet2.eval.significance import mcnemar_exact_p, paired_bootstrap_ci, paired_difference


def test_mcnemar_matches_the_binomial_tail_by_hand():
    # 10 utterances only A gets right, 0 only B: p = 2 * 0.5**10
    a = np.r_[np.ones(10, bool), np.ones(5, bool), np.zeros(5, bool)]
    b = np.r_[np.zeros(10, bool), np.ones(5, bool), np.zeros(5, bool)]
    p, n10, n01 = mcnemar_exact_p(a, b)
    assert (n10, n01) == (10, 0) and p == pytest.approx(2 * 0.5 ** 10)
    # 7 vs 3 discordant: 2 * P(X <= 3), X ~ Bin(10, 1/2)
    a = np.r_[np.ones(7, bool), np.zeros(3, bool)]
    p, _, _ = mcnemar_exact_p(a, ~a)
    assert p == pytest.approx(2 * sum(math.comb(10, i) for i in range(4)) / 2 ** 10)
    assert mcnemar_exact_p(a, a)[0] == 1.0  # no discordant pair
    assert mcnemar_exact_p(a, ~a)[0] == mcnemar_exact_p(~a, a)[0]  # symmetric


def test_mcnemar_handles_large_counts_without_overflow():
    rng = np.random.default_rng(0)
    a = rng.random(20000) < 0.9
    b = rng.random(20000) < 0.9
    p, _, _ = mcnemar_exact_p(a, b)
    assert 0.0 < p <= 1.0  # same accuracy by construction: not significant in general
    assert mcnemar_exact_p(np.ones(5000, bool), np.zeros(5000, bool))[0] == 0.0  # underflows


def test_bootstrap_interval_covers_the_true_difference_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    widths, covered = [], 0
    for trial in range(20):
        n = 400
        a = rng.random(n) < 0.85  # true difference +0.10
        b = rng.random(n) < 0.75
        lo, hi = paired_bootstrap_ci(a, b, resamples=500, seed=trial)
        covered += lo <= 0.10 <= hi
        assert lo <= a.mean() - b.mean() <= hi
        widths.append(hi - lo)
    assert covered >= 16  # nominal 95%: 19 of 20 expected
    lo, hi = paired_bootstrap_ci(rng.random(4000) < 0.85, rng.random(4000) < 0.75,
                                 resamples=500)
    assert hi - lo < 0.5 * np.mean(widths)  # 10x the utterances: about 1/sqrt(10) the width


def test_bootstrap_is_paired_and_stratified():
    a = np.array([1, 1, 0, 0, 1, 0], bool)
    lo, hi = paired_bootstrap_ci(a, a, groups=np.array(list("xxxyyy")), resamples=200)
    assert lo == hi == 0.0  # identical predictions: no difference in any resample
    # group x: A always right, B always wrong; group y: both always right. Stratified draws keep
    # 3 of 6 utterances in x, so every resample gives exactly +0.5
    a = np.ones(6, bool)
    b = np.array([0, 0, 0, 1, 1, 1], bool)
    assert paired_bootstrap_ci(a, b, groups=np.array(list("xxxyyy")), resamples=200) == (0.5, 0.5)
    lo, hi = paired_bootstrap_ci(a, b, resamples=200)  # unstratified: the share of x varies
    assert lo < 0.5 < hi
    assert paired_bootstrap_ci(a, b, seed=3) == paired_bootstrap_ci(a, b, seed=3)


def test_paired_difference_report_and_bad_input():
    targets = np.array([0, 1, 2, 0, 1, 2])
    pa = np.array([0, 1, 2, 0, 1, 0])  # 5 / 6
    pb = np.array([0, 0, 2, 1, 1, 0])  # 3 / 6
    r = paired_difference(pa, pb, targets, np.array(list("ssstttt"[:6])))
    assert r["overall"] == pytest.approx(2 / 6)
    assert r["per_group"] == {"s": pytest.approx(1 / 3), "t": pytest.approx(1 / 3)}
    assert (r["a_only_correct"], r["b_only_correct"]) == (2, 0)
    assert r["ci95"][0] <= r["overall"] <= r["ci95"][1]
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap_ci(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ValueError, match="groups has shape"):
        paired_bootstrap_ci(np.ones(3, bool), np.ones(3, bool), groups=np.zeros(2))
