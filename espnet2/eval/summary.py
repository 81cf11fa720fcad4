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
