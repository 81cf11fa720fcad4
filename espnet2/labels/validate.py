"""Check frame labels against the audio, the token list and the encoder geometry.

:func:`validate_labels` returns every :class:`~espnet2.data.errors.Problem` at once (never
stops at the first): utterances without labels and labels without audio (counts and first
ids), label sequences whose length differs from ``geometry.num_frames(num_samples)`` by more
than ``tolerance`` (with the likely cause), labels missing from the token list, an empty
token list, ``num_classes`` disagreeing with the token list, and a valid token list that
differs from train's. Label strings map to ids through the token list, never ``int(label)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from espnet2.data.audio import audio_info
from espnet2.data.errors import DataError, Problem
from espnet2.data.frames import FrameGeometry
from espnet2.data.kaldi import read_token_list

logger = logging.getLogger(__name__)

#: Named geometries accepted by :func:`parse_geometry`.
GEOMETRIES = {
    "wav2vec_cnn": FrameGeometry(400, 320, 0),  # wav2vec 2.0 / HuBERT CNN at 16 kHz (50 Hz)
    "mfcc": FrameGeometry(400, 160, 0),  # Kaldi 25 ms / 10 ms at 16 kHz (100 Hz)
}
FIRST = 5  # ids quoted from each side of a set mismatch


def parse_geometry(spec: str | FrameGeometry) -> FrameGeometry:
    """``wav2vec_cnn`` | ``mfcc`` | ``rf,stride[,pad]`` (samples) -> FrameGeometry."""
    if isinstance(spec, FrameGeometry):
        return spec
    if spec in GEOMETRIES:
        return GEOMETRIES[spec]
    try:
        return FrameGeometry(*(int(v) for v in spec.split(",")))
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"bad geometry {spec!r}: use one of {sorted(GEOMETRIES)} or "
            "'receptive_field,stride[,pad]' in samples, e.g. 400,320,0"
        ) from e


def is_special(token: str) -> bool:
    """``<sos/eos>``, ``<unk>``, ``<blank>`` ... (not a cluster label)."""
    return token.startswith("<") and token.endswith(">")


def iter_lines(path: str | Path) -> Iterator[tuple[int, str, list[str]]]:
    """``(line_no, utt, fields)`` for each non-empty line of a Kaldi-style file, streaming."""
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            fields = line.split()
            if fields:
                yield no, fields[0], fields[1:]


def read_num_samples(path: str | Path) -> tuple[dict[str, int | None], str]:
    """utt -> number of samples from a set dir, ``utt2num_samples`` or ``wav.scp``.

    A directory uses its ``utt2num_samples`` when present. From a ``wav.scp`` the counts
    come from the audio headers (None where unreadable). Returns the mapping and the file
    it came from.
    """
    path = Path(path)
    if path.is_dir():
        path = (
            path / "utt2num_samples" if (path / "utt2num_samples").is_file() else path / "wav.scp"
        )
    out: dict[str, int | None] = {}
    if path.name.startswith("utt2num_samples"):
        for no, utt, fields in iter_lines(path):
            try:
                out[utt] = int(fields[0])
            except (IndexError, ValueError) as e:
                raise ValueError(f"{path}:{no}: utt '{utt}' needs one integer sample count") from e
        return out, str(path)
    for _, utt, fields in iter_lines(path):
        try:
            out[utt] = audio_info(" ".join(fields), utt=utt)[0]
        except DataError as e:  # unreadable audio is the data checker's business
            logger.warning("no sample count for utt '%s': %s", utt, e)
            out[utt] = None
    return out, str(path)


def set_mismatch(
    audio_ids: Sequence[str], label_ids: Sequence[str], audio_file: str, label_file: str
) -> list[Problem]:
    """Utterances without labels / labels without audio: one problem per side, with counts."""
    problems = []
    label_set, audio_set = set(label_ids), set(audio_ids)
    missing = [u for u in audio_ids if u not in label_set]
    extra = [u for u in label_ids if u not in audio_set]
    if missing:
        problems.append(
            Problem(
                label_file,
                None,
                missing[0],
                ", ".join(missing[:FIRST]),
                f"{len(missing)} of {len(audio_ids)} utterances in {audio_file} have no labels",
                "label every utterance of the set (or filter the set to the labelled ones)",
            )
        )
    if extra:
        common = len(label_ids) - len(extra)
        hint = "remove them or label the right set"
        if common < 0.5 * len(label_ids):
            hint = (
                f"only {common} ids are shared: this label file probably belongs to another "
                f"set (first label ids: {label_ids[:FIRST]}; first audio ids: "
                f"{list(audio_ids[:FIRST])})"
            )
        problems.append(
            Problem(
                label_file,
                None,
                extra[0],
                ", ".join(extra[:FIRST]),
                f"{len(extra)} of {len(label_ids)} labelled utterances are not in {audio_file}",
                hint,
            )
        )
    return problems


def likely_cause(n_labels: int, n_frames: int) -> str:
    """A human guess at why label and frame counts differ."""
    if n_frames == 0:
        return "the audio is shorter than one encoder frame; drop the utterance"
    ratio = n_labels / n_frames
    if abs(ratio - 2) < 0.1:
        return (
            "labels look like 100 Hz (MFCC) frames against 50 Hz encoder frames: re-run "
            "espnet2.bin.make_pseudo_labels with this --geometry, or use label_downsampling 2"
        )
    if abs(ratio - 0.5) < 0.05:
        return "labels look like half the encoder frame rate: check the geometry stride"
    if abs(n_labels - n_frames) <= 10:
        return (
            "a different receptive field / padding: pass the frontend's geometry "
            "(rf,stride,pad) when labelling, or raise the tolerance"
        )
    return (
        f"ratio {ratio:.2f}: labels made for other audio (other sampling rate, speed "
        "perturbation, or another set)"
    )


def validate_labels(
    wav_scp_or_utt2num_samples: str | Path,
    text: str | Path,
    token_list: str | Path | Sequence[str],
    geometry: FrameGeometry | str,
    num_classes: int | None = None,
    tolerance: int = 2,
    train_token_list: str | Path | Sequence[str] | None = None,
    max_per_kind: int | None = 20,
) -> list[Problem]:
    """Every problem of a label file ``text`` (``utt l1 l2 ...``) for one set.

    Args:
        wav_scp_or_utt2num_samples: the set dir, its ``utt2num_samples`` or ``wav.scp``.
        token_list: path or tokens; label ``tok`` has id ``token_list.index(tok)``.
        geometry: the encoder's frame geometry (``wav2vec_cnn`` = (400, 320, 0)).
        num_classes: the loss's K: the non-special tokens must number K (ids < K).
        tolerance: allowed ``|len(labels) - num_frames|`` (the collate trims the excess).
        train_token_list: when checking a non-train set, train's token list (must be equal).
        max_per_kind: per-utterance problems listed per kind (the rest are counted in one).
    """
    geometry = parse_geometry(geometry)
    tok_file = None if isinstance(token_list, (list, tuple)) else str(token_list)
    problems: list[Problem] = []
    try:
        tokens = list(token_list) if tok_file is None else read_token_list(token_list)
    except DataError as e:  # empty list, blank lines, duplicates: report with the rest
        tokens, problems = [], list(e.problems)
    problems += _check_token_list(tokens, tok_file, num_classes, train_token_list)
    text = str(text)
    for path in (text, wav_scp_or_utt2num_samples):
        if not Path(path).exists():
            problems.append(Problem(str(path), None, None, None, "not found", "check the path"))
    if not Path(text).exists() or not Path(wav_scp_or_utt2num_samples).exists():
        return problems
    num_samples, audio_file = read_num_samples(wav_scp_or_utt2num_samples)
    ids = {t: i for i, t in enumerate(tokens)}
    limit = num_classes if num_classes is not None else len(tokens)
    per_kind: dict[str, list[Problem]] = {"length": [], "token": [], "duplicate": []}
    seen: dict[str, int] = {}
    for no, utt, labels in iter_lines(text):
        if utt in seen:
            msg = f"duplicate utterance (first on line {seen[utt]})"
            per_kind["duplicate"].append(Problem(text, no, utt, None, msg, "keep one line"))
            continue
        seen[utt] = no
        bad = sorted({t for t in labels if ids.get(t, limit) >= limit})
        if bad and tokens:
            msg = f"labels not in the token list {tok_file or ''} (or id >= num_classes={limit})"
            hint = "use the token list written with these labels"
            per_kind["token"].append(Problem(text, no, utt, " ".join(bad[:10]), msg, hint))
        n = num_samples.get(utt)
        want = geometry.num_frames(n) if n is not None else None
        if want is not None and abs(len(labels) - want) > tolerance:
            msg = (
                f"{len(labels)} labels but {want} encoder frames for {n} samples with "
                f"{geometry} (tolerance {tolerance})"
            )
            hint = likely_cause(len(labels), want)
            per_kind["length"].append(Problem(text, no, utt, None, msg, hint))
    for kind, found in per_kind.items():
        problems.extend(found[:max_per_kind])
        if max_per_kind is not None and len(found) > max_per_kind:
            msg = (
                f"... and {len(found) - max_per_kind} more utterances with the same {kind} problem"
            )
            problems.append(Problem(text, None, None, None, msg))
    problems.extend(set_mismatch(list(num_samples), list(seen), audio_file, text))
    return problems


def _check_token_list(
    tokens: list[str], tok_file: str | None, num_classes: int | None, train_token_list
) -> list[Problem]:
    problems = []
    if not tokens:
        problems.append(
            Problem(
                tok_file,
                None,
                None,
                None,
                "the token list is empty",
                "pass the tokens.txt written with the labels",
            )
        )
    n_labels = sum(not is_special(t) for t in tokens)
    if num_classes is not None and tokens and n_labels != num_classes:
        problems.append(
            Problem(
                tok_file,
                None,
                None,
                str(n_labels),
                f"the token list has {n_labels} label tokens but num_classes={num_classes}",
                f"set the loss's num_classes to {n_labels} or use the matching token list",
            )
        )
    label_ids = [i for i, t in enumerate(tokens) if not is_special(t)]
    if num_classes is not None and label_ids and label_ids[-1] >= num_classes:
        problems.append(
            Problem(
                tok_file,
                label_ids[-1] + 1,
                None,
                tokens[label_ids[-1]],
                f"label token has id {label_ids[-1]} >= num_classes={num_classes} (special tokens "
                "come before labels in this list)",
                f"set num_classes to {label_ids[-1] + 1} or "
                "write the labels' tokens first (as make_pseudo_labels does)",
            )
        )
    if train_token_list is not None:
        train = (
            list(train_token_list)
            if isinstance(train_token_list, (list, tuple))
            else read_token_list(train_token_list)
        )
        if train != tokens:
            diff = next(
                (i for i, (a, b) in enumerate(zip(train, tokens)) if a != b),
                min(len(train), len(tokens)),
            )
            problems.append(
                Problem(
                    tok_file,
                    diff + 1,
                    None,
                    None,
                    f"differs from train's token list {train_token_list} ({len(tokens)} vs "
                    f"{len(train)} tokens, first difference at line {diff + 1})",
                    "label every set with the train k-means model and one token list",
                )
            )
    return problems
