"""Audio in Kaldi archives: ``wav.scp`` values of the form ``/path/data.ark:OFFSET``.

ESPnet's stage 3 with ``--audio_format wav.ark`` / ``flac.ark`` (data type ``kaldi_ark``)
stores every utterance of a job in one archive, as kaldiio's ``write_function="soundfile"``
does; Kaldi's own ``wav-copy`` stores plain RIFF waves. At ``OFFSET`` (just after
``"<utt> "``) an entry is one of::

    b"AUDIO" <n: 1 byte> <length: n bytes, little-endian> <length bytes of a wav/flac file>
    b"RIFF" <size: 4 bytes, little-endian> ...          (a whole wav file of size + 8 bytes)

The bytes are decoded by soundfile like any other audio file, so the checks of
:mod:`espnet2.data.audio` (mono, rate, NaN) apply unchanged.
"""

from __future__ import annotations

import io
import os
import re
from typing import BinaryIO

import numpy as np
import soundfile

_ARK_SPEC = re.compile(r"^(?P<path>.+):(?P<offset>\d+)$")
AUDIO_MAGIC = b"AUDIO"


def parse_ark_spec(spec: str) -> tuple[str, int] | None:
    """``"/x/data.ark:123"`` -> ``("/x/data.ark", 123)``; None for anything else.

    A value that is itself an existing file (a path containing ``:<digits>``) is not an ark
    reference.
    """
    m = _ARK_SPEC.match(spec.strip())
    if m is None or os.path.isfile(spec):
        return None
    return m.group("path"), int(m.group("offset"))


class ArkEntryError(ValueError):
    """The bytes at an ark offset are not an audio entry (message says what was found)."""


def read_ark_entry(path: str, offset: int) -> bytes:
    """The encoded audio file stored at ``offset`` of the archive ``path``."""
    with open(path, "rb") as f:
        f.seek(offset)
        magic = f.read(5)
        if magic == AUDIO_MAGIC:
            nbytes = f.read(1)
            if not nbytes:
                raise ArkEntryError("archive ends inside an AUDIO entry header")
            length = int.from_bytes(f.read(nbytes[0]), "little")
            data = f.read(length)
        elif magic[:4] == b"RIFF":
            size = f.read(3)
            if len(size) != 3:
                raise ArkEntryError("archive ends inside a RIFF header")
            length = int.from_bytes(magic[4:] + size, "little") + 8
            data = magic + size + f.read(length - 8)
        else:
            what = "end of file" if not magic else f"bytes {magic!r}"
            raise ArkEntryError(
                f"no audio entry at offset {offset} ({what}); an ark of Kaldi matrices "
                "(features) is not audio"
            )
    if len(data) != length:
        raise ArkEntryError(f"archive is truncated: the entry at offset {offset} needs "
                            f"{length} bytes, {len(data)} are left")
    return data


def encode_audio(wave: np.ndarray, fs: int, audio_format: str) -> bytes:
    """16-bit PCM ``wav`` or ``flac`` file bytes."""
    buf = io.BytesIO()
    soundfile.write(buf, wave, fs, format=audio_format.upper(), subtype="PCM_16")
    return buf.getvalue()


def write_ark_entry(f: BinaryIO, utt: str, audio: bytes) -> int:
    """Append ``"<utt> " AUDIO <len> <audio>`` to the open archive; returns the offset for
    the ``wav.scp`` value (where ``AUDIO`` starts), as kaldiio's soundfile writer."""
    if not utt or any(c.isspace() for c in utt):
        raise ValueError(f"utterance id {utt!r} cannot be an ark key (empty or whitespace)")
    f.write(utt.encode() + b" ")
    offset = f.tell()
    nbytes = max(1, (len(audio).bit_length() + 7) // 8)
    f.write(AUDIO_MAGIC + bytes([nbytes]) + len(audio).to_bytes(nbytes, "little"))
    f.write(audio)
    return offset
