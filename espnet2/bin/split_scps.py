"""``python -m espnet2.bin.split_scps --scps wav.scp text speech_shape --num_splits N
--output_dir D``: shard Kaldi files for ``--multiple_iterator true`` (ESPnet layout:
``D/<file name>/split.{i}`` and ``D/<file name>/num_splits``; line ``i`` goes to split
``i % N``; every file must hold the same utterance ids in the same order).
"""

from __future__ import annotations

import argparse
import logging

from espnet2.utils.config import strict_int


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scps", nargs="+", required=True, help="files to split together")
    p.add_argument("--num_splits", type=strict_int, required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--log_level", default="INFO")
    return p


def main(cmd: list[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s: %(message)s")
    from espnet2.data.samplers import split_scps

    split_scps(args.scps, args.num_splits, args.output_dir)


if __name__ == "__main__":
    main()
