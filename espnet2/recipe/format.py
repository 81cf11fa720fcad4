"""Stage 3: format audio (``scripts/audio/format_wav_scp.sh``): resolve ``cmd |`` pipes, cut
``segments``, resample to one rate with soxr (quality "VHQ"), write 16-bit flac/wav files, or
one Kaldi archive per job (``wav.ark`` / ``flac.ark``: ESPnet's data type ``kaldi_ark``).

Output dir layout (ESPnet): ``<dst>/{wav.scp, utt2num_samples, feats_type, text, utt2spk,
spk2utt}`` and audio under ``<dst>/data/format.<job>/<utt>.<ext>`` (archives:
``<dst>/data/format.<job>/data_<fmt>.ark``, wav.scp values ``<ark>:<offset>``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import sys
from pathlib import Path

import humanfriendly
import numpy as np
import soundfile as sf
import soxr

from espnet2.data import ark
from espnet2.data.errors import DataError, Problem
from espnet2.recipe import datadir, perturb
from espnet2.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

FORMATS = ("flac", "wav", "flac.ark", "wav.ark")


def parse_fs(fs: str | int) -> int:
    """``"16k"`` -> 16000 (humanfriendly decimal sizes, as ESPnet's ``--fs``)."""
    value = humanfriendly.parse_size(str(fs))
    if value <= 0:
        raise ValueError(f"--fs {fs!r} is not a positive sampling rate")
    return int(value)


def read_recording(
    spec: str, start: float | None = None, end: float | None = None
) -> tuple[np.ndarray, int]:
    """Read a ``wav.scp`` value: a path or ``cmd |``; optionally only ``[start, end)`` seconds.

    Returns ``(float32 array (N,) or (N, C), fs)``.
    """
    spec = spec.strip()
    if (sp := perturb.parse_pipe(spec)) is not None:  # our own pipe: no process per utterance
        wav, fs = read_recording(sp[1])
        return _cut(perturb.change_speed(wav, fs, sp[0]), fs, start, end)
    if spec.endswith("|"):
        proc = subprocess.run(spec[:-1], shell=True, capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"pipe {spec!r} exited with {proc.returncode}: "
                f"{proc.stderr.decode(errors='replace')[-500:]}"
            )
        return _cut(*sf.read(io.BytesIO(proc.stdout), dtype="float32"), start, end)
    if (entry := ark.parse_ark_spec(spec)) is not None:
        return _cut(*sf.read(io.BytesIO(ark.read_ark_entry(*entry)), dtype="float32"), start, end)
    if start is None:
        return sf.read(spec, dtype="float32")
    fs = sf.info(spec).samplerate
    stop = None if end is None or end < 0 else int(round(end * fs))
    return sf.read(spec, start=int(round(start * fs)), stop=stop, dtype="float32")


def _cut(wav: np.ndarray, fs: int, start: float | None, end: float | None):
    """``[start, end)`` seconds of a decoded recording (``end`` None or < 0: to the end)."""
    if start is not None:
        wav = wav[
            int(round(start * fs)) : None if end is None or end < 0 else int(round(end * fs))
        ]
    return wav, fs


def resample(wav: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    """Band-limited resampling (soxr VHQ); output length ``ceil(N * fs_out / fs_in)``."""
    if fs_in == fs_out:
        return wav
    return soxr.resample(wav, fs_in, fs_out, quality="VHQ").astype(np.float32)


def format_utts(
    src: Path, keys: list[str], outdir: Path, fs: int, audio_format: str
) -> dict[str, int]:
    """Format the utterances ``keys`` of data dir ``src`` into ``outdir``; returns num samples.

    Writes ``outdir/wav.scp`` and ``outdir/utt2num_samples`` for these keys, and the audio as
    one file per utterance or, for ``*.ark`` formats, one archive ``outdir/data_<fmt>.ark``.
    All unreadable utterances are reported together (file, utterance, spec, reason), and
    nothing is written then.
    """
    if audio_format not in FORMATS:
        raise ValueError(f"--audio_format {audio_format!r} is not supported; use one of {FORMATS}")
    codec = audio_format.split(".")[0]
    wav_scp = datadir.read_kv(src / "wav.scp")
    segments = datadir.read_kv(src / "segments") if (src / "segments").is_file() else None
    outdir.mkdir(parents=True, exist_ok=True)
    scp, lengths, problems = {}, {}, []
    archive = outdir / f"data_{codec}.ark"
    with contextlib.ExitStack() as stack:
        ark_file = stack.enter_context(atomic_write(archive, "wb")) if "ark" in audio_format \
            else None
        for utt in keys:
            try:
                if segments is not None:
                    reco, start, end = segments[utt].split()
                    wav, fs_in = read_recording(wav_scp[reco], float(start), float(end))
                else:
                    wav, fs_in = read_recording(wav_scp[utt])
                wav = resample(wav, fs_in, fs)
                audio = ark.encode_audio(wav, fs, codec)
                if ark_file is not None:
                    scp[utt] = f"{archive.resolve()}:{ark.write_ark_entry(ark_file, utt, audio)}"
                else:
                    path = outdir / f"{utt}.{codec}"
                    with atomic_write(path, "wb") as f:
                        f.write(audio)
                    scp[utt] = str(path.resolve())
            except (RuntimeError, ValueError, KeyError, OSError, sf.LibsndfileError) as e:
                spec = wav_scp.get(segments[utt].split()[0] if segments else utt, "?")
                problems.append(
                    Problem(
                        str(src / "wav.scp"),
                        None,
                        utt,
                        spec,
                        f"cannot format: {e}",
                        "fix or remove this entry (utils: espnet2.bin.data_dir)",
                    )
                )
                continue
            lengths[utt] = len(wav)
        if problems:
            raise DataError(problems)  # inside the ExitStack: the partial archive is dropped
    datadir.write_kv(outdir / "wav.scp", scp)
    datadir.write_kv(outdir / "utt2num_samples", {k: str(v) for k, v in lengths.items()})
    return lengths


def prepare_jobs(src: Path, dst: Path, nj: int) -> int:
    """Copy ``src`` (without audio files) to ``dst`` and write ``dst/logdir/keys.{1..nj}``."""
    datadir.copy_data_dir(src, dst, drop=("segments", *datadir.RECO_FILES))
    keys = sorted(
        datadir.read_kv(src / "segments" if (src / "segments").is_file() else src / "wav.scp")
    )
    nj = max(1, min(nj, len(keys)))
    for i in range(nj):
        part = keys[i * len(keys) // nj : (i + 1) * len(keys) // nj]
        with atomic_write(dst / "logdir" / f"keys.{i + 1}") as f:
            f.write("".join(k + "\n" for k in part))
    return nj


def merge_jobs(dst: Path, nj: int) -> int:
    """Merge the per-job ``wav.scp``/``utt2num_samples`` into ``dst``, write ``feats_type``."""
    for name in ("wav.scp", "utt2num_samples"):
        merged: dict[str, str] = {}
        for i in range(1, nj + 1):
            merged.update(datadir.read_kv(dst / "data" / f"format.{i}" / name))
        datadir.write_kv(dst / name, merged)
    with atomic_write(dst / "feats_type") as f:
        f.write("raw\n")
    return datadir.fix_data_dir(dst)


def job_command(src: Path, dst: Path, fs: int, audio_format: str) -> list[str]:
    """The per-job command (``JOB`` is substituted by the backend)."""
    return [
        sys.executable,
        "-m",
        "espnet2.bin.format_wav_scp",
        "--job",
        "JOB",
        "--fs",
        str(fs),
        "--audio_format",
        audio_format,
        str(src),
        str(dst),
    ]
