"""Each benchmark runs end to end in ``--smoke`` mode (tiny dims) and prints its ratio lines.

No timing is asserted: only that every bench runs, prints the ratios it promises, and that
each ratio is a finite positive number.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"
RATIO = re.compile(r"^ratio (\S+).*?: x([0-9.eE+-]+|nan|inf)", re.M)


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_smoke_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ratios(text: str) -> dict[str, float]:
    found = {name: float(value) for name, value in RATIO.findall(text)}
    for name, value in found.items():
        assert math.isfinite(value) and value > 0, f"ratio {name} = {value}"
    return found


def run_smoke(name: str, capsys, *extra: str) -> tuple[str, dict[str, float]]:
    load(name).main(["--smoke", *extra])
    out = capsys.readouterr().out
    assert out.startswith("machine: nproc=")
    return out, ratios(out)


def test_bench_step_smoke(capsys):
    out, found = run_smoke("bench_step", capsys)
    assert {"ours_tdefault1/ours_t1", "naive_t1/ours_t1", "trainer/bare", "tanh_gelu/default",
            "nwc_layout/default", "foreach/plain", "bf16_autocast/fp32"} <= set(found), out
    assert "ratio trainer/bare smoke_model" in out, out
    assert "peak_rss" in found and "error" not in out, out  # memory table from a subprocess


def test_bench_step_writes_results(tmp_path, capsys):
    result = tmp_path / "step.md"
    load("bench_step").main(["--smoke", "--sections", "optimizer", "--output", str(result)])
    text = result.read_text()
    assert "Command: `tools/venv/bin/python bench/bench_step.py --smoke" in text
    assert "nproc=" in text and "torch " in text and "ratio foreach/plain" in text


def test_bench_data_smoke(capsys):
    out, found = run_smoke("bench_data", capsys)
    assert "loader_w1/train_step" in found and "loader_w0/train_step" in found, out
    assert "padding" in found, out


def test_bench_job_smoke(capsys):
    out, found = run_smoke("bench_job", capsys)
    assert "[job] failed" not in out, out
    assert {"startup", "epoch", "job", "peak_rss"} <= set(found), out


def test_bench_rss_drift_smoke(capsys):
    out, found = run_smoke("bench_rss_drift", capsys)
    assert "failed" not in out, out
    assert {"rss_drift"} <= set(found) and out.count("ratio rss_drift") == 3, out


def test_bench_stats_smoke(capsys):
    out, found = run_smoke("bench_stats", capsys)
    assert [k for k in found if k.startswith("all_cpus_t") and k.endswith("/one_thread")], out


def test_bench_gpu_smoke_on_cpu(capsys):
    out, found = run_smoke("bench_gpu", capsys)
    assert re.search(r"hubert_\S+_eager: .* s/step", out) and "dinosr_" in out, out
    assert any(k.startswith("dinosr") for k in found), out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA exit path")
def test_bench_gpu_without_cuda_exits_cleanly(capsys):
    load("bench_gpu").main([])
    assert "no CUDA device" in capsys.readouterr().out


ESPNET_LOG = ("[vm] 2026-11-25 16:31:22,672 (trainer:811) INFO: {e}epoch:train:{b}-{b}batch: "
              "iter_time=0.029forward_time=0.352, hubert_loss_m_1=9.239, loss=9.2")
OURS_LOG = "[INFO] espnet2.train.reporter: {e}epoch:{b}/3 step:{b} loss=4.1 eta=1s"


@pytest.mark.parametrize("fmt,pattern", [(ESPNET_LOG, "espnet"), (OURS_LOG, "ours")])
def test_bench_job_timeline_of_both_log_formats(fmt, pattern):
    """Start-up = first progress line minus one step; epochs end where the next one starts
    and the last at the process's exit; other lines are ignored."""
    job = load("bench_job")
    regex = job.espnet_job.PROGRESS if pattern == "espnet" else job.OURS_PROGRESS
    lines = [(0.5, "importing"), (10.0, fmt.format(e=1, b=1)), (11.0, fmt.format(e=1, b=2)),
             (12.0, fmt.format(e=1, b=3)), (12.5, "1epoch valid: loss=4.0"),
             (15.0, fmt.format(e=2, b=1)), (16.0, fmt.format(e=2, b=2)),
             (17.0, fmt.format(e=2, b=3))]
    tl = job.parse_timeline(lines, regex, wall=20.0)
    assert tl["step_s"] == pytest.approx(1.0) and tl["startup_s"] == pytest.approx(9.0)
    assert tl["epoch_s"] == pytest.approx({1: 5.0, 2: 6.0}) and tl["steps"] == {1: 3, 2: 3}
    assert "error" in job.parse_timeline(lines[:2], regex, wall=20.0)


def test_bench_job_espnet_variants_skip_without_venv(tmp_path):
    """CI has no ESPnet venv: the ESPnet variants are dropped with a printed reason."""
    job = load("bench_job")
    missing = str(tmp_path / "no_venv" / "python")
    names, why = job.pick_variants(job.parse_args(["--espnet_python", missing]))
    assert names == ["ours", "ours_bf16"] and "no such file" in why and missing in why
    names, why = job.pick_variants(job.parse_args(["--espnet_python", "", "--variants",
                                                   "ours,espnet_ootb"]))
    assert names == ["ours"] and "no ESPnet venv" in why
    names, why = job.pick_variants(job.parse_args(["--espnet_python", str(BENCH / "common.py"),
                                                   "--variants", "espnet_t1,ours"]))
    assert names == ["espnet_t1", "ours"] and why is None
    with pytest.raises(SystemExit, match="unknown"):
        job.pick_variants(job.parse_args(["--variants", "ours,espnet"]))
