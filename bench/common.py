"""Shared helpers of the benchmarks: machine description, timing, peak RSS, result files.

Every benchmark prints *ratios* against a baseline measured in the same invocation (and,
for speed, interleaved in the same process) so that the noise of a shared machine cancels.
Peak memory is measured per variant in its own subprocess, which reports its own peak
resident set size (``VmHWM``, see :func:`peak_rss_mb`) when it ends.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "BENCH_RESULT "


def ensure_repo_on_path() -> None:
    """Make ``import espnet2`` and ``import bench.common`` work when run as a script."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, str]:
    """nproc, CPU model, torch version, Python, platform, load average (noise indicator)."""
    import torch

    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return {
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                     else os.cpu_count()),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1_5_15": load,
    }


def machine_line() -> str:
    m = machine_info()
    return (f"machine: nproc={m['nproc']}, CPU {m['cpu']}, torch {m['torch']}, "
            f"Python {m['python']}, load average {m['loadavg_1_5_15']}")


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc/self/statm``)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB.

    Linux ``VmHWM`` (``/proc/self/status``): the high-water mark of this address space.
    Not ``ru_maxrss``: a child started with vfork+exec (what ``subprocess`` does) inherits
    its parent's ``ru_maxrss`` across exec, so a small worker of a big parent would report
    the parent's peak. ``ru_maxrss`` is the fallback off Linux.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def interleave(variants: dict[str, Callable[[], object]], rounds: int, per_round: int,
               warmup: int = 1) -> dict[str, list[float]]:
    """Time each variant's ``fn()`` ``rounds * per_round`` times, round-robin.

    Round-robin (A B C A B C ...) spreads slow phases of a shared machine over all variants
    so their ratio stays meaningful. ``warmup`` untimed calls per variant come first.
    Returns per-call seconds per variant.
    """
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            for _ in range(per_round):
                times[name].append(timed(fn))
    return times


def ratio_lines(times: dict[str, float], baseline: str, unit: str = "s/step") -> list[str]:
    """``ratio <name>/<baseline>: x1.234 (0.512 s/step vs 0.415 s/step)`` per variant."""
    base = times[baseline]
    out = []
    for name, t in times.items():
        if name == baseline:
            continue
        out.append(f"ratio {name}/{baseline}: x{t / base:.3f} ({t:.4f} {unit} vs "
                   f"{base:.4f} {unit})")
    return out


def run_worker(argv: Sequence[str], timeout: float | None = None,
               env: dict[str, str] | None = None, cwd: str | Path | None = None) -> dict:
    """Run ``argv`` (a Python worker) and return its JSON result plus its own peak RSS.

    The worker prints one line ``BENCH_RESULT {json}`` (with its own ``peak_rss_mb``, see
    :func:`worker_result`); the parent adds ``wall_s`` and ``rc``. A failure or timeout
    yields ``{"error": ...}`` instead of raising, so one bad variant does not end the bench.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=str(cwd or REPO))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return {"error": f"timed out after {timeout} s", "wall_s": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    result: dict = {"rc": proc.returncode, "wall_s": wall}
    for line in out.splitlines():
        if line.startswith(RESULT_PREFIX):
            result.update(json.loads(line[len(RESULT_PREFIX):]))
    if proc.returncode != 0 or "peak_rss_mb" not in result:
        tail = (err or out).strip().splitlines()[-5:]
        result["error"] = f"worker exited {proc.returncode}: " + " | ".join(tail)
    return result


def worker_result(**values) -> None:
    """Print the worker's result line, adding its own peak RSS (``ru_maxrss``) in MiB."""
    values.setdefault("peak_rss_mb", peak_rss_mb())
    print(RESULT_PREFIX + json.dumps(values), flush=True)


def python_cmd(script: str | Path, *args: str, python: str | None = None) -> list[str]:
    return [python or sys.executable, str(script), *args]


def write_results(path: str | Path, title: str, command: str, body: Sequence[str],
                  notes: Sequence[str] = ()) -> None:
    """Write ``bench/results/<name>.md``: title, exact command, machine, output, notes."""
    ensure_repo_on_path()
    from espnet2.utils.fileio import atomic_write

    m = machine_info()
    lines = [f"# {title}", "", f"Command: `{command}`", "",
             f"Machine: nproc={m['nproc']}, CPU {m['cpu']}, torch {m['torch']}, "
             f"Python {m['python']} ({m['platform']}), load average {m['loadavg_1_5_15']} "
             "at the end of the run", "", "```", *body, "```", ""]
    if notes:
        lines += ["Notes:", "", *notes, ""]
    with atomic_write(path) as f:
        f.write("\n".join(lines))


class StepServer:
    """A worker process that runs one training step per ``step`` line on its stdin and answers
    with the step's seconds; ``quit`` ends it with its ``BENCH_RESULT`` (peak RSS included).

    Two servers driven alternately (A B A B ...) compare two environments (e.g. two venvs)
    step by step under the same machine load; see :func:`serve_steps` for the worker side.
    """

    def __init__(self, argv: Sequence[str], cwd: str | Path | None = None):
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1,
                                     cwd=str(cwd or REPO))
        self.ready = self._read()  # the worker's "ready {json}" line

    def _read(self) -> str:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"step server {self.proc.args[:3]} exited early")
            if line.startswith(("ready", "step ", RESULT_PREFIX)):
                return line.strip()

    def step(self) -> float:
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        return float(self._read().split()[1])

    def close(self) -> dict:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        line = self._read()
        self.proc.wait(timeout=60)
        return json.loads(line[len(RESULT_PREFIX):])


def serve_steps(step: Callable[[], object], **info) -> None:
    """Worker side of :class:`StepServer`: one warm-up step, then serve ``step`` lines."""
    step()
    print("ready " + json.dumps(info), flush=True)
    for line in sys.stdin:
        if line.strip() == "step":
            print(f"step {timed(step):.6f}", flush=True)
        elif line.strip() == "quit":
            break
    worker_result(**info)
