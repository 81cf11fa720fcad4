"""How sure is a paired accuracy difference? Two probes scored on the same test utterances.

For test utterances n = 1..N in groups g (the held-out speakers), with correctness
a_n, b_n in {0, 1} of probes A and B::

    Δ = (1/N) Σ_n (a_n − b_n)                      (the difference of the two test accuracies)

* **Paired bootstrap, stratified by group** (:func:`paired_bootstrap_ci`): each of R resamples
  draws N_g utterances with replacement inside every group g, and recomputes Δ* on them (drawn
  as multinomial counts of the per-utterance differences +1 / −1 / 0, which is the same). The
  interval is the (α/2, 1 − α/2) percentiles of the R values of Δ*. Pairing keeps the
  utterances both probes get wrong (or right) from widening the interval, and stratifying
  keeps every speaker's share of the test set fixed.
* **Exact McNemar test** (:func:`mcnemar_exact_p`): with n10 = #{a = 1, b = 0} and
  n01 = #{a = 0, b = 1}, under H0 "equal accuracy" n10 ~ Binomial(n10 + n01, 1/2), and::

      p = min(1, 2 · P(X <= min(n10, n01)))

Both measure test-set sampling noise only: a different pre-training seed, a different probe
seed or another set of speakers adds variation these numbers do not include (seed studies
measure that).
"""

from __future__ import annotations

import math

import numpy as np


def _as_correct(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired correctness must be two 1-d arrays of one length, got "
                         f"{a.shape} and {b.shape}")
    return a, b


def paired_bootstrap_ci(
    correct_a,
    correct_b,
    groups=None,
    resamples: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """(low, high) percentile interval of Δ = acc(A) − acc(B) (fractions, not points).

    ``groups``: one label per utterance; resampling is done inside each group (None: one
    group). Deterministic for a given ``seed``.
    """
    a, b = _as_correct(correct_a, correct_b)
    if not 0 < alpha < 1 or resamples < 1:
        raise ValueError(f"alpha={alpha} must be in (0, 1) and resamples={resamples} >= 1")
    n = a.size
    if n == 0:
        raise ValueError("no test utterances to resample")
    d = a.astype(np.int64) - b.astype(np.int64)  # -1, 0, +1 per utterance
    groups = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups has shape {groups.shape}, expected ({n},)")
    rng = np.random.default_rng(seed)
    totals = np.zeros(resamples, dtype=np.int64)
    for g in sorted(set(groups.tolist())):
        dg = d[groups == g]
        # N_g draws with replacement from values in {+1, -1, 0}: only how many of each were
        # drawn matters, so draw those counts (same distribution, O(R) memory, not O(R N_g))
        p = np.array([(dg == 1).sum(), (dg == -1).sum(), (dg == 0).sum()]) / dg.size
        counts = rng.multinomial(dg.size, p, size=resamples)  # (R, 3)
        totals += counts[:, 0] - counts[:, 1]
    low, high = np.quantile(totals / n, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def mcnemar_exact_p(correct_a, correct_b) -> tuple[float, int, int]:
    """Two-sided exact McNemar p-value and the discordant counts ``(p, n10, n01)``."""
    a, b = _as_correct(correct_a, correct_b)
    n10 = int((a & ~b).sum())
    n01 = int((~a & b).sum())
    m, k = n10 + n01, min(n10, n01)
    if m == 0:
        return 1.0, n10, n01
    # log P(X = i) = log C(m, i) − m log 2; sum the lower tail in log space (large m)
    logs = [math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) - m * math.log(2)
            for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(v - top) for v in logs)
    return min(1.0, 2.0 * tail), n10, n01


def paired_difference(pred_a, pred_b, targets, groups, resamples: int = 2000,
                      seed: int = 0) -> dict:
    """Everything a report says about A − B: overall and per-group Δ, 95% CI, McNemar p.

    ``pred_a``, ``pred_b``, ``targets``: class ids per test utterance; ``groups`` the
    held-out group of each. Accuracies are fractions.
    """
    targets = np.asarray(targets)
    a = np.asarray(pred_a) == targets
    b = np.asarray(pred_b) == targets
    groups = np.asarray(groups)
    low, high = paired_bootstrap_ci(a, b, groups, resamples=resamples, seed=seed)
    p, n10, n01 = mcnemar_exact_p(a, b)
    per_group = {str(g): float(a[groups == g].mean() - b[groups == g].mean())
                 for g in sorted(set(groups.tolist()))}
    return {"overall": float(a.mean() - b.mean()), "per_group": per_group,
            "ci95": [low, high], "mcnemar_p": p, "a_only_correct": n10, "b_only_correct": n01}
