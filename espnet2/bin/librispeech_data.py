"""LibriSpeech data preparation for egs2/librispeech/ssl1 (called by local/data.sh).

    python -m espnet2.bin.librispeech_data --root downloads/LibriSpeech \
        --download_dir downloads --data_dir data [--parts train-clean-100 dev-clean ...]
"""

from __future__ import annotations

import argparse
import logging
import sys

from espnet2.recipe.librispeech import EVAL_PARTS, TRAIN_PARTS, prepare


def main(cmd: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", default="downloads/LibriSpeech", help="dir holding the parts")
    p.add_argument("--download_dir", default=None, help="download missing parts here")
    p.add_argument("--data_dir", default="data")
    p.add_argument("--parts", nargs="+", default=[*TRAIN_PARTS, *EVAL_PARTS])
    a = p.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parts = tuple(x for part in a.parts for x in part.split())  # also accepts one quoted list
    prepare(a.root, a.data_dir, parts, a.download_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
