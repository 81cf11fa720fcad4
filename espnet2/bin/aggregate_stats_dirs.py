"""``python -m espnet2.bin.aggregate_stats_dirs --input_dir d1 d2 ... --output_dir D``.

Merges the per-job ``--collect_stats`` dirs (ESPnet semantics; see
:func:`espnet2.train.collect_stats.aggregate_stats_dirs`).
"""

from __future__ import annotations

import argparse
import logging

from espnet2.train.collect_stats import aggregate_stats_dirs
from espnet2.utils.config import str2bool


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--input_dir", nargs="+", required=True, help="stats dirs of the jobs")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--skip_sum_stats", nargs="?", const=True, default=False, type=str2bool,
                   help="do not sum feats_stats.npz (only needed for global_mvn)")
    p.add_argument("--log_level", default="INFO")
    return p


def main(cmd: list[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s: %(message)s")
    aggregate_stats_dirs(args.input_dir, args.output_dir, args.skip_sum_stats)


if __name__ == "__main__":
    main()
