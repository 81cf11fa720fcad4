"""Stage 4: keep utterances whose duration is strictly inside ``(min, max)`` seconds.

Durations come from ``utt2num_samples`` (written by stage 3). ``text`` is optional; when present,
lines with an utterance id and no tokens are dropped, as ESPnet does.
"""

from __future__ import annotations

import logging
from pathlib import Path

from espnet2.data.errors import DataError, Problem
from espnet2.recipe import datadir

logger = logging.getLogger(__name__)


def filter_data_dir(
    src: str | Path, dst: str | Path, fs: int, min_sec: float, max_sec: float
) -> tuple[int, int]:
    """Copy ``src`` to ``dst`` keeping ``min_sec * fs < num_samples < max_sec * fs``.

    Returns ``(kept, total)``. Raises :class:`DataError` if nothing is left (with the bounds).
    """
    src, dst = Path(src), Path(dst)
    n2s = src / "utt2num_samples"
    if not n2s.is_file():
        raise DataError(
            Problem(
                str(n2s),
                None,
                None,
                None,
                "missing",
                "run stage 3 (format audio) first; it writes utt2num_samples",
            )
        )
    lengths = datadir.read_kv(n2s)
    files, plain = datadir.load_dir(src)
    lo, hi = min_sec * fs, max_sec * fs
    keep = set()
    problems = []
    for lineno, (utt, n) in enumerate(sorted(lengths.items()), 1):
        try:
            samples = int(n)
        except ValueError:
            problems.append(
                Problem(
                    str(n2s),
                    lineno,
                    utt,
                    n,
                    "not an integer sample count",
                    "re-run stage 3 to rewrite utt2num_samples",
                )
            )
            continue
        if lo < samples < hi:
            keep.add(utt)
    if problems:
        raise DataError(problems)
    if not keep:
        raise DataError(
            Problem(
                str(n2s),
                None,
                None,
                None,
                f"no utterance is within ({min_sec}, {max_sec}) s at {fs} Hz",
                "check --min_wav_duration/--max_wav_duration and --fs",
            )
        )
    datadir.write_dir(dst, datadir.select(files, keep), plain)
    kept = datadir.fix_data_dir(dst)
    logger.info(
        "%s -> %s: kept %d of %d utterances in (%s, %s) s",
        src,
        dst,
        kept,
        len(lengths),
        min_sec,
        max_sec,
    )
    return kept, len(lengths)
