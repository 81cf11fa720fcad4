"""Process-group setup for the three ways ssl1 training is launched.

1. ``torchrun`` (or any launcher exporting ``RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT``);
2. Slurm ``srun`` with one task per GPU (``SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID``; the first
   host of ``SLURM_NODELIST`` is the master);
3. :func:`spawn_workers` (ESPnet ``--ngpu N --multiprocessing_distributed true``): one process
   per device on this host, a free localhost port, the torchrun variables set in each child.

A single process (no variables, or ``WORLD_SIZE=1``) gets ``world_size=1`` and no process group.
Backend: NCCL on GPU, gloo on CPU.
"""

from __future__ import annotations

import datetime
import gc
import logging
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global ``rank`` of ``world_size``, ``local_rank`` on its host."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _env_int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise ValueError(f"Environment variable {key}={env[key]!r} is not an integer") from None


def first_slurm_host(nodelist: str) -> str:
    """First host of a Slurm node list: ``"gpu[03-05,09],cpu1"`` -> ``"gpu03"``.

    Uses ``scontrol show hostnames`` when available (it knows every syntax), else parses the
    common ``prefix[a-b,c]`` form.
    """
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(
                ["scontrol", "show", "hostnames", nodelist],
                capture_output=True, text=True, check=True, timeout=30,
            ).stdout.split()
            if out:
                return out[0]
        except (subprocess.SubprocessError, OSError) as e:
            logger.warning("scontrol show hostnames %s failed (%s); parsing it myself", nodelist, e)
    first = re.split(r",(?![^\[]*\])", nodelist.strip())[0]  # split on commas outside [...]
    m = re.fullmatch(r"([^\[]*)\[([^\]]+)\](.*)", first)
    if m is None:
        return first
    prefix, ranges, suffix = m.groups()
    return prefix + ranges.split(",")[0].split("-")[0] + suffix


def detect_launcher(env: Mapping[str, str] | None = None) -> dict[str, int | str] | None:
    """Read rank/world/master from the environment; None when this is a single process.

    Returns ``{"launcher", "rank", "world_size", "local_rank", "local_world_size",
    "master_addr", "master_port"}``. Raises ``ValueError`` naming the inconsistent variables.
    """
    env = os.environ if env is None else env
    if "RANK" in env or "WORLD_SIZE" in env:
        missing = [k for k in ("RANK", "WORLD_SIZE") if k not in env]
        if missing:
            raise ValueError(f"RANK and WORLD_SIZE must be set together; {missing} is missing. "
                             "Launch with torchrun or export both.")
        info = {"launcher": "env", "rank": _env_int(env, "RANK"),
                "world_size": _env_int(env, "WORLD_SIZE"),
                "local_rank": _env_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
                "local_world_size": _env_int(env, "LOCAL_WORLD_SIZE")
                if "LOCAL_WORLD_SIZE" in env else 1}
        if info["world_size"] > 1 and ("MASTER_ADDR" not in env or "MASTER_PORT" not in env):
            raise ValueError(
                f"WORLD_SIZE={info['world_size']} but MASTER_ADDR/MASTER_PORT are not both set "
                "(env:// rendezvous needs them). Launch with torchrun, or export "
                "MASTER_ADDR=<host of rank 0> MASTER_PORT=<free port>.")
        info["master_addr"] = env.get("MASTER_ADDR", "127.0.0.1")
        info["master_port"] = _env_int(env, "MASTER_PORT") if "MASTER_PORT" in env else 0
    elif "SLURM_PROCID" in env and "SLURM_STEP_ID" in env and int(env.get("SLURM_NTASKS", 1)) > 1:
        # Inside `srun` (SLURM_STEP_ID is only set in job steps): one task per device.
        job = env.get("SLURM_JOB_ID", "0")
        port = _env_int(env, "MASTER_PORT") if "MASTER_PORT" in env else (
            DEFAULT_MASTER_PORT + int(job) % 10000 if job.isdigit() else DEFAULT_MASTER_PORT)
        per_node = env.get("SLURM_NTASKS_PER_NODE", env.get("SLURM_TASKS_PER_NODE", "1"))
        info = {"launcher": "slurm", "rank": _env_int(env, "SLURM_PROCID"),
                "world_size": _env_int(env, "SLURM_NTASKS"),
                "local_rank": _env_int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0,
                "local_world_size": int(re.match(r"\d+", per_node).group()),
                "master_addr": env.get("MASTER_ADDR")
                or first_slurm_host(env.get("SLURM_STEP_NODELIST", env.get("SLURM_NODELIST", ""))),
                "master_port": port}
    else:
        return None
    if not 0 <= info["rank"] < info["world_size"]:
        raise ValueError(f"rank {info['rank']} is outside [0, world_size={info['world_size']}) "
                         f"({info['launcher']} launcher variables are inconsistent)")
    return info


