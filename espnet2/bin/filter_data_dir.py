"""Stage 4: drop too-short/too-long utterances (strict bounds, seconds).

    python -m espnet2.bin.filter_data_dir --fs 16k --min_wav_duration 0.1 \
        --max_wav_duration 20 dump/raw/org/train dump/raw/train
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from espnet2.recipe.filter import filter_data_dir
from espnet2.recipe.format import parse_fs


def main(cmd: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--fs", default="16k")
    p.add_argument("--min_wav_duration", type=float, default=0.1)
    p.add_argument("--max_wav_duration", type=float, default=20.0)
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    a = p.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    filter_data_dir(a.src, a.dst, parse_fs(a.fs), a.min_wav_duration, a.max_wav_duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
