"""Stage 6: shape files (and optional feature statistics) in ``nj`` parallel jobs.

Splits the train and valid ``wav.scp`` keys into ``nj`` lists, runs
``espnet2.bin.ssl_train --collect_stats true`` once per list through the job backend, then
merges them into ``<output_dir>/{train,valid}/`` with the trainer's ``aggregate_stats_dirs``.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from espnet2.recipe import datadir

logger = logging.getLogger(__name__)


def split_keys(scp: Path, nj: int, out: Path, name: str) -> None:
    """``out/{name}.{1..nj}.scp``: contiguous near-equal slices of ``scp``'s lines (sorted)."""
    data = datadir.read_kv(scp)
    keys = sorted(data)
    for i in range(nj):
        part = {k: data[k] for k in keys[i * len(keys) // nj : (i + 1) * len(keys) // nj]}
        datadir.write_kv(out / f"{name}.{i + 1}.scp", part)


def num_jobs(nj: int, train_dir: Path, valid_dir: Path) -> int:
    """ESPnet: ``min(nj, #train utts, #valid utts)``."""
    sizes = [len(datadir.read_kv(d / "wav.scp")) for d in (train_dir, valid_dir)]
    return max(1, min(nj, *sizes))


def job_command(
    train_dir: Path, valid_dir: Path, logdir: Path, with_text: bool, extra: list[str]
) -> list[str]:
    """The per-job ``ssl_train --collect_stats true`` command (``JOB`` substituted later).

    One torch thread per job: the ``nj`` jobs start together, so none can see the others' load,
    and each would take every CPU, spinning against the others (``bench/bench_stats.py``, 2
    vCPUs, 2 jobs: x3.2 slower with 2 threads a job than with 1; the FSDD recipe's stage 6 took
    13-85 s before, 5 s after). The parallelism is ``nj``; ``extra`` may override.
    """
    argv = [
        sys.executable,
        "-m",
        "espnet2.bin.ssl_train",
        "--collect_stats",
        "true",
        "--num_threads",
        "1",
        "--use_preprocessor",
        "true",
        "--normalize",
        "none",
    ]
    for tag, d in (("train", train_dir), ("valid", valid_dir)):
        argv += [f"--{tag}_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound"]
        if with_text:
            argv += [f"--{tag}_data_path_and_name_and_type", f"{d}/text,text,text"]
        argv += [f"--{tag}_shape_file", str(logdir / f"{tag}.JOB.scp")]
    return [*argv, "--output_dir", str(logdir / "stats.JOB"), *extra]


def aggregate(stats_dirs: list[Path], output_dir: Path, sum_stats: bool) -> None:
    """Merge per-job collect-stats outputs into ``output_dir/{train,valid}`` (the trainer's
    ``aggregate_stats_dirs``: shapes concatenated, feats stats summed only for global MVN)."""
    from espnet2.train.collect_stats import aggregate_stats_dirs

    aggregate_stats_dirs(
        [str(d) for d in stats_dirs], str(output_dir), skip_sum_stats=not sum_stats
    )
    logger.info("aggregated %d stats dirs into %s", len(stats_dirs), output_dir)


def clean(logdir: Path) -> None:
    """Remove a previous run's per-job outputs (a re-run may use another ``nj``)."""
    for p in logdir.glob("stats.*"):
        if p.is_dir():
            shutil.rmtree(p)
