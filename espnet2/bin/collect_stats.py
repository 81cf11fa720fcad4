"""Stage 6: collect shapes/statistics with ``ssl_train --collect_stats`` over ``nj`` jobs.

    python -m espnet2.bin.collect_stats --cmd "$train_cmd" --nj 32 \
        --train_dir dump/raw/train --valid_dir dump/raw/valid --output_dir exp/ssl_stats_raw \
        [--with_text] [--sum_stats] -- --config conf/x.yaml --frontend_conf fs=16k ...

Everything after ``--`` goes to every ``ssl_train`` job.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys
from pathlib import Path

from espnet2.recipe import stats


def main(cmd: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cmd", default=f"{sys.executable} -m espnet2.bin.run_jobs")
    p.add_argument("--nj", type=int, default=1)
    p.add_argument("--train_dir", type=Path, required=True)
    p.add_argument("--valid_dir", type=Path, required=True)
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--with_text", action="store_true", help="also a text stream (pseudo-labels)")
    p.add_argument("--sum_stats", action="store_true", help="sum feats stats (global_mvn)")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="-- extra ssl_train arguments")
    a = p.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    extra = a.extra[1:] if a.extra[:1] == ["--"] else a.extra
    logdir = a.output_dir / "logdir"
    nj = stats.num_jobs(a.nj, a.train_dir, a.valid_dir)
    stats.clean(logdir)
    stats.split_keys(a.train_dir / "wav.scp", nj, logdir, "train")
    stats.split_keys(a.valid_dir / "wav.scp", nj, logdir, "valid")
    job = stats.job_command(a.train_dir, a.valid_dir, logdir, a.with_text, extra)
    argv = [*shlex.split(a.cmd), f"JOB=1:{nj}", str(logdir / "stats.JOB.log"), *job]
    if subprocess.call(argv) != 0:
        logging.error("collect-stats failed; see %s/stats.*.log", logdir)
        return 1
    stats.aggregate([logdir / f"stats.{i}" for i in range(1, nj + 1)], a.output_dir, a.sum_stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
