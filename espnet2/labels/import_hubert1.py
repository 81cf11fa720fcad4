"""Import pseudo-labels made by ESPnet's hubert1 recipe (``perform_kmeans.sh``).

hubert1 writes per set a ``pseudo_labels_km<K>.txt`` (``utt l1 l2 ...``, one label per
encoder frame; also copied as ``dump/raw/<set>/text.km.<km_tag>``) and one ``tokens.txt``
(``0 .. K-1`` then a literal ``<sos/eos>\\n<unk>`` line; a token list made by ESPnet's
tokenizer is in frequency order instead). :func:`import_hubert1_labels` checks every set
against its ``wav.scp`` / ``utt2num_samples`` and the encoder geometry
(:func:`~espnet2.labels.validate.validate_labels`), reports all problems at once, and only
then writes ``<dump>/<set>/text`` and a clean copy of the token list (one token per line).
Labels are looked up in the token list, never read with ``int(label)``.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from espnet2.data.errors import DataError, Problem
from espnet2.data.frames import FrameGeometry
from espnet2.data.kaldi import read_token_list
from espnet2.labels.validate import (
    is_special,
    iter_lines,
    read_num_samples,
    validate_labels,
)
from espnet2.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

LABEL_GLOBS = ("pseudo_labels_km*.txt", "text.km.*")


def find_label_files(src: str | Path, sets: list[str]) -> dict[str, Path]:
    """Find each set's hubert1 label file under ``src``.

    Looks for ``pseudo_labels_km*.txt`` or ``text.km.*`` in a folder named like the set
    (``<src>/<set>/...`` or deeper, e.g. ``dump/raw/<set>/text.km.<tag>``).
    """
    src = Path(src)
    found: dict[str, Path] = {}
    problems = []
    for name in sets:
        hits = sorted({p for g in LABEL_GLOBS for p in src.rglob(g) if p.parent.name == name})
        if len(hits) == 1:
            found[name] = hits[0]
        else:
            msg = (
                f"set '{name}': found {len(hits)} label files ({' or '.join(LABEL_GLOBS)} "
                f"in a folder named '{name}')"
            )
            value = ", ".join(map(str, hits)) or None
            hint = "pass the files explicitly: --labels SET=PATH"
            problems.append(Problem(str(src), None, None, value, msg, hint))
    if problems:
        raise DataError(problems)
    return found


def _overlap(ids: set[str], other_dir: Path) -> int:
    try:
        return len(ids & set(read_num_samples(other_dir)[0]))
    except FileNotFoundError:
        return 0


def _wrong_set_hints(label_files: dict[str, Path], set_dirs: dict[str, Path]) -> list[Problem]:
    """Name the set a label file most likely belongs to when it is not its own."""
    problems = []
    for name, path in label_files.items():
        ids = {utt for _, utt, _ in iter_lines(path)}
        scores = {other: _overlap(ids, d) for other, d in set_dirs.items()}
        best = max(scores, key=scores.get, default=name)
        own = scores.get(name, 0)
        if best != name and scores[best] > own:
            msg = (
                f"given for set '{name}' but {scores[best]} of its {len(ids)} utterances "
                f"are in set '{best}' ({own} in '{name}')"
            )
            problems.append(Problem(str(path), None, None, None, msg, "swap the --labels"))
    return problems


def copy_labels(src: Path, dst: Path, token_ids: dict[str, int]) -> Counter:
    """Copy ``utt l1 l2 ...`` lines to ``dst`` atomically; returns label-id frequencies."""
    freq: Counter = Counter()
    with atomic_write(dst) as f:
        for _, utt, labels in iter_lines(src):
            freq.update(token_ids[t] for t in labels)
            f.write(" ".join([utt, *labels]) + "\n")
    return freq


def import_hubert1_labels(
    label_files: dict[str, str | Path],
    token_list: str | Path,
    dump_dir: str | Path,
    token_list_out: str | Path,
    geometry: FrameGeometry | str,
    num_classes: int | None = None,
    tolerance: int = 2,
    set_dirs: dict[str, str | Path] | None = None,
) -> dict[str, dict]:
    """Validate every set, then write ``<dump_dir>/<set>/text`` and ``token_list_out``.

    Args:
        label_files: set name -> hubert1 label file (see :func:`find_label_files`).
        token_list: hubert1's ``tokens.txt`` (any order; the literal ``\\n`` line is split).
        dump_dir: holds ``<set>/wav.scp`` (+ ``utt2num_samples``) unless ``set_dirs`` given.
        token_list_out: where the cleaned token list goes (pass it as ``--token_list``).
        geometry: encoder frame geometry (``wav2vec_cnn``).
        num_classes: HuBERT's K (defaults to the number of non-special tokens).

    Raises:
        DataError: listing every problem of every set; nothing is written then.
    """
    tokens = read_token_list(token_list)
    dirs = {s: Path(d) for s, d in (set_dirs or {}).items()}
    dirs = {s: dirs.get(s, Path(dump_dir) / s) for s in label_files}
    problems: list[Problem] = []
    if num_classes is None:
        num_classes = sum(not is_special(t) for t in tokens)
    for name, path in label_files.items():
        if not Path(path).is_file():
            msg, hint = f"label file for set '{name}' not found", "check --labels / --hubert1_dir"
            problems.append(Problem(str(path), None, None, None, msg, hint))
        elif not dirs[name].is_dir():
            msg, hint = f"data dir for set '{name}' not found", "run the data preparation first"
            problems.append(Problem(str(dirs[name]), None, None, None, msg, hint))
        else:
            problems += validate_labels(
                dirs[name], path, tokens, geometry, num_classes=num_classes, tolerance=tolerance
            )
    if problems:
        existing = {s: Path(p) for s, p in label_files.items() if Path(p).is_file()}
        problems += _wrong_set_hints(existing, {s: d for s, d in dirs.items() if d.is_dir()})
        raise DataError(problems)
    token_ids = {t: i for i, t in enumerate(tokens)}
    with atomic_write(token_list_out) as f:
        f.write("".join(t + "\n" for t in tokens))
    summary = {}
    for name, path in label_files.items():
        freq = copy_labels(Path(path), dirs[name] / "text", token_ids)
        summary[name] = {
            "text": str(dirs[name] / "text"),
            "frames": sum(freq.values()),
            "clusters_used": len(freq),
            "max_id": max(freq, default=-1),
        }
        logger.info("set %s: %s", name, summary[name])
    n_labels = sum(not is_special(t) for t in tokens)
    logger.info("token list %s: %d tokens (%d labels)", token_list_out, len(tokens), n_labels)
    return summary
