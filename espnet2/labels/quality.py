"""Pseudo-label quality against reference labels (hubert1 ``measure_teacher_quality``).

From the joint distribution ``p(r, k)`` of reference label ``r`` and cluster ``k`` over
frames (HuBERT paper, Sec. IV-D; fairseq ``measure_teacher_quality.py``):

* ``phone_purity`` = ``sum_k max_r p(r, k)`` (fairseq ``hyp_pur``): how pure each cluster is;
* ``cluster_purity`` = ``sum_r max_k p(r, k)`` (fairseq ``ref_pur``): how concentrated each
  reference class is on one cluster;
* ``pnmi`` = ``I(r; k) / H(r)`` (phone-normalised mutual information; entropies in nats).

Frame-level references (one phone per frame, e.g. forced alignments) are compared frame by
frame; a hypothesis at a lower rate is repeated ``hyp_upsample`` times (hubert1 uses 2 for
50 Hz labels vs 100 Hz phones) and lengths within ``tolerance`` are trimmed to the shorter.
With utterance-level references (one token per utterance, e.g. the FSDD digit), every frame
gets its utterance's token: ``phone_purity`` then reads as word purity.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from espnet2.labels.validate import iter_lines
from espnet2.utils.fileio import atomic_write

logger = logging.getLogger(__name__)


class JointCounts:
    """Streaming ``(R, K)`` co-occurrence counts of reference labels and clusters."""

    def __init__(self) -> None:
        self.ref_index: dict[str, int] = {}
        self.hyp_index: dict[str, int] = {}
        self.counts = np.zeros((0, 0), dtype=np.int64)

    def _ids(self, tokens: Sequence[str], index: dict[str, int]) -> np.ndarray:
        return np.fromiter((index.setdefault(t, len(index)) for t in tokens), np.int64, len(tokens))

    def add(self, ref: Sequence[str], hyp: Sequence[str]) -> None:
        """Count frame pairs ``(ref[t], hyp[t])``; both sequences have the same length."""
        if len(ref) != len(hyp):
            raise ValueError(f"{len(ref)} reference vs {len(hyp)} hypothesis frames")
        r, h = self._ids(ref, self.ref_index), self._ids(hyp, self.hyp_index)
        shape = (len(self.ref_index), len(self.hyp_index))
        if shape != self.counts.shape:
            grown = np.zeros(shape, dtype=np.int64)
            grown[: self.counts.shape[0], : self.counts.shape[1]] = self.counts
            self.counts = grown
        np.add.at(self.counts, (r, h), 1)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def quality_from_counts(counts: np.ndarray) -> dict[str, float]:
    """Purities, entropies (nats), MI and PNMI from an ``(R, K)`` count matrix."""
    total = counts.sum()
    if total == 0:
        raise ValueError("no frames to measure label quality on")
    p = counts / total
    p_r, p_k = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(p_r, p_k)[nz])).sum())
    h_r, h_k = _entropy(p_r), _entropy(p_k)
    return {
        "phone_purity": float(p.max(0).sum()),
        "cluster_purity": float(p.max(1).sum()),
        "pnmi": mi / h_r if h_r > 0 else 0.0,
        "mi": mi,
        "h_ref": h_r,
        "h_hyp": h_k,
        "frames": int(total),
        "ref_classes": int((p_r > 0).sum()),
        "clusters_used": int((p_k > 0).sum()),
    }


def measure_quality(
    hyp: Iterable[tuple[str, Sequence[str]]],
    ref: dict[str, Sequence[str]],
    ref_level: str = "auto",
    hyp_upsample: int = 1,
    tolerance: int = 2,
) -> dict:
    """Quality of ``(utt, labels)`` against references ``utt -> tokens``.

    Args:
        ref_level: ``frame`` | ``utt`` | ``auto`` (``utt`` when every reference has one token).
        hyp_upsample: repeat each hypothesis label this many times (rate ratio ref / hyp).
        tolerance: frame-level length difference accepted (trimmed); larger ones are skipped.
    """
    if ref_level == "auto":
        ref_level = "utt" if all(len(v) == 1 for v in ref.values()) else "frame"
    joint = JointCounts()
    skipped, missing, used = [], 0, 0
    for utt, labels in hyp:
        if utt not in ref:
            missing += 1
            continue
        labels = [t for t in labels for _ in range(hyp_upsample)]
        r = ref[utt]
        if ref_level == "utt":
            r = [r[0]] * len(labels)
        elif abs(len(r) - len(labels)) > tolerance:
            skipped.append((utt, len(labels), len(r)))
            continue
        n = min(len(r), len(labels))
        joint.add(r[:n], labels[:n])
        used += 1
    if skipped:
        logger.warning(
            "skipped %d utterances whose lengths differ by more than %d, first: %s",
            len(skipped),
            tolerance,
            skipped[:3],
        )
    report = quality_from_counts(joint.counts)
    report.update(
        ref_level=ref_level,
        utts=used,
        utts_without_reference=missing,
        utts_length_mismatch=len(skipped),
        hyp_upsample=hyp_upsample,
    )
    if missing:
        logger.warning("%d labelled utterances have no reference", missing)
    return report


def read_ref(path: str | Path) -> dict[str, list[str]]:
    """Reference file ``utt tok1 tok2 ...`` (frame labels) or ``utt word`` (utterance label)."""
    return {utt: fields for _, utt, fields in iter_lines(path)}


def iter_label_file(path: str | Path) -> Iterable[tuple[str, list[str]]]:
    """``(utt, labels)`` from a ``pseudo_labels_km<K>.txt`` / ``text`` file, streaming."""
    for _, utt, fields in iter_lines(path):
        yield utt, fields


def format_report(report: dict, name: str = "") -> str:
    """One human-readable line."""
    purity = "word purity" if report.get("ref_level") == "utt" else "phone purity"
    return (
        f"{name + ': ' if name else ''}{purity} {report['phone_purity']:.3f}, cluster purity "
        f"{report['cluster_purity']:.3f}, PNMI {report['pnmi']:.3f} "
        f"({report['frames']} frames, {report['utts']} utts, "
        f"{report['clusters_used']} clusters used, {report['ref_classes']} reference classes)"
    )


def write_report(report: dict, path: str | Path) -> Path:
    """Write the report as JSON, atomically."""
    with atomic_write(path) as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    return Path(path)
