"""Read one utterance of audio from a wav.scp value (file path, ``cmd |`` pipe, or a Kaldi
archive entry ``data.ark:OFFSET``, :mod:`espnet2.data.ark`).

Decoding uses soundfile (wav, flac, ogg ...). Integer PCM is scaled to float32 in
[-1, 1) (int16 ``x / 32768``). Every failure is a :class:`DataError` naming the
utterance, the file, the offending value and what to do.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess

import numpy as np
import soundfile

from espnet2.data.ark import ArkEntryError, parse_ark_spec, read_ark_entry
from espnet2.data.errors import DataError, Problem
from espnet2.data.kaldi import Segment, is_pipe

logger = logging.getLogger(__name__)


def _problem(spec: str, utt: str | None, value: str | None, message: str, hint: str) -> DataError:
    return DataError(Problem(spec, None, utt, value, message, hint))


def _run_pipe(spec: str, utt: str | None) -> bytes:
    """Run ``cmd |`` in a shell and return its stdout (the encoded audio)."""
    cmd = spec.rstrip()[:-1].strip()
    proc = subprocess.run(cmd, shell=True, capture_output=True)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-500:]
        raise _problem(spec, utt, cmd, f"pipe command failed with exit code {proc.returncode}: "
                       f"{err}", "run the command by hand to see why; fix wav.scp or "
                       "install the tool it calls")
    if not proc.stdout:
        raise _problem(spec, utt, cmd, "pipe command wrote no audio to stdout",
                       "the command must write a wav/flac stream to stdout")
    return proc.stdout


def _open(spec: str, utt: str | None) -> soundfile.SoundFile:
    if is_pipe(spec):
        source: str | io.BytesIO = io.BytesIO(_run_pipe(spec, utt))
    elif (ark := parse_ark_spec(spec)) is not None:
        if not os.path.isfile(ark[0]):
            raise _problem(spec, utt, ark[0], "archive file does not exist",
                           "fix the path in wav.scp or rerun stage 3 (format_wav_scp)")
        try:
            source = io.BytesIO(read_ark_entry(*ark))
        except ArkEntryError as e:
            raise _problem(spec, utt, spec, str(e), "the offset must point at an audio entry "
                           "written by stage 3 (--audio_format wav.ark/flac.ark), kaldiio "
                           "(write_function='soundfile') or Kaldi's wav-copy") from e
    elif not os.path.isfile(spec):
        raise _problem(spec, utt, spec, "audio file does not exist",
                       "fix the path in wav.scp or rerun data preparation")
    else:
        source = spec
    try:
        return soundfile.SoundFile(source)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        raise _problem(spec, utt, spec, f"cannot decode audio: {e}",
                       "check the file is a valid wav/flac (soxi / sf.info); re-encode it in "
                       "stage 3 (format_wav_scp)") from e


def audio_info(spec: str, *, utt: str | None = None) -> tuple[int, int, int]:
    """``(frames, fs, channels)`` from the header (a pipe is run but not decoded)."""
    with _open(spec, utt) as f:
        return int(f.frames), int(f.samplerate), int(f.channels)


def read_audio(
    spec: str,
    *,
    expected_fs: int | None = None,
    segment: Segment | tuple[float, float] | None = None,
    utt: str | None = None,
) -> tuple[np.ndarray, int]:
    """Decode one mono utterance.

    Args:
        spec: a wav.scp value: audio file path or ``cmd ... |``.
        expected_fs: required sampling rate (None: accept any).
        segment: ``Segment(reco, start, end)`` or ``(start, end)`` in seconds: read only
            that span (Kaldi segments).
        utt: utterance id, only used in error messages.

    Returns:
        ``(wave, fs)``: wave is float32 of shape ``(N,)`` in [-1, 1) for PCM input.
    """
    with _open(spec, utt) as f:
        fs, channels, total = int(f.samplerate), int(f.channels), int(f.frames)
        if channels != 1:
            raise _problem(spec, utt, str(channels), f"audio has {channels} channels, "
                           "expected mono", "downmix or pick a channel in wav.scp, e.g. "
                           "'sox in.wav -t wav - remix 1 |', or in stage 3 (format_wav_scp)")
        if expected_fs is not None and fs != expected_fs:
            raise _problem(spec, utt, str(fs), f"sampling rate is {fs} Hz, expected "
                           f"{expected_fs} Hz", f"resample in stage 3 (ssl.sh --fs "
                           f"{expected_fs}) or pass --fs {fs} if {fs} Hz is intended")
        start, stop = 0, total
        if segment is not None:
            t0, t1 = (segment.start, segment.end) if isinstance(segment, Segment) else segment
            start, stop = int(round(t0 * fs)), int(round(t1 * fs))
            if start >= total:
                raise _problem(spec, utt, f"{t0}-{t1}", f"segment starts after the end of the "
                               f"recording ({total / fs:.3f} s)", "fix the segments file")
            stop = min(stop, total)
            f.seek(start)
        wave = f.read(stop - start, dtype="float32", always_2d=True)[:, 0]
    if wave.shape[0] == 0:
        raise _problem(spec, utt, "0 samples", "audio is empty (zero length)",
                       "remove the utterance (stage 4 filters by utt2num_samples)")
    if not np.isfinite(wave).all():
        bad = int((~np.isfinite(wave)).sum())
        raise _problem(spec, utt, f"{bad} non-finite samples", "audio contains NaN or Inf",
                       "re-encode the file as PCM, or remove the utterance")
    return np.ascontiguousarray(wave), fs
