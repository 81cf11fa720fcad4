"""glibc ``malloc`` settings that keep large CPU tensors in the heap between training steps.

PyTorch's CPU allocator calls ``malloc``/``free`` for every tensor. With glibc's defaults a
freed chunk above the mmap threshold (dynamic, at most 32 MiB) is returned to the kernel, and
the heap top is trimmed as soon as 128 KiB+ are free, so each training step maps fresh pages
for its big activations and page-faults on first touch (measured as slow ``copy_``/conv ops).
On the tiny HuBERT CPU step (bench/bench_step.py model, 1 thread) this costs 12-16 % of the
step time; :func:`tune_cpu_malloc` removes it for +5-10 % resident memory.

Opt out with ``ESPNET_CPU_MALLOC_TUNING=0``. Nothing is changed when any ``MALLOC_*_`` tunable
is already set in the environment (the user's choice wins), or when libc is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

logger = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MIB = 1024 * 1024
ENV_SWITCH = "ESPNET_CPU_MALLOC_TUNING"
USER_TUNABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                 "MALLOC_MMAP_MAX_", "GLIBC_TUNABLES")

_applied: dict[str, int] | None = None


def tune_cpu_malloc(
    mmap_threshold: int = 32 * MIB,
    trim_threshold: int = 1024 * MIB,
    top_pad: int = 64 * MIB,
) -> dict[str, int] | None:
    """Set glibc's mmap threshold, trim threshold and top pad for this process (idempotent).

    Args:
        mmap_threshold: chunks at least this big are mmapped (glibc default 128 KiB, raised
            dynamically up to 32 MiB; bigger tensors, e.g. of a Base-size CNN, stay mmapped
            unless this is raised).
        trim_threshold: free memory at the heap top kept before returning it to the kernel
            (default 128 KiB).
        top_pad: extra memory requested from the kernel whenever the heap grows.

    Returns the applied settings, or None when skipped (not glibc, opted out, user tunables
    set, or ``mallopt`` refused a value). Call it once at start-up, before the first step.
    """
    global _applied
    if _applied is not None:
        return _applied
    reason = _skip_reason()
    if reason is not None:
        logger.debug("CPU malloc tuning skipped: %s", reason)
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as e:
        logger.debug("CPU malloc tuning skipped: no mallopt (%s)", e)
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = {"mmap_threshold": (M_MMAP_THRESHOLD, mmap_threshold),
                "trim_threshold": (M_TRIM_THRESHOLD, trim_threshold),
                "top_pad": (M_TOP_PAD, top_pad)}
    for name, (param, value) in settings.items():
        if mallopt(param, int(value)) != 1:
            logger.warning("CPU malloc tuning: mallopt refused %s=%d; keeping glibc's "
                           "default for it", name, value)
            return None
    _applied = {name: int(value) for name, (_, value) in settings.items()}
    logger.info("CPU malloc tuning: %s (set %s=0 to disable)", _applied, ENV_SWITCH)
    return _applied


def _skip_reason() -> str | None:
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"{ENV_SWITCH} disables it"
    user = [k for k in USER_TUNABLES if k in os.environ]
    if user:
        return f"the environment already sets {', '.join(user)}"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return f"libc is not glibc ({platform.system()} {platform.libc_ver()[0] or '?'})"
    return None
