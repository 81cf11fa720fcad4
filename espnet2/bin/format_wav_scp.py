"""Stage 3: format a data dir's audio (pipes, segments, resampling) in parallel jobs.

    python -m espnet2.bin.format_wav_scp --nj 32 --cmd "$train_cmd" --fs 16k \
        --audio_format flac data/train dump/raw/org/train

Runs ``--nj`` jobs through the ``--cmd`` backend (logs in ``<dst>/logdir/format.JOB.log``),
then merges their ``wav.scp`` and ``utt2num_samples``. ``--audio_format flac.ark`` (or
``wav.ark``) writes one Kaldi archive per job instead of a file per utterance (fewer inodes on
large corpora; ESPnet's data type ``kaldi_ark``, which ``ssl_train`` reads like ``sound``).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys
from pathlib import Path

from espnet2.recipe import format as fmt


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nj", type=int, default=1)
    p.add_argument(
        "--cmd",
        default=f"{sys.executable} -m espnet2.bin.run_jobs",
        help="job backend (cmd.sh train_cmd)",
    )
    p.add_argument("--fs", default="16k", help="output sampling rate, e.g. 16k")
    p.add_argument("--audio_format", default="flac", choices=fmt.FORMATS)
    p.add_argument("--job", type=int, default=None, help="internal: run one job of a split")
    p.add_argument("src", type=Path, help="Kaldi data dir (wav.scp, [segments], ...)")
    p.add_argument("dst", type=Path, help="output dir, e.g. dump/raw/org/train")
    return p


def main(cmd: list[str] | None = None) -> int:
    a = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    fs = fmt.parse_fs(a.fs)
    if a.job is not None:
        keys = (a.dst / "logdir" / f"keys.{a.job}").read_text(encoding="utf-8").split()
        fmt.format_utts(a.src, keys, a.dst / "data" / f"format.{a.job}", fs, a.audio_format)
        return 0
    nj = fmt.prepare_jobs(a.src, a.dst, a.nj)
    argv = [
        *shlex.split(a.cmd),
        f"JOB=1:{nj}",
        str(a.dst / "logdir" / "format.JOB.log"),
        *fmt.job_command(a.src, a.dst, fs, a.audio_format),
    ]
    if subprocess.call(argv) != 0:
        logging.error("formatting %s failed; see %s/logdir/format.*.log", a.src, a.dst)
        return 1
    n = fmt.merge_jobs(a.dst, nj)
    logging.info(
        "formatted %d utterances of %s into %s (%d Hz %s)", n, a.src, a.dst, fs, a.audio_format
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
