"""Choose torch's intra-op thread count on purpose instead of inheriting "all cores".

With several training processes per host each would otherwise spin ``cpu_count`` OpenMP
threads, oversubscribing the CPUs that also feed the data loader. On 1-2 vCPU machines even two
threads are slower than one on small ops (they spin on each other), so auto picks 1 there.
"""

from __future__ import annotations

import logging
import os
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


def choose_num_threads(requested: int | None, local_world_size: int = 1,
                       available: int | None = None) -> tuple[int, str]:
    """Return ``(threads, reason)``; ``requested`` (``--num_threads``) wins when given.

    Auto: 1 when at most 2 CPUs are available, else ``available // local_world_size`` (each
    training process on this host gets an equal share, at least 1).
    """
    available = cpus_available() if available is None else available
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--num_threads {requested}: must be >= 1 (or omitted for auto)")
        return requested, f"--num_threads {requested} given ({available} CPUs available)"
    if available <= 2:
        return 1, f"only {available} CPU(s) available: more threads would spin on each other"
    n = max(1, available // max(1, local_world_size))
    return n, f"{available} CPUs shared by {local_world_size} process(es) on this host"


def set_num_threads(requested: int | None, local_world_size: int = 1) -> int:
    """Apply :func:`choose_num_threads` to torch and log the choice."""
    n, why = choose_num_threads(requested, local_world_size)
    torch.set_num_threads(n)
    logger.info("torch intra-op threads: %d (%s)", n, why)
    return n
