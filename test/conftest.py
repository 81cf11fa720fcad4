"""Test-wide settings: one intra-op thread (tiny ops; pytest-xdist or other jobs may share the
CPUs, and threads on a busy CPU spin), restored after every test because in-process
``ssl_train`` runs choose their own."""

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
FSDD = Path(os.environ.get("FSDD_ROOT", REPO.parent / "shared" / "data" / "fsdd"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
    torch.set_num_threads(1)


@pytest.fixture
def fsdd_root() -> Path:
    if not (FSDD / "recordings").is_dir():
        pytest.fail(f"FSDD corpus not found at {FSDD}; set FSDD_ROOT to a copy of it")
    return FSDD