def init_distributed(
    ngpu: int,
    dist_backend: str = "auto",
    timeout_s: float = 1800.0,
    env: Mapping[str, str] | None = None,
) -> DistInfo:
    """Join the process group described by the environment (see module docstring).

    ``ngpu`` is GPUs per process (0 or 1); with ``ngpu > 0`` the process uses
    ``cuda:<local_rank>``. ``timeout_s`` bounds how long a collective waits for a missing rank.
    """
    if ngpu > 1:
        raise ValueError(f"ngpu={ngpu} per process: use one process per GPU "
                         "(torchrun --nproc_per_node, srun, or spawn_workers)")
    info = detect_launcher(env)
    local_rank = 0 if info is None else int(info["local_rank"])
    if ngpu > 0:
        if not torch.cuda.is_available():
            raise RuntimeError(f"ngpu={ngpu} but CUDA is not available; use --ngpu 0 for CPU")
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"local rank {local_rank} has no GPU: this host shows "
                               f"{torch.cuda.device_count()} (CUDA_VISIBLE_DEVICES="
                               f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if info is None or int(info["world_size"]) == 1:
        return DistInfo(0, 1, local_rank, device, 1)
    backend = ("nccl" if ngpu > 0 else "gloo") if dist_backend == "auto" else dist_backend
    if not dist.is_initialized():
        os.environ["MASTER_ADDR"] = str(info["master_addr"])
        os.environ["MASTER_PORT"] = str(info["master_port"])
        dist.init_process_group(
            backend, init_method="env://", rank=int(info["rank"]),
            world_size=int(info["world_size"]), timeout=datetime.timedelta(seconds=timeout_s),
            device_id=device if backend == "nccl" else None,
        )
    logger.info("rank %d/%d (local %d) on %s via %s, backend %s, master %s:%s",
                info["rank"], info["world_size"], local_rank, device, info["launcher"], backend,
                info["master_addr"], info["master_port"])
    return DistInfo(int(info["rank"]), int(info["world_size"]), local_rank, device,
                    int(info["local_world_size"]))


def free_port() -> int:
    """A TCP port that was free on localhost a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(local_rank: int, fn: Callable, nprocs: int, port: int, node_rank: int,
             num_nodes: int, master_addr: str, args: tuple) -> None:
    os.environ.update(
        RANK=str(node_rank * nprocs + local_rank), WORLD_SIZE=str(nprocs * num_nodes),
        LOCAL_RANK=str(local_rank), LOCAL_WORLD_SIZE=str(nprocs),
        MASTER_ADDR=master_addr, MASTER_PORT=str(port),
    )
    for k in ("SLURM_PROCID", "SLURM_STEP_ID"):  # the torchrun variables above take precedence
        os.environ.pop(k, None)
    fn(*args)


def spawn_workers(fn: Callable, nprocs: int, *args, node_rank: int = 0, num_nodes: int = 1,
                  master_addr: str | None = None, master_port: int | None = None) -> None:
    """Run ``fn(*args)`` in ``nprocs`` processes of ranks ``node_rank * nprocs + i``.

    Each child sees the torchrun variables, so ``fn`` calls :func:`init_distributed` as usual.
    Single node: ``127.0.0.1`` and a free port. ``fn`` must be importable (module level).
    An exception in any child is re-raised here (``torch.multiprocessing.ProcessRaisedException``).
    """
    if num_nodes > 1 and (master_addr is None or master_port is None):
        raise ValueError("spawn_workers over several nodes needs master_addr and master_port")
    port = master_port or free_port()
    torch.multiprocessing.spawn(
        _spawned, nprocs=nprocs, join=True,
        args=(fn, nprocs, port, node_rank, num_nodes, master_addr or "127.0.0.1", args),
    )


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op without a process group); returns it."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def destroy() -> None:
    """Destroy the process group, after freeing what only reference cycles keep alive.

    A DDP reducer freed *after* its process group aborts the process at exit ("terminate
    called without an active exception"), and one can outlive its trainer in garbage: torch's
    lazy ``torch._dynamo`` import inside the first optimizer's constructor leaves a cycle that
    holds the calling frames (with their ``trainer`` locals) until the next collection.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
