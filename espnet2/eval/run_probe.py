"""Probe experiments: pre-trained vs random-init encoder vs MFCC baselines, same splits.

Digit task: probe-train on the pre-training speakers (the layer is picked by leave-one-speaker-
out cross-validation over them, or on one named validation speaker), then the chosen probe is
refitted on all of them and tested on speakers never seen in pre-training or probe training.
Speaker task: content-disjoint: the classes of the content label (the digit) are split so the
test utterances say words the probe never saw in training.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from espnet2.eval.probe import ProbeConfig, ProbeResult, select_and_evaluate
from espnet2.utils.fileio import atomic_write

logger = logging.getLogger(__name__)


@dataclass
class ProbeSet:
    """Utterances of a data dir with their class labels and speakers."""

    utts: list[str]
    waves: list[np.ndarray]
    labels: np.ndarray  # (N,) str: the content label (e.g. the digit)
    speakers: np.ndarray  # (N,) str


def load_probe_set(data_dir: Path, label_file: Path, fs: int) -> ProbeSet:
    """Read ``wav.scp`` + ``utt2spk`` of ``data_dir`` and ``label_file`` (``utt label``).

    Probe sets are small (FSDD: 3,000 clips, ~80 MB at 16 kHz), so the waveforms are held in
    memory and every feature set reads them once; for large sets use ``ssl_extract`` instead.
    """
    from espnet2.data.audio import read_audio
    from espnet2.data.kaldi import read_kv

    wav = read_kv(Path(data_dir) / "wav.scp")
    spk = read_kv(Path(data_dir) / "utt2spk")
    lab = read_kv(label_file)
    missing = [u for u in wav if u not in lab or u not in spk]
    if missing:
        raise ValueError(
            f"{len(missing)} utterances of {data_dir}/wav.scp have no label in {label_file} or no "
            f"speaker in utt2spk (first: {missing[:3]}); pass the matching label file"
        )
    utts = list(wav)
    waves = [read_audio(wav[u], expected_fs=fs, utt=u)[0] for u in utts]
    return ProbeSet(utts, waves, np.array([lab[u] for u in utts]), np.array([spk[u] for u in utts]))


def _encode(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    classes = sorted(set(values.tolist()))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in values.tolist()], dtype=np.int64), classes


def digit_split(train: ProbeSet, valid_speaker: str | None = None):
    """Validation folds over the probe-train speakers.

    ``valid_speaker`` None: leave-one-speaker-out (fold id = speaker index; a selection
    averaged over every speaker, far less noisy than one speaker). A name: that speaker is the
    only validation fold. Returns ``(folds, description)``.
    """
    speakers = sorted(set(train.speakers.tolist()))
    if len(speakers) < 2:
        raise ValueError(f"the digit probe needs >= 2 probe-train speakers, got {speakers}")
    if valid_speaker is None:
        index = {s: i for i, s in enumerate(speakers)}
        return np.array([index[s] for s in train.speakers.tolist()]), speakers
    if valid_speaker not in speakers:
        raise ValueError(f"--valid_speaker {valid_speaker!r} is not one of {speakers}")
    return train.speakers == valid_speaker, [valid_speaker]


def content_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Speaker task: the last 20% of content classes (>= 1) are test, the 20% before valid."""
    classes = sorted(set(labels.tolist()))
    k = max(1, len(classes) // 5)
    if len(classes) < 3:
        raise ValueError(f"content-disjoint split needs >= 3 content classes, got {classes}")
    test_cls, valid_cls = set(classes[-k:]), set(classes[-2 * k : -k])
    is_test = np.array([c in test_cls for c in labels.tolist()])
    is_valid = np.array([c in valid_cls for c in labels.tolist()])
    return is_valid, is_test


FeatureFn = Callable[[list[np.ndarray]], np.ndarray]  # waves -> (N, L, D)


def run_probe_suite(
    train: ProbeSet,
    test: ProbeSet,
    features: dict[str, FeatureFn],
    cfg: ProbeConfig,
    valid_speaker: str | None = None,
    tasks: tuple[str, ...] = ("digit", "speaker"),
) -> dict:
    """Run every task on every feature set with the same splits and classifier."""
    report: dict = {"tasks": {}}
    feats = {name: (fn(train.waves), fn(test.waves)) for name, fn in features.items()}
    if "digit" in tasks:
        folds, vspk = digit_split(train, valid_speaker)
        y, classes = _encode(np.concatenate([train.labels, test.labels]))
        ytr, yte = y[: len(train.utts)], y[len(train.utts) :]
        res = []
        for name, (ftr, fte) in feats.items():
            res += select_and_evaluate(
                name, (ftr, ytr, folds), (fte, yte, test.speakers), len(classes), cfg
            )
        report["tasks"]["digit"] = _task_report(
            res, classes, valid_speakers=vspk, test_speakers=sorted(set(test.speakers.tolist()))
        )
    if "speaker" in tasks:
        content = np.concatenate([train.labels, test.labels])
        spk, classes = _encode(np.concatenate([train.speakers, test.speakers]))
        is_valid, is_test = content_split(content)
        groups = np.concatenate([train.speakers, test.speakers])
        res = []
        for name, (ftr, fte) in feats.items():
            x = np.concatenate([ftr, fte])
            res += select_and_evaluate(
                name,
                (x[~is_test], spk[~is_test], is_valid[~is_test]),
                (x[is_test], spk[is_test], groups[is_test]),
                len(classes),
                cfg,
            )
        report["tasks"]["speaker"] = _task_report(
            res, classes, test_content=sorted(set(content[is_test].tolist()))
        )
    return report


def _task_report(results: list[ProbeResult], classes: list[str], **meta) -> dict:
    selected = {r.name: r for r in results if r.selected}
    paired = {}
    names = list(selected)
    for a in names:
        for b in names:
            if a == b:
                continue
            ga, gb = selected[a].per_group_acc, selected[b].per_group_acc
            paired[f"{a} - {b}"] = {g: ga[g] - gb[g] for g in ga if g in gb}
    return {
        "classes": classes,
        **meta,
        "results": [asdict(r) for r in results],
        "paired_differences": paired,
    }


def format_table(report: dict) -> str:
    """Markdown table: one row per (task, feature set, layer choice)."""
    lines = [
        "| task | features | layer | valid acc | test acc | per held-out group | selected |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, rep in report["tasks"].items():
        for r in rep["results"]:
            groups = ", ".join(f"{g}: {a:.3f}" for g, a in r["per_group_acc"].items())
            lines.append(
                f"| {task} | {r['name']} | {r['layer']} | {r['valid_acc']:.3f} | "
                f"{r['test_acc']:.3f} | {groups} | {'*' if r['selected'] else ''} |"
            )
    return "\n".join(lines) + "\n"


def write_report(report: dict, output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(output_dir / "probe.json") as f:
        json.dump(report, f, indent=2)
    with atomic_write(output_dir / "probe.md") as f:
        f.write(format_table(report))
