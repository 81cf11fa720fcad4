"""Checks run before the first training step; every problem is reported at once.

* utterance sets agree between wav.scp, text and the shape files;
* every audio header: the file exists and decodes, is not empty, is mono, has the frontend's
  sampling rate and the sample count of the shape file (:func:`check_audio`);
* every label is in the token list and is a label token (not ``<unk>``/``<sos/eos>``);
* label count vs frames from the frontend's geometry, within ``TOLERANCE`` frames (the error
  names the utterance, both numbers and the likely cause, e.g. 100 Hz labels for a 50 Hz CNN);
* ``num_classes`` of label losses vs the token list;
* ``batch_bins`` >= the longest utterance for length/numel batching;
* conflicting options (a masked loss with ``mask_prob`` 0, a label loss without a text stream);
* the lr schedule fits the run (:func:`check_schedule`: an impossible one is an error, a
  warmup longer than the run a warning).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from espnet2.data.errors import DataError, Problem
from espnet2.data.frames import FrameGeometry
from espnet2.utils.config import ConfigError

logger = logging.getLogger(__name__)

TOLERANCE = 2  # frames; the collate trims/pads within this
MAX_PER_KIND = 10  # label-length problems spelled out per phase (the rest are counted)


class PreflightError(Exception):
    """Every problem found before training (``.problems``)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  {i + 1}. {p}" for i, p in enumerate(problems))
        super().__init__(f"{len(problems)} problem(s) found before training:\n{lines}")


def _likely_cause(labels: int, frames: int, geom: FrameGeometry, fs: int) -> str:
    ratio = labels / max(frames, 1)
    rate = geom.frame_rate(fs)
    for factor in (2, 4, 3):
        if abs(ratio - factor) < 0.1:
            return (f"labels look {factor}x denser than the {rate:g} Hz frames (e.g. "
                    f"{rate * factor:g} Hz MFCC k-means labels): set "
                    f"collate_fn_conf.label_downsampling: {factor} or relabel at {rate:g} Hz")
        if abs(ratio - 1 / factor) < 0.1 / factor:
            return (f"labels are {factor}x sparser than the {rate:g} Hz frames: relabel with "
                    "the same frontend geometry as training")
    return ("labels were made with another frontend geometry or sampling rate, or the audio "
            "changed after labelling (speed perturbation, resampling): regenerate the labels")


