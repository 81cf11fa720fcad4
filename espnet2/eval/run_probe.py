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
from espnet2.eval.significance import paired_difference
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
            res, classes, yte, test.speakers, test.utts, valid_speakers=vspk,
            test_speakers=sorted(set(test.speakers.tolist())),
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
        utts = np.array(train.utts + test.utts)
        report["tasks"]["speaker"] = _task_report(
            res, classes, spk[is_test], groups[is_test], utts[is_test].tolist(),
            test_content=sorted(set(content[is_test].tolist())),
        )
    return report


def _task_report(results: list[ProbeResult], classes: list[str], targets: np.ndarray,
                 groups: np.ndarray, test_utts: list[str], **meta) -> dict:
    """Results plus the paired differences of the selected probes (each unordered pair once,
    in feature-set order: ``"<a> - <b>"``), with their 95% CI and McNemar p
    (:mod:`espnet2.eval.significance`). ``predictions`` holds the test utterances, their
    targets and each selected probe's predictions (class ids)."""
    selected = {r.name: r for r in results if r.selected}
    names = list(selected)
    paired = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            paired[f"{a} - {b}"] = paired_difference(
                selected[a].test_pred, selected[b].test_pred, targets, groups
            )
    rows = []
    for r in results:
        row = asdict(r)
        del row["test_pred"]
        rows.append(row)
    return {
        "classes": classes,
        **meta,
        "results": rows,
        "paired_differences": paired,
        "predictions": {"utts": list(test_utts), "groups": [str(g) for g in groups],
                        "targets": [int(v) for v in targets],
                        "by_probe": {n: selected[n].test_pred for n in names}},
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
    pairs = [(task, k, v) for task, rep in report["tasks"].items()
             for k, v in rep.get("paired_differences", {}).items()]
    if pairs:
        lines += ["", "Paired differences of the selected probes (points; 95% CI: paired "
                  "bootstrap over test utterances within each group; exact McNemar p):", "",
                  "| task | difference | Δ | 95% CI | McNemar p |", "|---|---|---|---|---|"]
        for task, k, v in pairs:
            lo, hi = v["ci95"]
            lines.append(f"| {task} | {k} | {100 * v['overall']:+.1f} | "
                         f"[{100 * lo:+.1f}, {100 * hi:+.1f}] | {v['mcnemar_p']:.2g} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, output_dir: Path) -> None:
    """``probe.json`` (everything but the predictions), ``probe.md`` (tables) and, per task,
    ``<task>_predictions.tsv``: ``utt group target <selected probe>...`` with class names."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tasks = {t: {k: v for k, v in rep.items() if k != "predictions"}
             for t, rep in report["tasks"].items()}
    with atomic_write(output_dir / "probe.json") as f:
        json.dump({**report, "tasks": tasks}, f, indent=2)
    with atomic_write(output_dir / "probe.md") as f:
        f.write(format_table(report))
    for task, rep in report["tasks"].items():
        pred = rep.get("predictions")
        if not pred:
            continue
        by_probe, cls = pred["by_probe"], rep["classes"]
        with atomic_write(output_dir / f"{task}_predictions.tsv") as f:
            f.write("\t".join(["utt", "group", "target", *by_probe]) + "\n")
            for i, utt in enumerate(pred["utts"]):
                f.write("\t".join([utt, pred["groups"][i], cls[pred["targets"][i]],
                                   *(cls[p[i]] for p in by_probe.values())]) + "\n")
