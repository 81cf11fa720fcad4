"""Start training through the job backend on one or several nodes (see espnet2.recipe.launch).

    python -m espnet2.bin.launch --cmd "$cuda_cmd" --log exp/x/train.log --ngpu 4 \
        [--num_nodes 2 --node_rank 0 --master_addr host0] -- -m espnet2.bin.ssl_train ...
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys

from espnet2.recipe.launch import LaunchError, launch_argv


def main(cmd: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cmd", required=True, help="the cmd.sh command (cuda_cmd)")
    p.add_argument("--log", required=True)
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--num_nodes", type=int, default=1)
    p.add_argument("--node_rank", type=int, default=None)
    p.add_argument("--master_addr", default="")
    p.add_argument("--master_port", type=int, default=29500)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--dry_run", action="store_true", help="print the command only")
    p.add_argument("train", nargs=argparse.REMAINDER, help="-- -m espnet2.bin.ssl_train ...")
    a = p.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    train = a.train[1:] if a.train[:1] == ["--"] else a.train
    try:
        argv = launch_argv(
            a.cmd,
            a.log,
            train,
            a.ngpu,
            a.num_nodes,
            a.node_rank,
            a.master_addr,
            a.master_port,
            a.python,
        )
    except LaunchError as e:
        sys.stderr.write(f"launch: error: {e}\n")
        return 2
    logging.info("launch: %s", shlex.join(argv))
    if a.dry_run:
        print(shlex.join(argv))
        return 0
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
