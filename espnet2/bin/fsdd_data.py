"""FSDD data preparation for egs2/fsdd/ssl1 (called by local/data.sh).

    python -m espnet2.bin.fsdd_data [--fsdd_root DIR] [--subset N] [--data_dir data]

Without ``--fsdd_root`` the public v1.0.10 release is downloaded to ``--download_dir``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from espnet2.recipe.fsdd import TEST_SPEAKERS, prepare


def main(cmd: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--fsdd_root", "--fsdd-root", default="", help="local FSDD copy (recordings/)")
    p.add_argument(
        "--subset", type=int, default=None, help="keep takes 0..N-1 of each speaker and digit (CI)"
    )
    p.add_argument(
        "--test_speakers",
        default=" ".join(TEST_SPEAKERS),
        help="held-out speakers (space-separated)",
    )
    p.add_argument("--valid_takes", type=int, default=5, help="takes per digit in valid")
    p.add_argument("--data_dir", default="data")
    p.add_argument("--download_dir", default="downloads")
    a = p.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sizes = prepare(
        a.fsdd_root or None,
        a.data_dir,
        a.download_dir,
        tuple(a.test_speakers.split()),
        a.valid_takes,
        a.subset,
    )
    logging.info("prepared %s", sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
