"""Run recipe jobs through a backend (Kaldi ``run.pl`` / ``slurm.pl`` interface).

    python -m espnet2.bin.run_jobs [--backend local|slurm] [--config conf/slurm.conf] \
        [--gpu N] [--num_nodes M] [--mem 4G] [--time 2:00:00] [--num_threads T] \
        [--max_jobs_run K] JOB=1:N log/x.JOB.log cmd args...

``JOB`` in the log name and the command becomes 1..N. Exits nonzero if any job failed,
after printing the end of each failing log.
"""

from __future__ import annotations

import argparse
import logging
import sys

from espnet2.recipe.jobs import SlurmConf, parse_job_args, run_local, run_slurm


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=["local", "slurm"], default="local")
    p.add_argument("--config", default=None, help="slurm.conf (ESPnet format)")
    p.add_argument(
        "--max_jobs_run",
        "--max-jobs-run",
        "--nj",
        type=int,
        default=None,
        help="jobs running at once (default: all)",
    )
    p.add_argument("--num_nodes", "--num-nodes", type=int, default=1)
    for name in ("gpu", "mem", "time", "num_threads", "name"):
        p.add_argument(
            f"--{name}",
            f"--{name.replace('_', '-')}",
            default=None,
            help="passed to the Slurm options of the config",
        )
    p.add_argument("job", nargs=argparse.REMAINDER, help="[JOB=1:N] LOG COMMAND...")
    return p


def main(cmd: list[str] | None = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    spec = parse_job_args(args.job)
    if args.backend == "local":
        if args.num_nodes > 1:
            sys.stderr.write(
                "run_jobs: --num_nodes > 1 needs a cluster backend; set cmd_backend=slurm in "
                "cmd.sh, or start the same command on every node with torchrun (see launch)\n"
            )
            return 2
        return run_local(spec, args.max_jobs_run)
    options = {
        k: str(v)
        for k in ("gpu", "mem", "time", "num_threads", "name")
        if (v := getattr(args, k)) is not None
    }
    return run_slurm(spec, SlurmConf.load(args.config), options, args.num_nodes, args.max_jobs_run)


if __name__ == "__main__":
    sys.exit(main())
