"""Seed studies: summarise many ``probe.json`` reports (one per pre-training run).

For every report and task, the *selected* probe (best validation accuracy) of each SSL model is
compared with the selected probe of its own random-init row (``<name>_random_init``, the run's
starting weights) and with the baselines (MFCC rows) of the same report:

    gain_r = acc(pre-trained_r) - acc(random init_r)        (points, one per run r)

and the study reports, over runs, the mean, the minimum and the sample standard deviation of
the gains, the mean pre-trained accuracy, and with a target ``g``: the runs with ``gain_r < g``
and those that do not beat every baseline row. A target met "for every seed" is
``min_r gain_r >= g``. Where the report has it, each gain comes with its 95% interval over
test utterances (:mod:`espnet2.eval.significance`), and a run below the target is also said
to be below it *beyond test-set noise* when its whole interval is (``ci_high_r < g``).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

RANDOM_SUFFIX = "_random_init"


@dataclass
class RunRow:
    report: str  # probe.json path
    model: str
    pretrained: float
    random_init: float
    baselines: dict[str, float] = field(default_factory=dict)
    gain_ci: tuple[float, float] | None = None  # 95% interval of the gain, points

    @property
    def gain(self) -> float:
        return 100.0 * (self.pretrained - self.random_init)


def _selected(results: list[dict], path: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in results:
        if r.get("selected"):
            if r["name"] in out:
                raise ValueError(f"{path}: two selected probes for {r['name']!r}")
            out[r["name"]] = float(r["test_acc"])
    return out


def read_runs(paths: list[str | Path], task: str = "digit") -> list[RunRow]:
    """One :class:`RunRow` per SSL model (a name with a ``_random_init`` twin) per report."""
    rows = []
    for path in map(str, paths):
        with open(path) as f:
            report = json.load(f)
        tasks = report.get("tasks", {})
        if task not in tasks:
            raise ValueError(f"{path}: no {task!r} task (has {sorted(tasks)}); run ssl_probe "
                             f"with --tasks {task}, or pass --task")
        sel = _selected(tasks[task]["results"], path)
        models = [n for n in sel if n + RANDOM_SUFFIX in sel]
        if not models:
            raise ValueError(f"{path}: no pre-trained model with a random-init row among "
                             f"{sorted(sel)}; run ssl_probe without --no_baselines")
        baselines = {n: a for n, a in sel.items()
                     if not n.endswith(RANDOM_SUFFIX) and n + RANDOM_SUFFIX not in sel}
        paired = tasks[task].get("paired_differences", {})
        for m in models:
            ci = paired.get(f"{m} - {m}{RANDOM_SUFFIX}", {}).get("ci95")
            rows.append(RunRow(path, m, sel[m], sel[m + RANDOM_SUFFIX], baselines,
                               None if ci is None else (100.0 * ci[0], 100.0 * ci[1])))
    return rows


def summarise(rows: list[RunRow], target_gain: float | None = None) -> dict:
    """Mean / min / std of the gains (points) and the runs that miss ``target_gain``."""
    if not rows:
        raise ValueError("no runs to summarise")
    gains = [r.gain for r in rows]
    out = {
        "runs": len(rows),
        "mean_pretrained": statistics.fmean(r.pretrained for r in rows),
        "mean_random_init": statistics.fmean(r.random_init for r in rows),
        "mean_gain": statistics.fmean(gains),
        "min_gain": min(gains),
        "std_gain": statistics.stdev(gains) if len(gains) > 1 else 0.0,
        "below_baseline": [r.report for r in rows
                           if any(r.pretrained <= a for a in r.baselines.values())],
    }
    if target_gain is not None:
        out["target_gain"] = target_gain
        out["below_target"] = [r.report for r in rows if r.gain < target_gain]
        out["clearly_below_target"] = [r.report for r in rows
                                       if r.gain_ci is not None and r.gain_ci[1] < target_gain]
        out["target_met"] = not out["below_target"] and not out["below_baseline"]
    return out


def format_summary(rows: list[RunRow], summary: dict) -> str:
    """Markdown: one line per run, then the study line."""
    names = sorted({b for r in rows for b in r.baselines})
    lines = ["| run | model | pre-trained | random init | gain | " + " | ".join(names) + " |",
             "|---|---|---|---|---|" + "---|" * len(names)]
    for r in rows:
        base = " | ".join(f"{r.baselines[n]:.3f}" if n in r.baselines else "" for n in names)
        ci = "" if r.gain_ci is None else f" [{r.gain_ci[0]:+.1f}, {r.gain_ci[1]:+.1f}]"
        lines.append(f"| {r.report} | {r.model} | {r.pretrained:.3f} | {r.random_init:.3f} | "
                     f"{r.gain:+.1f}{ci} | {base} |")
    s = summary
    lines.append("")
    lines.append(f"{s['runs']} runs: pre-trained {s['mean_pretrained']:.3f}, random init "
                 f"{s['mean_random_init']:.3f}; gain mean {s['mean_gain']:+.1f}, min "
                 f"{s['min_gain']:+.1f}, std {s['std_gain']:.1f} points")
    if s["below_baseline"]:
        lines.append(f"not above every baseline: {', '.join(s['below_baseline'])}")
    if "target_gain" in s:
        verdict = "met" if s["target_met"] else "NOT met"
        lines.append(f"target gain >= {s['target_gain']:+.1f} for every run and above every "
                     f"baseline: {verdict}" + (f" (below the gain: "
                                               f"{', '.join(s['below_target'])})"
                                               if s["below_target"] else ""))
        if s["below_target"]:
            clear = s["clearly_below_target"]
            lines.append(f"below the target beyond test-set noise (whole 95% interval under "
                         f"{s['target_gain']:+.1f}): " + (", ".join(clear) if clear else "none"))
    if any(r.gain_ci is not None for r in rows):
        lines.append("gain intervals: 95%, paired bootstrap over the test utterances of each "
                     "run (test-set noise only; the spread over seeds is the std above)")
    return "\n".join(lines) + "\n"


# two-sided 95% quantiles of Student's t, degrees of freedom 1..30 (beyond: the normal's 1.96)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def _seed(model: str) -> str | None:
    _, sep, tail = model.rpartition("_seed")
    return tail if sep and tail.isdigit() else None


def compare(rows: list[RunRow], baseline: list[RunRow]) -> dict:
    """A variant's seed study against a baseline study, paired by seed.

    Runs are paired by the ``_seed<N>`` suffix of their model names (ssl.sh ``--seeds``) when
    every run has one, else by position. With per-seed differences ``d_s = gain_s(variant) −
    gain_s(baseline)`` over n pairs: mean d̄, sample std s_d, and the paired-t 95% interval
    ``d̄ ± t_{0.975, n−1} · s_d / √n`` (None for one pair). Pairing removes what the seed does
    to both runs (the same random init); the interval is over seeds, so it includes training
    noise, not only test-set noise.
    """
    seeds_a = [_seed(r.model) for r in rows]
    seeds_b = [_seed(r.model) for r in baseline]
    if None not in seeds_a and None not in seeds_b:
        by_seed = {s: r for s, r in zip(seeds_b, baseline)}
        missing = [s for s in seeds_a if s not in by_seed]
        if missing:
            raise ValueError(f"baseline study has no run for seed(s) {missing} (it has "
                             f"{sorted(by_seed)}); give both studies the same seeds")
        pairs = [(s, r, by_seed[s]) for s, r in zip(seeds_a, rows)]
    elif len(rows) == len(baseline):
        pairs = [(str(i), a, b) for i, (a, b) in enumerate(zip(rows, baseline))]
    else:
        raise ValueError(f"cannot pair {len(rows)} runs with {len(baseline)} baseline runs: "
                         "name them *_seed<N> (ssl.sh --seeds) or give as many, in seed order")
    diffs = [a.gain - b.gain for _, a, b in pairs]
    n = len(diffs)
    mean = statistics.fmean(diffs)
    out = {"pairs": n, "seeds": [s for s, _, _ in pairs], "diffs": diffs, "mean_diff": mean,
           "ci95": None}
    if n > 1:
        half = (_T975[n - 2] if n - 1 <= len(_T975) else 1.96) * statistics.stdev(diffs) / n ** 0.5
        out["ci95"] = [mean - half, mean + half]
    return out


def format_comparison(cmp: dict) -> str:
    per = ", ".join(f"s{s} {d:+.1f}" for s, d in zip(cmp["seeds"], cmp["diffs"]))
    line = (f"vs the baseline study, paired by seed ({cmp['pairs']} pairs): gain difference "
            f"mean {cmp['mean_diff']:+.1f} points ({per})")
    if cmp["ci95"] is not None:
        lo, hi = cmp["ci95"]
        verdict = "better" if lo > 0 else "worse" if hi < 0 else "no difference shown"
        line += f", 95% paired-t interval over seeds [{lo:+.1f}, {hi:+.1f}]: {verdict}"
    return line + "\n"
