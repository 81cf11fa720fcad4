"""Kaldi-style data directories: copy, fix, combine, split, subset (``utils/*_data_dir.sh``).

A data dir holds ``wav.scp`` (recording -> path or ``cmd |``), ``utt2spk`` and optionally
``segments`` (utt -> recording start end), ``text``, ``utt2num_samples``, ``utt2dur`` and any
other ``utt2*`` file; ``spk2utt`` is always derived from ``utt2spk``. Every function writes its
files atomically and keeps lines sorted by key (Kaldi's ``sort`` with ``LC_ALL=C``).
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

from espnet2.data.errors import DataError, Problem
from espnet2.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

#: Files keyed by utterance id (besides ``utt2*``): filtered and renamed with the utterances.
UTT_FILES = ("text", "segments", "utt2spk")
#: Files copied verbatim (not keyed by utterance).
PLAIN_FILES = ("feats_type",)
RECO_FILES = ("wav.scp", "reco2file_and_channel", "reco2dur")


def read_kv(path: str | Path) -> dict[str, str]:
    """``key rest-of-line`` per line -> dict (rest may be empty); duplicate keys are an error."""
    out: dict[str, str] = {}
    problems = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            key, _, value = line.strip().partition(" ")
            if key in out:
                problems.append(
                    Problem(str(path), lineno, key, line, "duplicate key", "keep one line per key")
                )
            out[key] = value.strip()
    if problems:
        raise DataError(problems)
    return out


def write_kv(path: str | Path, data: dict[str, str]) -> None:
    """Write ``key value`` lines sorted by key (byte order), atomically."""
    with atomic_write(path) as f:
        for key in sorted(data):
            value = data[key]
            f.write(f"{key} {value}\n" if value != "" else f"{key}\n")


def utt_files(d: Path) -> list[str]:
    """Names of the utterance-keyed files present in data dir ``d``."""
    names = [n for n in UTT_FILES if (d / n).is_file()]
    names += sorted(p.name for p in d.glob("utt2*") if p.is_file() and p.name not in names)
    return names


def spk2utt(utt2spk: dict[str, str]) -> dict[str, str]:
    """Invert ``utt2spk`` (utterances in sorted order per speaker)."""
    out: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in out.items()}


def _utt_keys(d: Path) -> list[str]:
    if (d / "segments").is_file():
        return sorted(read_kv(d / "segments"))
    return sorted(read_kv(d / "wav.scp"))


def write_dir(
    dst: Path, files: dict[str, dict[str, str]], plain: dict[str, str] | None = None
) -> None:
    """Write a data dir from {file name: {key: value}}; derives ``spk2utt``."""
    dst.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        write_kv(dst / name, data)
    if "utt2spk" in files:
        write_kv(dst / "spk2utt", spk2utt(files["utt2spk"]))
    for name, text in (plain or {}).items():
        with atomic_write(dst / name) as f:
            f.write(text)


def load_dir(d: str | Path) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """({file: {key: value}} for keyed files, {file: text} for plain files) of data dir ``d``."""
    d = Path(d)
    if not (d / "wav.scp").is_file():
        raise DataError(
            Problem(
                str(d / "wav.scp"),
                None,
                None,
                None,
                "missing",
                "a data dir needs wav.scp (run stage 1 / local/data.sh)",
            )
        )
    files = {n: read_kv(d / n) for n in (*RECO_FILES, *utt_files(d)) if (d / n).is_file()}
    plain = {n: (d / n).read_text(encoding="utf-8") for n in PLAIN_FILES if (d / n).is_file()}
    return files, plain


def select(files: dict[str, dict[str, str]], keep: set[str]) -> dict[str, dict[str, str]]:
    """Keep utterances ``keep`` in every utterance file and the recordings they use."""
    out = {}
    for name, data in files.items():
        if name not in RECO_FILES:
            out[name] = {k: v for k, v in data.items() if k in keep}
    if "segments" in files:
        recos = {v.split()[0] for k, v in files["segments"].items() if k in keep}
    else:
        recos = keep
    for name in RECO_FILES:
        if name in files:
            out[name] = {k: v for k, v in files[name].items() if k in recos}
    return out


def fix_data_dir(d: str | Path) -> int:
    """Keep utterances present in every file (and with a recording), sort, rebuild ``spk2utt``.

    Returns the number of utterances kept; logs how many were dropped from which file.
    """
    d = Path(d)
    files, plain = load_dir(d)
    keys = set(files["segments"]) if "segments" in files else set(files["wav.scp"])
    if "segments" in files:
        keys = {k for k in keys if files["segments"][k].split()[0] in files["wav.scp"]}
    total = len(keys)
    for name, data in files.items():
        if name not in RECO_FILES:
            before = len(keys)
            keys &= set(data)
            if len(keys) < before:
                logger.info("%s: %d utterances missing from %s", d, before - len(keys), name)
    if "text" in files:
        keys = {k for k in keys if files["text"][k] != ""}  # a text line with no tokens
    logger.info("%s: kept %d of %d utterances", d, len(keys), total)
    write_dir(d, select(files, keys), plain)
    return len(keys)


def copy_data_dir(
    src: str | Path,
    dst: str | Path,
    utt_prefix: str = "",
    spk_prefix: str = "",
    drop: tuple[str, ...] = (),
) -> None:
    """Copy ``src`` to ``dst``, prefixing utterance (and recording) ids and speaker ids.

    ``drop``: file names not to copy (e.g. ``("segments", "wav.scp")`` before formatting).
    """
    files, plain = load_dir(src)
    has_seg = "segments" in files
    out: dict[str, dict[str, str]] = {}
    for name, data in files.items():
        if name in drop:
            continue
        if name in RECO_FILES and has_seg:
            out[name] = {utt_prefix + k: v for k, v in data.items()}  # recordings renamed too
        elif name == "segments":
            out[name] = {utt_prefix + k: utt_prefix + v for k, v in data.items()}
        elif name == "utt2spk":
            out[name] = {utt_prefix + k: spk_prefix + v for k, v in data.items()}
        else:
            out[name] = {utt_prefix + k: v for k, v in data.items()}
    write_dir(Path(dst), out, plain)


def combine_data_dirs(dst: str | Path, srcs: list[str | Path]) -> int:
    """Concatenate data dirs; a file is kept only if every source has it. Duplicate ids: error."""
    loaded = [load_dir(s) for s in srcs]
    names = set.intersection(*(set(f) for f, _ in loaded))
    out: dict[str, dict[str, str]] = {n: {} for n in names}
    problems = []
    for src, (files, _) in zip(srcs, loaded):
        for name in names:
            for k, v in files[name].items():
                if k in out[name] and out[name][k] != v:
                    problems.append(
                        Problem(
                            str(Path(src) / name),
                            None,
                            k,
                            v,
                            "id already used by an earlier source dir",
                            "prefix the ids (e.g. copy with --utt_prefix)",
                        )
                    )
                out[name][k] = v
    if problems:
        raise DataError(problems)
    write_dir(Path(dst), out, loaded[0][1])
    return len(out.get("utt2spk", out["wav.scp"]))


def split_data_dir(src: str | Path, num_splits: int) -> list[Path]:
    """Split into ``src/split{N}/{1..N}`` of contiguous, near-equal utterance ranges."""
    src = Path(src)
    files, plain = load_dir(src)
    keys = _utt_keys(src)
    if not 1 <= num_splits <= len(keys):
        raise ValueError(
            f"{src}: cannot split {len(keys)} utterances into {num_splits} parts; "
            f"use 1 <= num_splits <= {len(keys)}"
        )
    outs = []
    for i in range(num_splits):
        part = keys[i * len(keys) // num_splits : (i + 1) * len(keys) // num_splits]
        out = src / f"split{num_splits}" / str(i + 1)
        write_dir(out, select(files, set(part)), plain)
        outs.append(out)
    return outs


def subset_data_dir(
    src: str | Path,
    dst: str | Path,
    num: int | None = None,
    utt_list: str | Path | None = None,
    spk_list: str | Path | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> int:
    """Subset by the first (or, with ``shuffle``, random) ``num`` utterances, an utterance list
    file, or a speaker list file (one id per line). Returns the number kept."""
    src = Path(src)
    files, plain = load_dir(src)
    keys = _utt_keys(src)
    if utt_list is not None:
        wanted = set(Path(utt_list).read_text(encoding="utf-8").split())
        keys = [k for k in keys if k in wanted]
    if spk_list is not None:
        spks = set(Path(spk_list).read_text(encoding="utf-8").split())
        u2s = files.get("utt2spk", {})
        keys = [k for k in keys if u2s.get(k) in spks]
    if num is not None:
        if shuffle:
            keys = sorted(random.Random(seed).sample(keys, min(num, len(keys))))
        keys = keys[:num]
    write_dir(Path(dst), select(files, set(keys)), plain)
    return len(keys)


def replace_dir(tmp: Path, dst: Path) -> None:
    """Move a finished directory into place (replacing an older one)."""
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)
