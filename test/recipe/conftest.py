"""Synthetic Kaldi data dirs for the recipe tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def make_dir(
    root: Path,
    utts: dict[str, tuple[str, int]],
    fs: int = 8000,
    text: bool = True,
    name: str = "data",
) -> Path:
    """Data dir with one sine wav per utterance: ``utts = {utt: (speaker, num_samples)}``."""
    d = root / name
    (root / "wav").mkdir(parents=True, exist_ok=True)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    scp, u2s, txt = [], [], []
    for utt, (spk, n) in sorted(utts.items()):
        path = root / "wav" / f"{utt}.wav"
        sf.write(path, 0.1 * rng.standard_normal(n).astype(np.float32), fs, subtype="PCM_16")
        scp.append(f"{utt} {path}\n")
        u2s.append(f"{utt} {spk}\n")
        txt.append(f"{utt} {utt[-1]}\n")
    (d / "wav.scp").write_text("".join(scp))
    (d / "utt2spk").write_text("".join(u2s))
    if text:
        (d / "text").write_text("".join(txt))
    return d


@pytest.fixture
def small_dir(tmp_path) -> Path:
    """4 utterances, 2 speakers, 8 kHz, lengths 800..3200 samples."""
    utts = {"a_1": ("a", 800), "a_2": ("a", 1600), "b_1": ("b", 2400), "b_2": ("b", 3200)}
    return make_dir(tmp_path, utts)
