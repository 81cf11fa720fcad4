"""A lazy, utterance-keyed dataset over a Kaldi data directory.

Only the index (wav.scp, optional segments and text as strings) lives in memory;
audio is decoded and labels are mapped to ids when an utterance is accessed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, KeysView

import numpy as np

from espnet2.data.audio import audio_info, read_audio
from espnet2.data.errors import DataError, Problem, raise_if
from espnet2.data.kaldi import (
    check_same_utts,
    read_kv,
    read_segments,
    read_token_list,
    read_wav_scp,
)

logger = logging.getLogger(__name__)


class SSLDataset:
    """``dataset[utt_id] -> {"speech": float32 (N,), "text": int64 (L,)}``.

    Args:
        wav_scp: ``wav.scp`` path (``utt path`` / ``utt cmd |``; recording ids if ``segments``).
        text: optional label file (``utt tok1 tok2 ...``, e.g. k-means ids one per frame).
        token_list: tokens in id order (or a tokens.txt path); required with ``text``.
            Labels map through ``token2id``, never through ``int(label)``, so a token list
            whose order differs from the cluster ids is honoured.
        fs: expected sampling rate; other rates raise :class:`DataError` (None: any).
        segments: optional Kaldi ``segments`` file; then keys are segment ids.
    """

    def __init__(
        self,
        wav_scp: str,
        text: str | None = None,
        token_list: list[str] | str | None = None,
        fs: int | None = None,
        segments: str | None = None,
    ):
        self.wav_scp_path = str(wav_scp)
        self.text_path = None if text is None else str(text)
        self.fs = fs
        self.wav_scp = read_wav_scp(self.wav_scp_path)
        self.segments = None
        if segments is not None:
            self.segments = read_segments(segments)
            self._check_recordings(str(segments))
        self._keys = self.segments if self.segments is not None else self.wav_scp

        self.text: dict[str, str] | None = None
        self.token_list: list[str] | None = None
        self.token2id: dict[str, int] = {}
        if isinstance(token_list, (str, os.PathLike)):
            token_list = read_token_list(token_list)
        if token_list is not None:
            self.token_list = list(token_list)
            self.token2id = {t: i for i, t in enumerate(self.token_list)}
        if text is not None:
            if self.token_list is None:
                raise DataError(Problem(self.text_path, None, None, None,
                                        "a text (label) file needs a token list",
                                        "pass --token_list (tokens.txt, one token per line)"))
            self.text = read_kv(text, allow_empty_value=True)
            index_name = segments if segments is not None else self.wav_scp_path
            check_same_utts({str(index_name): self._keys.keys(), self.text_path: self.text.keys()})

    def _check_recordings(self, segments_path: str) -> None:
        problems = [
            Problem(segments_path, i + 1, utt, seg.reco, "recording id not in wav.scp",
                    f"add it to {self.wav_scp_path} or remove the segment")
            for i, (utt, seg) in enumerate(self.segments.items())
            if seg.reco not in self.wav_scp
        ]
        raise_if(problems)

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> KeysView[str]:
        """Utterance ids in file order."""
        return self._keys.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._keys

    def audio_spec(self, utt_id: str) -> str:
        """The wav.scp value that holds ``utt_id``'s audio."""
        if self.segments is not None:
            return self.wav_scp[self.segments[utt_id].reco]
        return self.wav_scp[utt_id]

    def num_samples(self, utt_id: str) -> int:
        """Samples of ``utt_id`` from the audio header (segment-aware; no decoding of files)."""
        spec = self.audio_spec(utt_id)
        frames, fs, _ = audio_info(spec, utt=utt_id)
        if self.segments is None:
            return frames
        seg = self.segments[utt_id]
        return min(int(round(seg.end * fs)), frames) - int(round(seg.start * fs))

    def labels(self, utt_id: str) -> np.ndarray:
        """``(L,)`` int64 token ids of ``utt_id`` (unknown labels raise :class:`DataError`)."""
        ids, problems = self._encode(utt_id)
        raise_if(problems)
        return ids

    def _encode(self, utt_id: str) -> tuple[np.ndarray, list[Problem]]:
        if self.text is None:
            raise ValueError("this dataset has no text file")
        tokens = self.text[utt_id].split()
        t2i = self.token2id
        try:
            return np.fromiter((t2i[t] for t in tokens), np.int64, count=len(tokens)), []
        except KeyError:
            pass
        problems = [
            Problem(self.text_path, None, utt_id, tok, f"label at position {pos} is not in the "
                    f"token list ({len(t2i)} tokens)", "use the token list the labels were made "
                    "with (--token_list), or regenerate the labels")
            for pos, tok in enumerate(tokens) if tok not in t2i
        ]
        return np.empty(0, np.int64), problems

    def validate_labels(self) -> None:
        """Check every label of every utterance; one :class:`DataError` lists all unknown ones."""
        if self.text is None:
            return
        problems: list[Problem] = []
        for utt in self._keys:
            problems.extend(self._encode(utt)[1])
        raise_if(problems)

    def __getitem__(self, utt_id: str) -> dict[str, np.ndarray]:
        if utt_id not in self._keys:
            raise KeyError(f"utterance '{utt_id}' is not in {self.wav_scp_path}")
        spec = self.audio_spec(utt_id)
        segment = self.segments[utt_id] if self.segments is not None else None
        try:
            speech, _ = read_audio(spec, expected_fs=self.fs, segment=segment, utt=utt_id)
        except DataError:
            raise
        except Exception as e:  # decoder / OS errors: say which utterance and file
            raise DataError(Problem(spec, None, utt_id, spec, f"{type(e).__name__}: {e}",
                                    "check the audio file (sf.info / soxi) or remove the "
                                    "utterance")) from e
        item = {"speech": speech}
        if self.text is not None:
            item["text"] = self.labels(utt_id)
        return item
