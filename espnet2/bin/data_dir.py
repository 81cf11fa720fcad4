"""Kaldi data-dir utilities (``utils/{copy,fix,combine,split,subset}_data_dir.sh``).

python -m espnet2.bin.data_dir copy [--utt_prefix P] [--spk_prefix P] SRC DST
python -m espnet2.bin.data_dir fix DIR
python -m espnet2.bin.data_dir combine DST SRC1 SRC2 ...
python -m espnet2.bin.data_dir split DIR N            # -> DIR/splitN/{1..N}
python -m espnet2.bin.data_dir subset [--num N [--shuffle]] [--utt_list F] [--spk_list F] SRC DST
"""

from __future__ import annotations

import argparse
import logging
import sys

from espnet2.recipe import datadir


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("copy", help="copy, optionally prefixing ids")
    c.add_argument("--utt_prefix", default="")
    c.add_argument("--spk_prefix", default="")
    c.add_argument("src")
    c.add_argument("dst")
    f = sub.add_parser("fix", help="keep utterances present in every file; sort; rebuild spk2utt")
    f.add_argument("dir")
    m = sub.add_parser("combine", help="concatenate data dirs")
    m.add_argument("dst")
    m.add_argument("srcs", nargs="+")
    s = sub.add_parser("split", help="split into DIR/splitN/{1..N}")
    s.add_argument("dir")
    s.add_argument("num_splits", type=int)
    b = sub.add_parser("subset", help="first/random N utterances, or an utterance/speaker list")
    b.add_argument("--num", type=int, default=None)
    b.add_argument("--shuffle", action="store_true")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--utt_list", default=None)
    b.add_argument("--spk_list", default=None)
    b.add_argument("src")
    b.add_argument("dst")
    return p


def main(cmd: list[str] | None = None) -> int:
    a = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if a.command == "copy":
        datadir.copy_data_dir(a.src, a.dst, a.utt_prefix, a.spk_prefix)
    elif a.command == "fix":
        datadir.fix_data_dir(a.dir)
    elif a.command == "combine":
        datadir.combine_data_dirs(a.dst, a.srcs)
    elif a.command == "split":
        datadir.split_data_dir(a.dir, a.num_splits)
    else:
        datadir.subset_data_dir(a.src, a.dst, a.num, a.utt_list, a.spk_list, a.shuffle, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
