"""Build the command that starts training on 1 GPU/CPU, N GPUs, or N nodes.

* one node: ``<cmd> --gpu G LOG python -m <trainer> ... --ngpu G`` (the trainer spawns one
  process per GPU, as ESPnet's ``--multiprocessing_distributed true``);
* several nodes, Slurm backend: one task per GPU on every node through ``srun``
  (the trainer reads ``SLURM_PROCID``/``SLURM_NTASKS``), each with ``--ngpu 1``;
* several nodes, local backend: ``torchrun --nnodes M --node_rank R --master_addr A`` on this
  node; the same recipe command is started on every node with its own ``--node_rank``.
"""

from __future__ import annotations

import shlex


class LaunchError(ValueError):
    """A launch request that cannot work, with what to do instead."""


def backend_of(cmd: str) -> str:
    """The backend a ``cmd.sh`` command string uses (``--backend X``; default ``local``)."""
    words = shlex.split(cmd)
    for i, w in enumerate(words):
        if w == "--backend" and i + 1 < len(words):
            return words[i + 1]
        if w.startswith("--backend="):
            return w.split("=", 1)[1]
    return "local"


def launch_argv(
    cmd: str,
    log: str,
    train: list[str],
    ngpu: int = 0,
    num_nodes: int = 1,
    node_rank: int | None = None,
    master_addr: str = "",
    master_port: int = 29500,
    python: str = "python3",
) -> list[str]:
    """argv that runs the trainer module invocation ``train`` (``["-m", "espnet2.bin.x", ...]``)."""
    if num_nodes < 1 or ngpu < 0:
        raise LaunchError(f"num_nodes={num_nodes}, ngpu={ngpu}: need num_nodes >= 1 and ngpu >= 0")
    base = [*shlex.split(cmd), "--gpu", str(ngpu)]
    if num_nodes == 1:
        return [*base, log, python, *train, "--ngpu", str(ngpu)]
    per_node = max(ngpu, 1)
    if backend_of(cmd) == "slurm":
        return [
            *base,
            "--num_nodes",
            str(num_nodes),
            "--num_threads",
            "1",
            log,
            "srun",
            "--export=ALL",
            f"--ntasks-per-node={per_node}",
            python,
            *train,
            "--ngpu",
            "1" if ngpu else "0",
        ]
    if node_rank is None or not master_addr:
        raise LaunchError(
            f"num_nodes={num_nodes} with the local backend: start the same command on every node "
            "with --node_rank <0..num_nodes-1> --master_addr <host of node 0> (torchrun), or set "
            "cmd_backend=slurm in cmd.sh to let Slurm place the nodes"
        )
    if not 0 <= node_rank < num_nodes:
        raise LaunchError(f"--node_rank {node_rank} is outside 0..{num_nodes - 1}")
    torchrun = [
        python,
        "-m",
        "torch.distributed.run",
        f"--nnodes={num_nodes}",
        f"--node_rank={node_rank}",
        f"--nproc_per_node={per_node}",
        f"--master_addr={master_addr}",
        f"--master_port={master_port}",
    ]
    return [*base, log, *torchrun, *train, "--ngpu", "1" if ngpu else "0"]
