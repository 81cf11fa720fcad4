"""Benchmark: stage 6 (``espnet2.bin.collect_stats``) with ``nj`` parallel jobs, threads per job.

The recipe's jobs now run on one torch thread each (``espnet2.recipe.stats.job_command``); the
baseline is what each job picked before on an idle machine, every CPU (``--num_threads
nproc``), so the ``nj`` jobs oversubscribe the CPUs. Synthetic 16 kHz corpus, log-mel frontend
(the FSDD recipe's; feature statistics are computed per utterance), the two variants
alternated round by round.

    tools/venv/bin/python bench/bench_stats.py [--num_utts 4000] [--nj 2] [--rounds 3] \
        [--output bench/results/stats.md]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (  # noqa: E402
    interleave,
    machine_line,
    median,
    ratio_lines,
    write_results,
)

FRONTEND_YAML = """\
frontend: default
frontend_conf: {n_fft: 512, win_length: 400, hop_length: 320, n_mels: 40, fmax: 4000, fs: 16k}
"""


def make_corpus(root: Path, n: int) -> tuple[Path, Path, Path]:
    """``n`` train and ``n // 10`` valid clips of 0.3-1 s noise (FSDD-like lengths)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    dirs = []
    for phase, count in (("train", n), ("valid", max(2, n // 10))):
        d = root / phase
        (d / "wav").mkdir(parents=True)
        lines = []
        for i in range(count):
            path = d / "wav" / f"u{i:06d}.wav"
            sf.write(path, 0.1 * rng.standard_normal(int(rng.integers(4800, 16000))), 16000)
            lines.append(f"u{i:06d} {path}\n")
        (d / "wav.scp").write_text("".join(lines))
        dirs.append(d)
    conf = root / "frontend.yaml"
    conf.write_text(FRONTEND_YAML)
    return dirs[0], dirs[1], conf


def stats_job(train: Path, valid: Path, conf: Path, out: Path, nj: int, threads: int | None):
    """One stage-6 run as the recipe calls it; ``threads`` None = the recipe's default."""
    extra = ["--config", str(conf)] + ([] if threads is None else ["--num_threads", str(threads)])
    argv = [sys.executable, "-m", "espnet2.bin.collect_stats", "--nj", str(nj),
            "--train_dir", str(train), "--valid_dir", str(valid), "--output_dir", str(out),
            "--", *extra]

    def run() -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=600)

    return run


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--num_utts", type=int, default=4000)
    p.add_argument("--nj", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="40 utterances, 1 round")
    p.add_argument("--output", default=None)
    a = p.parse_args(argv)
    n, rounds = (40, 1) if a.smoke else (a.num_utts, a.rounds)
    nproc = len(os.sched_getaffinity(0))
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        train, valid, conf = make_corpus(Path(tmp), n)
        variants = {
            "one_thread": stats_job(train, valid, conf, Path(tmp) / "o1", a.nj, None),
            f"all_cpus_t{nproc}": stats_job(train, valid, conf, Path(tmp) / "oa", a.nj, nproc),
        }
        times = interleave(variants, rounds=rounds, per_round=1, warmup=0)
    med = {k: median(v) for k, v in times.items()}
    body = [f"stage 6, {n} train utterances, nj={a.nj}, {rounds} rounds (median s per run)",
            *ratio_lines(med, "one_thread", unit="s")]
    print("\n".join(body))
    if a.output:
        command = "tools/venv/bin/python bench/bench_stats.py " + " ".join(argv or sys.argv[1:])
        write_results(a.output, "Stage 6 (collect_stats): threads per parallel job", command,
                      [machine_line(), *body])


if __name__ == "__main__":
    main()
