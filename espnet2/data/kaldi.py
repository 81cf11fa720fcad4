"""Read, write and check Kaldi-style data directory files.

Formats (one record per line, fields separated by whitespace):

* ``wav.scp``: ``utt path`` or ``utt cmd args |`` (a pipe whose stdout is audio)
* ``segments``: ``utt reco start end`` (seconds)
* ``text``: ``utt tok1 tok2 ...`` (an empty transcript is allowed)
* ``utt2spk``: ``utt spk``; ``spk2utt``: ``spk utt1 utt2 ...``
* shape files: ``utt N`` or ``utt N,D`` (ints); ``utt2num_samples``: ``utt N``
* token lists: one token per line, the 0-based line number is the token id

Readers return insertion-ordered plain dicts of str (cheap enough for 1M lines,
see ``bench/bench_index.py``) and raise one :class:`DataError` listing every
malformed or duplicated line. Writers go through :func:`atomic_write`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, TypeVar

from espnet2.data.ark import parse_ark_spec
from espnet2.data.errors import DataError, Problem, raise_if
from espnet2.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

T = TypeVar("T")

_FIX_DIR = "run utils/fix_data_dir.sh on the directory (or regenerate the file)"


class Segment(NamedTuple):
    """One line of a ``segments`` file: the recording id and the span in seconds."""

    reco: str
    start: float
    end: float


def is_pipe(spec: str) -> bool:
    """True when a wav.scp value is a command whose stdout is the audio (``cmd |``)."""
    return spec.rstrip().endswith("|")


# ----------------------------------------------------------------------------- generic


def _read_records(
    path: str | os.PathLike,
    parse: Callable[[str], T] | None,
    *,
    allow_empty_value: bool,
    what: str,
) -> dict[str, T]:
    """Read ``key value`` lines; ``parse(value)`` converts (ValueError(msg) on a bad value)."""
    path = str(path)
    out: dict = {}
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            Problem(path, None, None, None, f"{what} file not found", "check the path")
        ) from None
    with f:
        try:
            for lineno, line in enumerate(f, 1):
                parts = line.split(maxsplit=1)
                if len(parts) == 2:
                    key, value = parts[0], parts[1].rstrip()
                elif len(parts) == 1 and allow_empty_value:
                    key, value = parts[0], ""
                else:
                    msg = "blank line" if not parts else f"line has a key but no {what} value"
                    problems.append(
                        Problem(path, lineno, parts[0] if parts else None, line.rstrip("\n"),
                                msg, f"every line must be 'uttid <{what}>'; {_FIX_DIR}")
                    )
                    continue
                if parse is not None:
                    try:
                        value = parse(value)
                    except ValueError as e:
                        problems.append(Problem(path, lineno, key, line.rstrip("\n"), str(e),
                                                f"every line must be 'uttid <{what}>'"))
                        continue
                if key in out:
                    if key not in first_line:
                        first_line[key] = _find_first_line(path, key)
                    problems.append(
                        Problem(path, lineno, key, line.rstrip("\n"),
                                f"duplicate utterance id (first seen on line {first_line[key]})",
                                "keep one line per utterance id: sort -u, or "
                                "prefix ids with the corpus name when combining corpora")
                    )
                    continue
                out[key] = value
        except UnicodeDecodeError as e:
            problems.append(Problem(path, None, None, None, f"not UTF-8 text: {e}",
                                    "convert the file to UTF-8"))
    raise_if(problems)
    return out


def _find_first_line(path: str, key: str) -> int:
    """Line number of the first record with ``key`` (only used to report duplicates)."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split(maxsplit=1)
            if parts and parts[0] == key:
                return lineno
    return -1


def _check_key(key: str, path: str, problems: list[Problem]) -> None:
    if not key or any(c.isspace() for c in key):
        problems.append(Problem(path, None, key, key, "utterance ids must be non-empty and "
                                "contain no whitespace", "rename the utterance"))


def _write_lines(path: str | os.PathLike, items: Iterable[tuple[str, str]]) -> None:
    path = str(path)
    problems: list[Problem] = []
    lines = []
    for key, value in items:
        _check_key(key, path, problems)
        if "\n" in value:
            problems.append(Problem(path, None, key, value, "value contains a newline",
                                    "remove newlines from the value"))
        lines.append(f"{key} {value}\n" if value else f"{key}\n")
    raise_if(problems)
    with atomic_write(path) as f:
        f.writelines(lines)


# ----------------------------------------------------------------------------- key/value


def read_kv(path: str | os.PathLike, *, allow_empty_value: bool = False) -> dict[str, str]:
    """Read a ``key value`` file (wav.scp, utt2spk, feats_type, ...) in file order.

    Duplicate keys, blank lines and (unless ``allow_empty_value``) lines without a
    value raise one :class:`DataError` naming every offending ``file:line``.
    """
    return _read_records(path, None, allow_empty_value=allow_empty_value, what="value")


