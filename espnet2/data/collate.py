"""Collate utterances into a padded or cropped batch with frame-aligned labels.

Frame arithmetic comes only from :class:`~espnet2.data.frames.FrameGeometry`:
a crop starts at ``k * stride`` samples, so frame ``i`` of the crop is frame
``k + i`` of the full utterance and its label is ``labels[k + i]``.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import numpy as np
import torch

from espnet2.data.errors import DataError, Problem
from espnet2.data.frames import FrameGeometry

logger = logging.getLogger(__name__)

IGNORE_ID = -1  # ESPnet int_pad_value: padded / unknown label frames


class SSLCollate:
    """``collate([(utt_id, {"speech": (N,), "text": (L,)}), ...]) -> batch dict``.

    Output: ``utt_id`` list[str], ``speech`` (B, N) float32, ``speech_lengths`` (B,) long,
    and with labels ``text`` (B, T) long padded with -1, ``text_lengths`` (B,) long where
    ``text_lengths[b] == geometry.num_frames(speech_lengths[b])`` always.

    Args:
        geometry: the frontend's frame geometry (wav2vec 2.0 CNN: (400, 320, 0)).
        pad: True pads to the longest utterance (validation); False crops every
            utterance to the shortest one (ESPnet ``collate_fn_conf.pad``, default False).
        rand_crop: random crop offset (multiple of ``stride``); False crops from 0.
        label_downsampling: keep every k-th label (100 Hz labels for a 50 Hz model: 2).
        crop_seed: seed of the crop offsets; with :meth:`set_epoch` and the batch's
            utterance ids it fixes every offset, whichever DataLoader worker runs it.
        label_tolerance: largest allowed ``|len(labels) - num_frames(N)|`` (after
            downsampling); beyond it the labels belong to another frame rate and a
            :class:`DataError` is raised. None disables the check.
    """

    def __init__(
        self,
        geometry: FrameGeometry,
        pad: bool = False,
        rand_crop: bool = True,
        label_downsampling: int = 1,
        crop_seed: int = 0,
        label_tolerance: int | None = 2,
    ):
        if label_downsampling < 1:
            raise ValueError(f"label_downsampling={label_downsampling} must be >= 1")
        self.geometry = geometry
        self.pad = pad
        self.rand_crop = rand_crop
        self.label_downsampling = label_downsampling
        self.crop_seed = crop_seed
        self.label_tolerance = label_tolerance
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the crop offsets of ``epoch`` (call before creating the loader iterator)."""
        self.epoch = int(epoch)

    def _rng(self, utt_ids: Sequence[str]) -> np.random.Generator:
        batch_hash = zlib.crc32("\0".join(utt_ids).encode())
        return np.random.default_rng([self.crop_seed, self.epoch, batch_hash])

    def crop_offsets(
        self, utt_ids: Sequence[str], lengths: Sequence[int], target: int
    ) -> list[int]:
        """Start sample of each crop of ``target`` samples: a multiple of ``stride``."""
        stride = self.geometry.stride
        max_k = [(n - target) // stride for n in lengths]
        if not self.rand_crop:
            return [0] * len(lengths)
        rng = self._rng(utt_ids)
        return [int(rng.integers(0, m + 1)) * stride for m in max_k]

    def __call__(self, items: Sequence[tuple[str, dict[str, np.ndarray]]]) -> dict:
        if not items:
            raise ValueError("cannot collate an empty batch")
        utt_ids = [u for u, _ in items]
        waves = [np.asarray(d["speech"], dtype=np.float32) for _, d in items]
        has_text = ["text" in d for _, d in items]
        if any(has_text) and not all(has_text):
            missing = [u for u, h in zip(utt_ids, has_text) if not h]
            raise DataError(Problem(None, None, missing[0], None, "some utterances of the batch "
                                    "have labels and others do not", "give every utterance a "
                                    "line in the text file"))
        lengths = [w.shape[0] for w in waves]
        if self.pad:
            offsets, crop_lens = [0] * len(waves), lengths
        else:
            target = min(lengths)
            offsets, crop_lens = self.crop_offsets(utt_ids, lengths, target), [target] * len(waves)
        n_max = max(crop_lens)
        speech = torch.zeros(len(waves), n_max, dtype=torch.float32)
        for b, (w, o, n) in enumerate(zip(waves, offsets, crop_lens)):
            speech[b, :n] = torch.from_numpy(w[o : o + n])
        batch = {"utt_id": utt_ids, "speech": speech,
                 "speech_lengths": torch.tensor(crop_lens, dtype=torch.long)}
        if all(has_text):
            frames = [self.geometry.num_frames(n) for n in crop_lens]
            text = torch.full((len(waves), max(frames)), IGNORE_ID, dtype=torch.long)
            for b, (u, (_, d)) in enumerate(zip(utt_ids, items)):
                lab = self._labels(u, d["text"], lengths[b])
                seg = lab[offsets[b] // self.geometry.stride :][: frames[b]]
                text[b, : len(seg)] = torch.from_numpy(seg)
            batch["text"] = text
            batch["text_lengths"] = torch.tensor(frames, dtype=torch.long)
        return batch

    def _labels(self, utt: str, labels: np.ndarray, num_samples: int) -> np.ndarray:
        """Downsampled int64 labels of a full utterance, checked against its frame count."""
        lab = np.asarray(labels, dtype=np.int64)[:: self.label_downsampling]
        expected = self.geometry.num_frames(num_samples)
        if self.label_tolerance is not None and abs(len(lab) - expected) > self.label_tolerance:
            raise DataError(Problem(None, None, utt, f"{len(lab)} labels",
                                    f"{len(lab)} labels (after label_downsampling="
                                    f"{self.label_downsampling}) for {num_samples} samples = "
                                    f"{expected} frames of {self.geometry}",
                                    "labels must have one entry per encoder frame: set "
                                    "collate_fn_conf.label_downsampling (2 for 100 Hz labels "
                                    "and a 50 Hz encoder) or regenerate the labels"))
        return lab
