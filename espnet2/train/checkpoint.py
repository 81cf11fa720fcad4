"""Checkpoints that survive being killed mid-write and say when they are damaged.

``checkpoint.pth`` holds everything ``--resume`` needs (model incl. buffers such as an EMA
teacher or codebooks, optimizer, scheduler, scaler, counters, RNG states of every rank, reporter
history). Each save first moves the previous one to ``checkpoint.prev.pth``; every file gets a
``<file>.sha256`` sidecar written after it. A file is trusted only when its SHA-256 matches a
sidecar, so a truncated or bit-rotten file (or one whose sidecar was never written because the
process died) is skipped and :func:`load_latest_checkpoint` falls back to the previous one.
The matching is by content, not by name, so every instant of the rotation leaves one
trusted file on disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from pathlib import Path

import numpy as np
import torch

from espnet2.utils.fileio import atomic_save_torch, atomic_write

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pth"
PREVIOUS = "checkpoint.prev.pth"


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _move(src: Path, dst: Path) -> None:
    if src.exists():
        os.replace(src, dst)


def save_checkpoint(path: str | os.PathLike, state: dict, keep_previous: bool = True) -> None:
    """Atomically write ``state`` to ``path`` plus its checksum sidecar.

    With ``keep_previous`` the old ``path`` becomes ``<stem>.prev<suffix>`` first. Order matters:
    the sidecar moves before its file, and the new sidecar is written last (see module doc).
    """
    path = Path(path)
    if keep_previous and path.exists():
        prev = path.with_name(f"{path.stem}.prev{path.suffix}")
        _move(_sidecar(path), _sidecar(prev))
        _move(path, prev)
    atomic_save_torch(state, path)
    digest = _sha256(path)
    with atomic_write(_sidecar(path)) as f:
        f.write(f"{digest}  {path.name}\n")


def verify_checkpoint(path: Path, known: set[str] | None = None) -> bool:
    """True when ``path``'s SHA-256 equals its sidecar's (or any digest in ``known``)."""
    if not path.is_file():
        return False
    if known is None:
        known = _read_digest(_sidecar(path))
    return _sha256(path) in known


def _read_digest(sidecar: Path) -> set[str]:
    try:
        return {sidecar.read_text().split()[0]}
    except (OSError, IndexError):
        return set()


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`, refusing a damaged one."""
    path = Path(path)
    if not verify_checkpoint(path):
        raise RuntimeError(f"{path} does not match its checksum {_sidecar(path).name} (truncated, "
                           "corrupt, or the writer died); use load_latest_checkpoint to fall back")
    return torch.load(path, map_location=map_location, weights_only=False)


def load_latest_checkpoint(output_dir: str | os.PathLike,
                           map_location: str | torch.device = "cpu") -> tuple[dict, Path] | None:
    """Newest complete checkpoint in ``output_dir`` as ``(state, path)``; None if there is none.

    Tries ``checkpoint.pth`` then ``checkpoint.prev.pth``; skipping one logs a warning.
    """
    output_dir = Path(output_dir)
    candidates = [output_dir / CHECKPOINT, output_dir / PREVIOUS]
    known = set().union(*(_read_digest(_sidecar(p)) for p in candidates))
    for path in candidates:
        if not path.exists():
            continue
        if verify_checkpoint(path, known):
            try:
                return torch.load(path, map_location=map_location, weights_only=False), path
            except Exception as e:  # noqa: BLE001 - any unreadable file means "try the previous"
                logger.warning("%s matches its checksum but cannot be loaded (%s)", path, e)
        logger.warning("%s is incomplete or corrupt (checksum mismatch); trying the previous "
                       "checkpoint", path)
    if any(p.exists() for p in candidates):
        raise RuntimeError(f"No complete checkpoint in {output_dir}: {CHECKPOINT} and {PREVIOUS} "
                           "both fail their checksums. Restart without --resume or restore one.")
    return None


def rng_state() -> dict:
    """Python, NumPy, torch CPU and CUDA generator states of this process."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_model_weights(path: str | os.PathLike, model: torch.nn.Module) -> None:
    """``{epoch}epoch.pth``: the model's state dict only (parameters and buffers)."""
    atomic_save_torch(model.state_dict(), path)


def link_latest(output_dir: Path, target: str, name: str = "latest.pth") -> None:
    """Point ``output_dir/name`` at ``target`` (relative symlink; a copy where links fail)."""
    link = output_dir / name
    tmp = output_dir / f".{name}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(target, tmp)
    except OSError:
        import shutil

        shutil.copyfile(output_dir / target, tmp)
    os.replace(tmp, link)
