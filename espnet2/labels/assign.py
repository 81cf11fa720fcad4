"""Frame labels from a trained k-means model, in hubert1's file formats.

* :func:`align_labels` maps labels on the feature frames (100 Hz MFCC, geometry
  ``(400, 160, 0)`` at 16 kHz) onto the encoder's frames (50 Hz for the wav2vec CNN,
  ``(400, 320, 0)``): encoder frame ``i`` takes the label of the feature frame whose centre
  is nearest to its own centre. The count is ``encoder_geometry.num_frames(num_samples)``
  exactly, for every length (all arithmetic goes through
  :class:`~espnet2.data.frames.FrameGeometry`).
* :func:`label_stream` assigns argmin-squared-distance labels with ONE model (the one fit on
  train) to any set -- fitting a model per set gives unrelated cluster ids (fairseq #5453).
* :func:`write_label_files` writes ``utt l1 l2 ...`` lines (hubert1 ``pseudo_labels_km<K>.txt``
  and ``<dump>/<set>/text``) atomically, streaming; :func:`write_kmeans_token_list` writes
  ``tokens.txt``: ``0 .. K-1`` then ``<sos/eos>`` and ``<unk>`` on their own lines.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from espnet2.data.frames import FrameGeometry
from espnet2.labels.kmeans import KMeansModel, nearest_centroid
from espnet2.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<sos/eos>", "<unk>")


def align_labels(
    labels: np.ndarray, num_samples: int, src: FrameGeometry, dst: FrameGeometry
) -> np.ndarray:
    """Labels on ``src`` frames ``(T_src,)`` -> labels on ``dst`` frames ``(T_dst,)``.

    ``T_dst == dst.num_frames(num_samples)``. Each ``dst`` frame takes the ``src`` frame
    whose centre (``i * stride - pad + (rf - 1) / 2`` samples) is nearest, clamped to the
    existing ``src`` frames. For ``src = dst`` this is the identity.
    """
    labels = np.asarray(labels)
    n_src = len(labels)
    if n_src != src.num_frames(num_samples):
        raise ValueError(
            f"{n_src} feature frames but the feature geometry {src} gives "
            f"{src.num_frames(num_samples)} for {num_samples} samples"
        )
    n_dst = dst.num_frames(num_samples)
    if n_dst == 0:
        return labels[:0]
    if n_src == 0:
        raise ValueError(
            f"{num_samples} samples give {n_dst} encoder frames but no feature frames "
            f"({src}); the feature window is longer than the encoder's receptive field"
        )
    centre = np.arange(n_dst) * dst.stride - dst.pad + (dst.receptive_field - 1) / 2
    j = np.floor((centre + src.pad - (src.receptive_field - 1) / 2) / src.stride + 0.5)
    return labels[np.clip(j.astype(np.int64), 0, n_src - 1)]


def label_stream(
    feats: Iterable[tuple[str, np.ndarray, int, int]],
    model: KMeansModel,
    dst: FrameGeometry,
    src: FrameGeometry | Callable[[int], FrameGeometry] | None,
    device: str | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """``(utt, feats (T, D), num_samples, fs)`` -> ``(utt, labels (T_dst,) int64)``.

    Args:
        feats: e.g. :func:`~espnet2.labels.features.featurize` of a set's ``wav.scp``.
        model: the k-means model fit on the TRAIN set (used for every set).
        dst: the encoder's frame geometry; every label sequence has ``dst.num_frames(n)``.
        src: geometry of the feature frames, or a function of ``fs`` giving it
            (:func:`~espnet2.labels.features.mfcc_geometry`); None when the features are
            already on the encoder's frames (model-layer features).
    """
    centroids = torch.as_tensor(model.centroids)
    for utt, x, n, fs in feats:
        if x.shape[-1] != model.dim:
            raise ValueError(
                f"utt '{utt}': features have {x.shape[-1]} dims but the k-means model has "
                f"{model.dim}; use the same --feature (and layer) as when it was trained"
            )
        lab = nearest_centroid(torch.from_numpy(np.asarray(x)), centroids, device=device).numpy()
        if src is None:
            want = dst.num_frames(n)
            if len(lab) != want:
                raise ValueError(
                    f"utt '{utt}': the model gave {len(lab)} frames for {n} samples but "
                    f"geometry {dst} gives {want}; pass the model's frontend geometry"
                )
        else:
            lab = align_labels(lab, n, src(fs) if callable(src) else src, dst)
        yield utt, lab


def format_label_line(utt: str, labels: Iterable) -> str:
    """``utt l1 l2 ...`` (an utterance with no frames gets ``utt`` alone)."""
    return " ".join([utt, *map(str, labels)]) + "\n"


def write_label_files(
    labels: Iterable[tuple[str, np.ndarray]], paths: list[str | Path]
) -> dict[str, int]:
    """Stream ``(utt, labels)`` into every path of ``paths`` (atomically; all or nothing).

    Returns counts: ``utts``, ``frames`` and ``empty`` (utterances with no frame).
    """
    stats = {"utts": 0, "frames": 0, "empty": 0}
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(atomic_write(p)) for p in paths]
        for utt, lab in labels:
            line = format_label_line(utt, lab)
            for f in files:
                f.write(line)
            stats["utts"] += 1
            stats["frames"] += len(lab)
            stats["empty"] += len(lab) == 0
    if stats["empty"]:
        logger.warning("%d utterances are shorter than one encoder frame", stats["empty"])
    return stats


def kmeans_token_list(n_clusters: int) -> list[str]:
    """hubert1's token list: ``"0" .. "K-1"`` then ``<sos/eos>``, ``<unk>`` (id == cluster)."""
    return [str(i) for i in range(n_clusters)] + list(SPECIAL_TOKENS)


def write_kmeans_token_list(path: str | Path, n_clusters: int) -> Path:
    """Write :func:`kmeans_token_list` one token per line, atomically."""
    with atomic_write(path) as f:
        f.write("".join(t + "\n" for t in kmeans_token_list(n_clusters)))
    return Path(path)