def write_kv(path: str | os.PathLike, mapping: Mapping[str, str]) -> None:
    """Atomically write ``key value`` lines in the mapping's order."""
    _write_lines(path, ((k, str(v)) for k, v in mapping.items()))


def read_wav_scp(path: str | os.PathLike) -> dict[str, str]:
    """``utt -> path`` or ``utt -> 'cmd ... |'`` (see :func:`is_pipe`)."""
    return _read_records(path, None, allow_empty_value=False, what="audio path or 'cmd |'")


write_wav_scp = write_kv


def read_utt2spk(path: str | os.PathLike) -> dict[str, str]:
    """``utt -> speaker``."""
    return _read_records(path, _parse_single_word, allow_empty_value=False, what="speaker")


def _parse_single_word(value: str) -> str:
    if len(value.split()) != 1:
        raise ValueError("expected exactly one field after the utterance id")
    return value


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    """Invert utt2spk; speakers in order of first appearance, utts in file order."""
    out: dict[str, list[str]] = {}
    for utt, spk in utt2spk.items():
        out.setdefault(spk, []).append(utt)
    return out


def read_spk2utt(path: str | os.PathLike) -> dict[str, list[str]]:
    """``speaker -> [utt, ...]``."""
    return _read_records(path, str.split, allow_empty_value=False, what="utterance list")


def write_spk2utt(path: str | os.PathLike, spk2utt: Mapping[str, list[str]]) -> None:
    """Atomically write ``spk utt1 utt2 ...`` lines."""
    _write_lines(path, ((s, " ".join(u)) for s, u in spk2utt.items()))


# ----------------------------------------------------------------------------- text


def read_text(path: str | os.PathLike) -> dict[str, list[str]]:
    """``utt -> [token, ...]``; a line with only the utt id is an empty transcript ``[]``."""
    return _read_records(path, str.split, allow_empty_value=True, what="transcript")


def write_text(path: str | os.PathLike, text: Mapping[str, list[str] | str]) -> None:
    """Atomically write ``utt tok1 tok2 ...`` lines (a str value is written as is)."""
    _write_lines(path, ((k, v if isinstance(v, str) else " ".join(map(str, v)))
                        for k, v in text.items()))


# ----------------------------------------------------------------------------- segments


def _parse_segment(value: str) -> Segment:
    fields = value.split()
    if len(fields) != 3:
        raise ValueError(f"expected 'utt reco start end', got {len(fields) + 1} fields")
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        raise ValueError("start and end must be numbers (seconds)") from None
    if not (start >= 0 and end > start) or end == float("inf"):
        raise ValueError(f"need 0 <= start < end, got start={start} end={end}")
    return Segment(fields[0], start, end)


def read_segments(path: str | os.PathLike) -> dict[str, Segment]:
    """``utt -> Segment(reco, start, end)`` with numeric, ordered times checked."""
    return _read_records(path, _parse_segment, allow_empty_value=False, what="reco start end")


def write_segments(path: str | os.PathLike, segments: Mapping[str, Segment]) -> None:
    """Atomically write ``utt reco start end`` lines."""
    _write_lines(path, ((k, f"{s.reco} {s.start:.3f} {s.end:.3f}") for k, s in segments.items()))


# ----------------------------------------------------------------------------- shapes


def _parse_shape(value: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(x) for x in value.split(","))
    except ValueError:
        raise ValueError("shape must be 'N' or 'N,D' with integers") from None
    if any(d < 0 for d in dims):
        raise ValueError("shape dimensions must be >= 0")
    return dims


def _parse_count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ValueError("expected one integer") from None
    if n < 0:
        raise ValueError("count must be >= 0")
    return n


