"""Checkpoints: atomic rotation, checksum detection, fallback, RNG round trip."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import pytest
import torch

from espnet2.train.checkpoint import (
    CHECKPOINT,
    PREVIOUS,
    link_latest,
    load_checkpoint,
    load_latest_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _save(tmp_path, value):
    save_checkpoint(tmp_path / CHECKPOINT, {"w": torch.full((64,), float(value)), "v": value})


def test_roundtrip_and_rotation(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    assert load_checkpoint(tmp_path / CHECKPOINT)["v"] == 2
    assert load_checkpoint(tmp_path / PREVIOUS)["v"] == 1
    state, path = load_latest_checkpoint(tmp_path)
    assert state["v"] == 2 and path.name == CHECKPOINT


def test_truncated_checkpoint_falls_back_with_warning(tmp_path, caplog):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    data = (tmp_path / CHECKPOINT).read_bytes()
    (tmp_path / CHECKPOINT).write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match="checksum"):
        load_checkpoint(tmp_path / CHECKPOINT)
    caplog.set_level(logging.WARNING)
    state, path = load_latest_checkpoint(tmp_path)
    assert state["v"] == 1 and path.name == PREVIOUS
    assert "corrupt" in caplog.text


def test_flipped_byte_is_detected(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    data = bytearray((tmp_path / CHECKPOINT).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / CHECKPOINT).write_bytes(bytes(data))
    assert load_latest_checkpoint(tmp_path)[0]["v"] == 1


@pytest.mark.parametrize("crash_after", [1, 2, 3])
def test_every_instant_of_the_rotation_leaves_a_trusted_file(tmp_path, crash_after):
    """Replay save_checkpoint's steps and stop after each: a complete checkpoint remains."""
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    ck, prev = tmp_path / CHECKPOINT, tmp_path / PREVIOUS
    steps = [lambda: os.replace(f"{ck}.sha256", f"{prev}.sha256"),
             lambda: os.replace(ck, prev),
             lambda: torch.save({"v": 3}, ck)]  # new file written, its sidecar not yet
    for step in steps[:crash_after]:
        step()
    assert load_latest_checkpoint(tmp_path)[0]["v"] == 2


def test_missing_and_all_corrupt(tmp_path):
    assert load_latest_checkpoint(tmp_path) is None
    _save(tmp_path, 1)
    (tmp_path / CHECKPOINT).write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="No complete checkpoint"):
        load_latest_checkpoint(tmp_path)


def test_rng_state_roundtrip():
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_link_latest_points_at_newest(tmp_path):
    for e in (1, 2):
        torch.save({"e": e}, tmp_path / f"{e}epoch.pth")
        link_latest(tmp_path, f"{e}epoch.pth")
    assert torch.load(tmp_path / "latest.pth")["e"] == 2
    assert os.readlink(tmp_path / "latest.pth") == "2epoch.pth"
