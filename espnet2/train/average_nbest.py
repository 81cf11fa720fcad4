"""ESPnet's n-best model selection, averaging and epoch-file pruning.

Input is the reporter history ``{epoch: {phase: {key: value}}}``; output files in ``output_dir``:

* ``{phase}.{key}.best.pth`` -> ``{e}epoch.pth`` of the best epoch (symlink);
* ``{phase}.{key}.ave_{n}best.pth``: parameters averaged over the n best epochs (n in
  ``keep_nbest_models``; n = 1 is a symlink), and ``{phase}.{key}.ave.pth`` -> the largest n;
* epoch files outside every criterion's n-best and not the latest are deleted.

Integer tensors (``num_batches_tracked``, codebook counts, step counters) are not averaged:
the value of the most recent of the n epochs is kept.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from espnet2.utils.fileio import atomic_save_torch

logger = logging.getLogger(__name__)

History = Mapping[int, Mapping[str, Mapping[str, float]]]


def ranked_epochs(history: History, phase: str, key: str, mode: str) -> list[int]:
    """Epochs that reported ``phase/key``, best first (ties: the later epoch first)."""
    scored = [(e, h[phase][key]) for e, h in history.items() if key in h.get(phase, {})]
    scored.sort(key=lambda ev: (ev[1] if mode == "min" else -ev[1], -ev[0]))
    return [e for e, _ in scored]


def usable_criteria(history: History, criteria: Sequence[tuple[str, str, str]]) -> list[tuple]:
    """Criteria whose key was reported at least once; logs a note for each skipped one."""
    out = []
    for phase, key, mode in criteria:
        if any(key in h.get(phase, {}) for h in history.values()):
            out.append((phase, key, mode))
        else:
            logger.info("best_model_criterion %s.%s.%s skipped: never reported", phase, key, mode)
    return out


def kept_epochs(history: History, criteria: Sequence[tuple[str, str, str]], keep_n: int,
                latest: int) -> set[int]:
    """Union of every usable criterion's ``keep_n`` best epochs, plus ``latest``."""
    keep = {latest}
    for phase, key, mode in usable_criteria(history, criteria):
        keep.update(ranked_epochs(history, phase, key, mode)[:keep_n])
    return keep


def prune_epoch_files(output_dir: str | os.PathLike, keep: set[int]) -> list[int]:
    """Delete ``{e}epoch.pth`` for e not in ``keep``; returns the deleted epochs."""
    removed = []
    for p in Path(output_dir).glob("*epoch.pth"):
        stem = p.name[: -len("epoch.pth")]
        if stem.isdigit() and int(stem) not in keep:
            p.unlink()
            removed.append(int(stem))
    return sorted(removed)


def _symlink(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)  # atomic: a reader never sees the link missing


def average_state_dicts(paths: Sequence[Path]) -> dict[str, torch.Tensor]:
    """Mean of floating tensors over ``paths`` (last path's value for integer/bool ones).

    Loads one file at a time; sums in float64 so averaging 10 fp32/bf16 models loses nothing.
    """
    avg: dict[str, torch.Tensor] = {}
    last: dict[str, torch.Tensor] = {}
    for path in paths:
        state = torch.load(path, map_location="cpu", weights_only=False)
        for k, v in state.items():
            if torch.is_floating_point(v):
                avg[k] = avg[k] + v.double() if k in avg else v.double()
            last[k] = v
    return {k: (avg[k] / len(paths)).to(v.dtype) if k in avg else v for k, v in last.items()}


def average_nbest_models(output_dir: str | os.PathLike, history: History,
                         criteria: Sequence[tuple[str, str, str]], nbest: Sequence[int],
                         suffix: str = "") -> list[Path]:
    """Write the best/average files described in the module docstring; returns written paths.

    ``suffix`` (e.g. ``"till20epoch"``) goes before ``.pth`` for intermediate averages, which
    are written as files, never links, because their epoch files may be pruned later.
    """
    output_dir = Path(output_dir)
    sfx = f".{suffix}" if suffix else ""
    written = []
    for phase, key, mode in usable_criteria(history, criteria):
        ranked = [e for e in ranked_epochs(history, phase, key, mode)
                  if (output_dir / f"{e}epoch.pth").exists()]
        if not ranked:
            continue
        prefix = output_dir / f"{phase}.{key}"
        if not suffix:
            _symlink(Path(f"{prefix}.best.pth"), f"{ranked[0]}epoch.pth")
            written.append(Path(f"{prefix}.best.pth"))
        for n in sorted({n for n in nbest if n > 0}):
            epochs = sorted(ranked[:n])  # ascending, so "last" = most recent epoch
            out = Path(f"{prefix}.ave_{n}best{sfx}.pth")
            if n == 1 and not suffix:
                _symlink(out, f"{epochs[0]}epoch.pth")
            else:
                atomic_save_torch(average_state_dicts([output_dir / f"{e}epoch.pth"
                                                       for e in epochs]), out)
            logger.info("%s: average of epochs %s (%s.%s %s)", out.name, epochs, phase, key, mode)
            written.append(out)
        if nbest and max(nbest) > 0 and not suffix:
            _symlink(Path(f"{prefix}.ave.pth"), f"{phase}.{key}.ave_{max(nbest)}best.pth")
            written.append(Path(f"{prefix}.ave.pth"))
    return written