def read_shape(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """``utt -> (N,)`` or ``(N, D)`` from a shape file (``utt N`` / ``utt N,D``)."""
    return _read_records(path, _parse_shape, allow_empty_value=False, what="N or N,D")


def read_lengths(path: str | os.PathLike) -> dict[str, int]:
    """``utt -> N``: the first dimension of a shape file (what the samplers need)."""
    def first(value: str) -> int:
        return _parse_shape(value)[0]

    return _read_records(path, first, allow_empty_value=False, what="N or N,D")


def write_shape(path: str | os.PathLike, shapes: Mapping[str, int | Iterable[int]]) -> None:
    """Atomically write ``utt N`` (int) or ``utt N,D`` (tuple) lines."""
    def fmt(v: int | Iterable[int]) -> str:
        return str(int(v)) if isinstance(v, int) else ",".join(str(int(x)) for x in v)

    _write_lines(path, ((k, fmt(v)) for k, v in shapes.items()))


def read_utt2num_samples(path: str | os.PathLike) -> dict[str, int]:
    """``utt -> number of samples``."""
    return _read_records(path, _parse_count, allow_empty_value=False, what="num_samples")


def write_utt2num_samples(path: str | os.PathLike, counts: Mapping[str, int]) -> None:
    """Atomically write ``utt N`` lines."""
    _write_lines(path, ((k, str(int(v))) for k, v in counts.items()))


# ----------------------------------------------------------------------------- token lists


def read_token_list(path: str | os.PathLike) -> list[str]:
    """Tokens in id order (line ``i`` is id ``i - 1``).

    hubert1 writes its special symbols as one line holding a literal backslash-n
    (``<sos/eos>\\n<unk>``); such a line is split into its tokens. Blank lines,
    tokens with whitespace, duplicates and an empty list raise :class:`DataError`.
    """
    path = str(path)
    tokens: list[str] = []
    seen: dict[str, int] = {}
    problems: list[Problem] = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        raise DataError(Problem(path, None, None, None, "token list not found",
                                "pass --token_list pointing to an existing tokens.txt")) from None
    if lines and lines[-1] == "":
        lines.pop()  # final newline
    for lineno, line in enumerate(lines, 1):
        for tok in line.rstrip("\r").split("\\n"):
            if not tok or any(c.isspace() for c in tok):
                problems.append(Problem(path, lineno, None, line, "empty token or token with "
                                        "whitespace", "one token per line, no blank lines "
                                        "(a blank line shifts every later token id)"))
                continue
            if tok in seen:
                problems.append(Problem(path, lineno, None, tok, f"duplicate token (first on "
                                        f"line {seen[tok]})", "each token must appear once"))
                continue
            seen[tok] = lineno
            tokens.append(tok)
    if not tokens and not problems:
        problems.append(Problem(path, None, None, None, "token list is empty",
                                "generate the token list (stage 5) or pass the right file"))
    raise_if(problems)
    return tokens


def write_token_list(path: str | os.PathLike, tokens: Iterable[str]) -> None:
    """Atomically write one token per line (checked like :func:`read_token_list`)."""
    path = str(path)
    tokens = list(tokens)
    problems: list[Problem] = []
    if len(set(tokens)) != len(tokens):
        problems.append(Problem(path, None, None, None, "duplicate tokens", "deduplicate"))
    for i, tok in enumerate(tokens):
        if not tok or any(c.isspace() for c in tok):
            problems.append(Problem(path, i + 1, None, tok, "empty token or token with "
                                    "whitespace", "remove it"))
    if not tokens:
        problems.append(Problem(path, None, None, None, "token list is empty", "pass tokens"))
    raise_if(problems)
    with atomic_write(path) as f:
        f.writelines(t + "\n" for t in tokens)


# ----------------------------------------------------------------------------- validators


def check_same_utts(files: Mapping[str, Iterable[str]], max_ids: int = 5) -> None:
    """Raise :class:`DataError` if the utterance sets of ``files`` disagree.

    Args:
        files: ``{file name: its utterance ids}``; the first entry is the reference.
        max_ids: how many missing ids to quote on each side.
    """
    items = list(files.items())
    if len(items) < 2:
        return
    ref_name, ref_keys = items[0]
    ref_keys = list(ref_keys)
    ref_set = set(ref_keys)
    problems: list[Problem] = []
    for name, keys in items[1:]:
        keys = list(keys)
        key_set = set(keys)
        if key_set == ref_set:
            continue
        missing = [k for k in ref_keys if k not in key_set]
        extra = [k for k in keys if k not in ref_set]
        msg = (f"utterance ids disagree with {ref_name} ({len(ref_set)} utts) vs {name} "
               f"({len(key_set)} utts): {len(missing)} in {ref_name} but missing from {name}"
               f" (first: {missing[:max_ids]}), {len(extra)} in {name} but not in {ref_name}"
               f" (first: {extra[:max_ids]})")
        first = (missing or extra)[0]
        problems.append(Problem(name, None, first, None, msg,
                                "keep the same utterances in every file: "
                                "utils/fix_data_dir.sh or espnet2.bin.filter_data_dir"))
    raise_if(problems)


def check_audio_files_exist(wav_scp_path: str | os.PathLike) -> int:
    """Raise :class:`DataError` listing every wav.scp path that does not exist.

    Pipes (``cmd |``) and Kaldi ark offsets (``file.ark:123``, checked without the offset)
    are not executed. Returns the number of files checked.
    """
    path = str(wav_scp_path)
    problems: list[Problem] = []
    checked = 0
    for lineno, (utt, spec) in enumerate(read_wav_scp(path).items(), 1):
        if is_pipe(spec):
            continue
        ark = parse_ark_spec(spec)
        target = spec if ark is None else ark[0]
        checked += 1
        if not os.path.exists(target):
            problems.append(Problem(path, lineno, utt, spec, "audio file does not exist",
                                    "fix the path (relative paths are resolved from the "
                                    "recipe directory) or rerun data preparation"))
    raise_if(problems)
    return checked
