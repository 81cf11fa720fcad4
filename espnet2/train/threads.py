"""Choose torch's intra-op thread count on purpose instead of inheriting "all cores".

With several training processes per host each would otherwise spin ``cpu_count`` OpenMP
threads, oversubscribing the CPUs that also feed the data loader. And a CPU another process is
using is worse than no CPU: OpenMP threads spin waiting for the thread that was descheduled.
Measured on a 2-vCPU VM (bench/results/step.md, job.md): with the other vCPU idle, 2 threads
make a tiny HuBERT step x0.58 of 1 thread's; with it busy (load ~4), x3.1 *slower*.

So auto = this process's share of the CPUs (``available // local_world_size``), capped by the
CPUs that other processes leave free, measured from ``/proc/stat`` over the process's own
start-up (:func:`mark_start`, then :func:`others_busy_cpus`), so the choice costs no time.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def cpus_available() -> int:
    """CPUs this process may use: affinity mask, capped by a cgroup v2 CPU quota if any."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


_START: tuple[float, float, float] | None = None  # (wall s, all-CPU busy s, own CPU s)


def _cpu_sample() -> tuple[float, float, float] | None:
    """(monotonic wall seconds, busy CPU-seconds of the whole machine, this process's CPU s)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user..steal, not guest
    times = os.times()
    return time.monotonic(), busy, times.user + times.system


def mark_start() -> None:
    """Remember the CPU counters now (call at CLI start; the choice is made later)."""
    global _START
    _START = _cpu_sample()


def others_busy_cpus(min_window: float = 0.2) -> float | None:
    """CPUs other processes kept busy since :func:`mark_start` (or over ``min_window`` s now).

    None where ``/proc/stat`` is unavailable (not Linux).
    """
    start = _START
    if start is None or time.monotonic() - start[0] < min_window:
        start = _cpu_sample()
        if start is None:
            return None
        time.sleep(min_window)
    end = _cpu_sample()
    if end is None:
        return None
    wall = end[0] - start[0]
    if wall <= 0:
        return None
    return max(0.0, ((end[1] - start[1]) - (end[2] - start[2])) / wall)


def choose_num_threads(requested: int | None, local_world_size: int = 1,
                       available: int | None = None,
                       others_busy: float | None = None) -> tuple[int, str]:
    """Return ``(threads, reason)``; ``requested`` (``--num_threads``) wins when given.

    Auto: ``available // local_world_size`` (each training process on this host gets an equal
    share), capped by the CPUs left free by other processes, ``available - others_busy``
    (rounded down unless within 0.25 of the next CPU); at least 1.
    """
    available = cpus_available() if available is None else available
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--num_threads {requested}: must be >= 1 (or omitted for auto)")
        return requested, f"--num_threads {requested} given ({available} CPUs available)"
    share = max(1, available // max(1, local_world_size))
    why = f"{available} CPUs shared by {local_world_size} process(es) on this host"
    if others_busy is None:
        return share, why + "; load of other processes unknown"
    free = math.floor(available - others_busy + 0.25)
    n = max(1, min(share, free))
    why += f"; other processes busy on {others_busy:.2f} CPUs"
    if n < share:
        why += " (threads on a busy CPU spin: fewer threads, or --num_threads)"
    return n, why


def set_num_threads(requested: int | None, local_world_size: int = 1) -> int:
    """Apply :func:`choose_num_threads` to torch and log the choice."""
    busy = others_busy_cpus() if requested is None else None
    n, why = choose_num_threads(requested, local_world_size, others_busy=busy)
    torch.set_num_threads(n)
    logger.info("torch intra-op threads: %d (%s)", n, why)
    return n
