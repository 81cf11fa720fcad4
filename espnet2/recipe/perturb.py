"""Stage 2: speed perturbation (Kaldi ``perturb_data_dir_speed.sh``), without sox.

Speed factor ``f`` plays the audio ``f`` times faster (pitch and tempo change together): the
waveform is resampled from ``fs`` to ``fs / f`` and relabelled ``fs``. In the data dir this
is a pipe in ``wav.scp`` (``python -m espnet2.bin.perturb_speed --pipe f <spec> |``) resolved by
stage 3, utterance/recording/speaker ids get the prefix ``sp{f}-``, segment times are divided
by ``f`` and length files (``utt2num_samples``, ``utt2dur``) are dropped (stage 3 rewrites
them). Factor 1.0 keeps the original ids.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import numpy as np

from espnet2.recipe import datadir

logger = logging.getLogger(__name__)


LENGTH_FILES = ("utt2num_samples", "utt2dur")


def prefix(factor: float) -> str:
    """Id prefix of a factor: ``0.9`` -> ``"sp0.9-"``."""
    return f"sp{factor:g}-"


def change_speed(wav: np.ndarray, fs: int, factor: float) -> np.ndarray:
    """Play ``wav`` ``factor`` times faster: (N,) -> (≈ N / factor,) (within one sample)."""
    import soxr

    return soxr.resample(wav, fs, fs / factor, quality="VHQ").astype(np.float32)


def _pipe(spec: str, factor: float) -> str:
    exe = shlex.quote(sys.executable)
    return f"{exe} -m espnet2.bin.perturb_speed --pipe {factor:g} {shlex.quote(spec.strip())} |"


def parse_pipe(spec: str) -> tuple[float, str] | None:
    """``(factor, inner spec)`` when ``spec`` is a pipe written by :func:`perturb_data_dir`."""
    words = shlex.split(spec.strip()[:-1]) if spec.strip().endswith("|") else []
    if words[1:5:2] == ["-m", "--pipe"] and words[2] == "espnet2.bin.perturb_speed":
        return float(words[4]), " ".join(words[5:])
    return None


def perturb_data_dir(src: str | Path, dst: str | Path, factor: float) -> None:
    """Write ``dst``: ``src`` at speed ``factor`` (ids prefixed unless ``factor == 1``)."""
    if factor <= 0:
        raise ValueError(f"speed factor {factor} must be > 0 (e.g. 0.9 1.0 1.1)")
    src, dst = Path(src), Path(dst)
    files, plain = datadir.load_dir(src)
    if factor == 1.0:
        datadir.write_dir(dst, files, plain)
        return
    p = prefix(factor)
    out: dict[str, dict[str, str]] = {}
    out["wav.scp"] = {p + k: _pipe(v, factor) for k, v in files["wav.scp"].items()}
    if "segments" in files:
        seg = {}
        for k, v in files["segments"].items():
            reco, start, end = v.split()
            end_s = end if float(end) < 0 else f"{float(end) / factor:.3f}"
            seg[p + k] = f"{p}{reco} {float(start) / factor:.3f} {end_s}"
        out["segments"] = seg
    out["utt2spk"] = {p + k: p + v for k, v in files["utt2spk"].items()}
    for name, data in files.items():  # lengths are dropped: stage 3 measures them again
        if name not in out and name not in datadir.RECO_FILES and name not in LENGTH_FILES:
            out[name] = {p + k: v for k, v in data.items()}
    datadir.write_dir(dst, out, plain)


def perturb_and_combine(src: str | Path, dst: str | Path, factors: list[float]) -> int:
    """``dst`` = union of ``src`` at every factor (``data/T_sp``); returns its utterance count."""
    src, dst = Path(src), Path(dst)
    parts = []
    for f in factors:
        part = dst.parent / f"{dst.name}.parts" / f"sp{f:g}"
        perturb_data_dir(src, part, f)
        parts.append(part)
    n = datadir.combine_data_dirs(dst, parts)
    logger.info("%s: %d utterances at speeds %s", dst, n, factors)
    return n
