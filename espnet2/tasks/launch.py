"""Process-level helpers of the task entry point: devices, launchers, rank-aware logging.

``--ngpu N>1`` without an external launcher spawns N local workers; torchrun and Slurm (srun)
set the rank variables themselves and every process runs the worker directly.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from espnet2.utils.config import ConfigError

if TYPE_CHECKING:
    from espnet2.tasks.abs_task import AbsTask

logger = logging.getLogger(__name__)


def check_devices(args: argparse.Namespace) -> None:
    import torch

    if args.collect_stats and args.ngpu > 0:
        logger.info("collect_stats runs on CPU in one process; --ngpu is ignored")
        args.ngpu = 0
    if args.ngpu > 0 and not torch.cuda.is_available():
        raise ConfigError(f"--ngpu {args.ngpu} but CUDA is not available on this machine; "
                          "use --ngpu 0 to train on CPU")
    if args.ngpu > 1 and args.ngpu > torch.cuda.device_count():
        raise ConfigError(f"--ngpu {args.ngpu} but only {torch.cuda.device_count()} GPU(s) are "
                          "visible (CUDA_VISIBLE_DEVICES)")


def launcher_rank() -> int:
    from espnet2.train.distributed import detect_launcher

    info = detect_launcher()
    return 0 if info is None else int(info["rank"])


def export_dist_env(args: argparse.Namespace) -> None:
    """ESPnet's explicit ``--dist_rank/--dist_world_size/--local_rank/--dist_master_addr/
    --dist_master_port`` (or ``--dist_init_method tcp://host:port``) -> the torchrun variables
    :func:`init_distributed` reads. Variables already set by a launcher are kept."""
    import os

    if args.dist_init_method.startswith("tcp://"):
        host, _, port = args.dist_init_method[len("tcp://"):].rpartition(":")
        args.dist_master_addr = args.dist_master_addr or host
        args.dist_master_port = args.dist_master_port or int(port)
    for var, value in (("RANK", args.dist_rank), ("WORLD_SIZE", args.dist_world_size),
                       ("LOCAL_RANK", args.local_rank), ("MASTER_ADDR", args.dist_master_addr),
                       ("MASTER_PORT", args.dist_master_port)):
        if value is not None:
            os.environ.setdefault(var, str(value))


def launch(task: type[AbsTask], args: argparse.Namespace) -> None:
    """``--ngpu N>1`` without an external launcher: spawn N local workers; else run here.

    torchrun / Slurm (``srun``) set the rank variables themselves; each of their processes runs
    :meth:`AbsTask.run_worker` directly with one GPU.
    """
    from espnet2.train.distributed import detect_launcher, spawn_workers

    external = detect_launcher()
    if args.ngpu > 1 and external is None and not args.collect_stats:
        if not args.multiprocessing_distributed:
            raise SystemExit("error: --ngpu > 1 needs --multiprocessing_distributed true "
                             "(DataParallel is not supported) or an external launcher (torchrun)")
        spawn_workers(_spawned_worker, args.ngpu, task, args)
    else:
        task.run_worker(args)


def _spawned_worker(task: type[AbsTask], args: argparse.Namespace) -> None:
    task.run_worker(args)


_LOG_FILE: logging.FileHandler | None = None


def close_log_file() -> None:
    global _LOG_FILE
    if _LOG_FILE is not None:
        logging.getLogger().removeHandler(_LOG_FILE)
        _LOG_FILE.close()
        _LOG_FILE = None


def log_error_to_file(e: BaseException) -> None:
    """Write a fatal error to ``train.log`` too (stderr already shows it)."""
    if _LOG_FILE is not None:
        _LOG_FILE.emit(logging.LogRecord(__name__, logging.ERROR, __file__, 0, "%s", (e,), None))


def setup_logging(args: argparse.Namespace, rank: int) -> None:
    """Rank 0 logs at ``--log_level`` to stderr and ``<output_dir>/train.log``; other ranks
    log warnings and errors only, prefixed with their rank."""
    fmt = f"%(asctime)s [rank{rank}] (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    level = getattr(logging, args.log_level) if rank == 0 else logging.WARNING
    root.setLevel(level)
    global _LOG_FILE
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if rank == 0 and args.output_dir is not None:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        _LOG_FILE = logging.FileHandler(Path(args.output_dir) / "train.log", encoding="utf-8")
        handlers.append(_LOG_FILE)
    for h in handlers:
        h.setFormatter(logging.Formatter(fmt))
        root.addHandler(h)
    for noisy in ("matplotlib", "PIL", "h5py", "numba"):  # third-party DEBUG chatter
        logging.getLogger(noisy).setLevel(max(level, logging.INFO))