def check_label_lengths(speech_lengths: dict[str, int], label_lengths: dict[str, int],
                        geom: FrameGeometry, fs: int, downsampling: int, where: str) -> list[str]:
    """Label count (after ``label[::downsampling]``) vs frames, per utterance."""
    bad = []
    for utt, n in speech_lengths.items():
        if utt not in label_lengths:
            continue
        frames = geom.num_frames(n)
        labels = -(-label_lengths[utt] // downsampling)
        if abs(labels - frames) > TOLERANCE:
            bad.append((utt, n, frames, labels))
    problems = [f"{where}: utt '{u}': {lab} labels but {f} frames for {n} samples "
                f"(frontend geometry rf={geom.receptive_field}, stride={geom.stride} at {fs} Hz; "
                f"tolerance {TOLERANCE}); likely cause: {_likely_cause(lab, f, geom, fs)}"
                for u, n, f, lab in bad[:MAX_PER_KIND]]
    if len(bad) > MAX_PER_KIND:
        problems.append(f"{where}: ... and {len(bad) - MAX_PER_KIND} more utterances with "
                        "label/frame count mismatches")
    return problems


def _data_errors(fn, *a, **kw) -> tuple[object, list[str]]:
    try:
        return fn(*a, **kw), []
    except DataError as e:
        return None, [str(p) for p in e.problems] or [str(e)]
    except (ConfigError, FileNotFoundError) as e:
        return None, [str(e)]


def check_phase(phase: str, streams: dict[str, str], shape_files: list[str],
                tokens: list[str] | None, num_classes: int | None, geom: FrameGeometry,
                fs: int, args, lengths_out: list | None = None) -> list[str]:
    """All data checks of one phase (train or valid); the speech lengths found are appended
    to ``lengths_out`` when given."""
    from espnet2.data.kaldi import check_same_utts, read_kv, read_lengths

    problems: list[str] = []
    wav, p = _data_errors(read_kv, streams["speech"])
    problems += p  # a broken wav.scp does not stop the other files' checks
    sets = {streams["speech"]: wav.keys()} if wav is not None else {}
    text = None
    if "text" in streams:
        text, p = _data_errors(read_kv, streams["text"], allow_empty_value=True)
        problems += p
        if text is not None:
            sets[streams["text"]] = text.keys()
    speech_lengths = None
    for i, sf in enumerate(shape_files):
        lengths, p = _data_errors(read_lengths, sf)
        problems += p
        if lengths is not None:
            sets[sf] = lengths.keys()
            speech_lengths = lengths if i == 0 else speech_lengths
    if wav is not None:
        audio_problems, header_lengths = check_audio(streams["speech"], wav, fs, speech_lengths)
        problems += audio_problems
        speech_lengths = header_lengths if speech_lengths is None else speech_lengths
        problems += _data_errors(check_same_utts, sets)[1]
    if lengths_out is not None and speech_lengths:
        lengths_out.append(speech_lengths)
    if text is not None and tokens is not None:
        problems += _check_labels(streams["text"], text, tokens, num_classes)
    if text is not None and speech_lengths is not None:
        label_lengths = {k: len(v.split()) for k, v in text.items()}
        ds = int(args.collate_fn_conf.get("label_downsampling", 1))
        problems += check_label_lengths(speech_lengths, label_lengths, geom, fs, ds,
                                        f"{phase} {streams['text']}")
    if speech_lengths and args.batch_type in ("length", "numel"):
        bins = args.batch_bins if phase == "train" else (args.valid_batch_bins or args.batch_bins)
        utt = max(speech_lengths, key=speech_lengths.get)
        if speech_lengths[utt] > bins:
            problems.append(f"{phase}: batch_bins={bins} is smaller than the longest utterance "
                            f"'{utt}' ({speech_lengths[utt]} samples): raise batch_bins or "
                            "filter long utterances (ssl.sh --max_wav_duration)")
    return problems


def _probe(item: tuple[int, str, str]) -> tuple[int, str, str, tuple | Problem]:
    from espnet2.data.audio import audio_info

    lineno, utt, spec = item
    try:
        return lineno, utt, spec, audio_info(spec, utt=utt)
    except DataError as e:
        return lineno, utt, spec, e.problems[0] if e.problems else Problem(
            None, None, utt, spec, str(e), "check the audio file")


def _header_problems(frames: int, rate: int, channels: int, fs: int | None,
                     shape: int | None) -> list[tuple[str, str, str]]:
    """(kind, message, hint) for one audio header."""
    bad = []
    if frames == 0:
        bad.append(("empty", "audio is empty (0 samples)", "remove the utterance (stage 4 "
                    "filters short audio: ssl.sh --min_wav_duration)"))
    if fs is not None and rate != fs:
        bad.append(("fs", f"sampling rate is {rate} Hz, the frontend expects {fs} Hz",
                    f"resample in stage 3 (ssl.sh --fs {fs}) or set frontend_conf.fs"))
    if channels != 1:
        bad.append(("channels", f"audio has {channels} channels, expected mono", "downmix in "
                    "stage 3 (format_wav_scp) or pick a channel: 'sox in.wav -t wav - remix 1 |'"))
    if shape is not None and shape != frames:
        bad.append(("shape", f"the shape file says {shape} samples but the audio has {frames}",
                    "the audio changed after --collect_stats: rerun stage 6"))
    return bad


def check_audio(wav_path: str, wav: dict[str, str], fs: int | None,
                shape_lengths: dict[str, int] | None) -> tuple[list[str], dict[str, int]]:
    """Every audio header of ``wav.scp`` (no decoding; ``cmd |`` pipes are not run).

    Finds missing and undecodable files, empty audio, another sampling rate than ``fs``,
    multi-channel audio, and sample counts that disagree with the shape file (the audio changed
    after ``--collect_stats``). NaN/Inf samples need decoding: the loader reports them.

    Returns:
        (problems, ``utt -> samples`` from the headers).
    """
    from concurrent.futures import ThreadPoolExecutor

    from espnet2.data.kaldi import is_pipe

    items = [(i, u, s) for i, (u, s) in enumerate(wav.items(), 1) if not is_pipe(s)]
    by_kind: dict[str, list[Problem]] = {}
    lengths: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:  # header reads release the GIL
        results = list(pool.map(_probe, items, chunksize=64))
    for lineno, utt, spec, got in results:
        if isinstance(got, Problem):
            by_kind.setdefault(got.message.split(":")[0], []).append(
                Problem(wav_path, lineno, utt, spec, got.message, got.hint))
            continue
        frames, rate, channels = got
        lengths[utt] = frames
        expected = None if shape_lengths is None else shape_lengths.get(utt)
        for kind, message, hint in _header_problems(frames, rate, channels, fs, expected):
            by_kind.setdefault(kind, []).append(
                Problem(wav_path, lineno, utt, spec, message, hint))
    problems = []
    for found in by_kind.values():
        problems += [str(p) for p in found[:MAX_PER_KIND]]
        if len(found) > MAX_PER_KIND:
            problems.append(f"{wav_path}: ... and {len(found) - MAX_PER_KIND} more lines with: "
                            f"{found[0].message}")
    return problems, lengths


def _check_labels(path: str, text: dict[str, str], tokens: list[str],
                  num_classes: int | None) -> list[str]:
    t2i = {t: i for i, t in enumerate(tokens)}
    unknown: dict[str, str] = {}
    out_of_range: dict[str, str] = {}
    for utt, line in text.items():
        for tok in line.split():
            i = t2i.get(tok)
            if i is None:
                unknown.setdefault(tok, utt)
            elif num_classes is not None and i >= num_classes:
                out_of_range.setdefault(tok, utt)
    problems = []
    if unknown:
        shown = ", ".join(f"'{t}' (utt '{u}')" for t, u in list(unknown.items())[:5])
        problems.append(f"{path}: {len(unknown)} label token(s) not in the token list "
                        f"({len(tokens)} tokens), e.g. {shown}: use the token list the labels "
                        "were made with")
    if out_of_range:
        shown = ", ".join(f"'{t}' (id {t2i[t]}, utt '{u}')"
                          for t, u in list(out_of_range.items())[:5])
        problems.append(f"{path}: label token(s) with id >= num_classes={num_classes}: {shown}; "
                        "labels must be cluster ids, not special tokens")
    return problems


def check_options(args, loss_entries: list[dict], needs_labels: bool, utils: list[dict],
                  mask_needed: bool) -> list[str]:
    """Option conflicts that would silently train the wrong thing."""
    problems = []
    mask = next((u for u in utils if u["name"] == "mask"), None)
    if mask_needed and mask is not None and float(mask["conf"].get("mask_prob", 0.8)) <= 0:
        names = [e["name"] for e in loss_entries]
        problems.append(f"util mask has mask_prob={mask['conf']['mask_prob']} but loss {names} "
                        "learns from masked frames: there would be nothing to predict; "
                        "use mask_prob > 0 (Base: 0.8)")
    names = {name for _, name, _ in args.train_data_path_and_name_and_type}
    if needs_labels and "text" not in names:
        problems.append("a label loss (hubert) is configured but the training data has no text "
                        "stream: add --train_data_path_and_name_and_type <dir>/text,text,text")
    if not needs_labels and "text" in names:
        logger.warning("a text stream is given but no loss uses labels; it is ignored")
    if not args.train_data_path_and_name_and_type:
        problems.append("no training data: pass --train_data_path_and_name_and_type "
                        "<dir>/wav.scp,speech,sound")
    if args.ngpu > 0 and args.batch_type not in ("length", "numel") and args.batch_size < 1:
        problems.append(f"batch_size={args.batch_size} must be >= 1")
    return problems


def check_schedule(args, train_lengths: list[dict[str, int]]) -> list[str]:
    """The lr schedule against the run's length (updates = max_epoch x batches per epoch /
    accum_grad, or max_steps), with batches counted from the shape files as training will."""
    from espnet2.data.samplers import build_batches
    from espnet2.train.schedulers import check_schedule as check
    from espnet2.train.schedulers import schedule_horizon

    if args.num_iters_per_epoch:
        per_epoch, how = int(args.num_iters_per_epoch), "num_iters_per_epoch"
    else:
        # ranks: torchrun/srun set WORLD_SIZE before main(); else one process per GPU
        world = int(os.environ.get("WORLD_SIZE") or 0) or \
            max(1, int(args.ngpu or 0)) * max(1, int(getattr(args, "num_nodes", 1) or 1))
        try:
            per_epoch = sum(len(build_batches(args.batch_type, lengths, batch_size=args.batch_size,
                                              batch_bins=args.batch_bins, min_batch_size=world))
                            for lengths in train_lengths)
        except DataError as e:  # e.g. batch_bins below one utterance per rank
            return [f"train batches for {world} rank(s): {e}"]
        how = f"{per_epoch} batches per epoch"
    horizon = schedule_horizon(args.max_steps, args.max_epoch, per_epoch, args.accum_grad)
    how = (f"max_epoch {args.max_epoch} x {how} / accum_grad {args.accum_grad}"
           + (f", capped by max_steps {args.max_steps}" if args.max_steps else ""))
    error, warning = check(args.scheduler, args.scheduler_conf, horizon, how)
    if warning:
        logger.warning("%s", warning)
    return [error] if error else []


def split_paths(path: str, multiple_iterator: bool) -> list[str]:
    """The files behind a data/shape path: itself, or its shards under ``--multiple_iterator``.

    Two layouts: ESPnet's ``<path>/split.{i}`` + ``<path>/num_splits`` (``path`` is a dir), and
    ``espnet2.bin.split_scps``'s ``<dir>/split.{i}/<name>`` + ``<dir>/num_splits`` for
    ``path = <dir>/<name>``.
    """
    if not multiple_iterator:
        return [path]
    d = Path(path)
    if (d / "num_splits").is_file():
        n = int((d / "num_splits").read_text().split()[0])
        return [str(d / f"split.{i}") for i in range(n)]
    if (d.parent / "num_splits").is_file():
        n = int((d.parent / "num_splits").read_text().split()[0])
        return [str(d.parent / f"split.{i}" / d.name) for i in range(n)]
    raise ConfigError(f"multiple_iterator: {path} is not in a split dir (no num_splits next to "
                      "it); make one with python -m espnet2.bin.split_scps")


def run(args: argparse.Namespace, geom: FrameGeometry, fs: int, tokens: list[str] | None,
        num_classes: int | None, loss_entries: list[dict], needs_labels: bool,
        utils: list[dict], mask_needed: bool, problems: list[str] | None = None) -> None:
    """All checks; raises :class:`PreflightError` listing every problem (plus ``problems``
    the caller already found, e.g. num_classes vs the token list)."""
    from espnet2.train.collect_stats import data_streams

    problems = list(problems or [])
    train_lengths: list[dict[str, int]] = []  # per split, filled by check_phase
    problems += check_options(args, loss_entries, needs_labels, utils, mask_needed)
    for phase in ("train", "valid"):
        triples = getattr(args, f"{phase}_data_path_and_name_and_type")
        if not triples:
            continue
        try:
            streams = data_streams(triples, phase)
            per_split = {n: split_paths(p, args.multiple_iterator and phase == "train")
                         for n, p in streams.items()}
            shapes = [split_paths(s, args.multiple_iterator and phase == "train")
                      for s in getattr(args, f"{phase}_shape_file")]
        except (DataError, ConfigError) as e:
            problems.append(str(e))
            continue
        n = len(per_split["speech"])
        if any(len(v) != n for v in [*per_split.values(), *shapes]):
            problems.append(f"{phase}: split dirs have different num_splits; split every stream "
                            "together with one split_scps call")
            continue
        for i in range(n):
            s = {k: v[i] for k, v in per_split.items()}
            problems += check_phase(phase, s, [sh[i] for sh in shapes],
                                    tokens if needs_labels else None, num_classes, geom, fs, args,
                                    train_lengths if phase == "train" else None)
    if not problems and (train_lengths or args.num_iters_per_epoch):
        problems += check_schedule(args, train_lengths)
    if problems:
        raise PreflightError(problems)
    logger.info("preflight: data and options look consistent")
