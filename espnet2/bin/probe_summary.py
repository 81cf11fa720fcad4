"""Summarise a seed study: many ``probe.json`` reports -> per-run gains, mean / min / std.

    python -m espnet2.bin.probe_summary exp/seeds/*/probe/probe.json --target_gain 10

Each report's pre-trained model is compared with its own random-init row (the run's starting
weights) and with the report's baselines (MFCC rows). With ``--target_gain`` the exit code is
1 when a run gains less or does not beat every baseline (0 when the target is met), 2 on bad
input. ``--markdown`` / ``--json`` also write the table / the summary (atomically).
``--baseline`` compares the gains with another seed study's, paired by seed (e.g. a variant
against the recipe: ``--baseline exp/ssl_train_hubert_raw_seed*/probe/probe.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("reports", nargs="+", type=Path, help="probe.json files (one per run)")
    p.add_argument("--task", default="digit")
    p.add_argument("--target_gain", type=float, default=None, help="points over random init")
    p.add_argument("--json", type=Path, default=None, help="also write the summary here")
    p.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    p.add_argument("--baseline", nargs="+", type=Path, default=None,
                   help="probe.json files of the study to compare with (paired by seed)")
    return p


def main(argv: list[str] | None = None) -> int:
    from espnet2.eval.summary import (
        compare,
        format_comparison,
        format_summary,
        read_runs,
        summarise,
    )
    from espnet2.utils.fileio import atomic_write

    args = get_parser().parse_args(argv)
    missing = [str(p) for p in [*args.reports, *(args.baseline or [])] if not p.is_file()]
    if missing:
        print(f"probe_summary: no such report: {', '.join(missing)} (run ssl_probe first)",
              file=sys.stderr)
        return 2
    try:
        rows = read_runs(args.reports, args.task)
        cmp = None
        if args.baseline:
            cmp = compare(rows, read_runs(args.baseline, args.task))
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"probe_summary: {e}", file=sys.stderr)
        return 2
    summary = summarise(rows, args.target_gain)
    if cmp is not None:
        summary["vs_baseline"] = cmp
    text = format_summary(rows, summary) + (format_comparison(cmp) if cmp else "")
    print(text, end="")
    if args.markdown:
        with atomic_write(args.markdown) as f:
            f.write(text)
    if args.json:
        with atomic_write(args.json) as f:
            json.dump({**summary, "per_run": [vars(r) | {"gain": r.gain} for r in rows]}, f,
                      indent=2)
    return 0 if summary.get("target_met", True) else 1


if __name__ == "__main__":
    sys.exit(main())
