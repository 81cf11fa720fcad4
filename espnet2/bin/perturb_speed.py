"""Stage 2: speed-perturbed copies of a data dir, combined (``data/<train>_sp``).

python -m espnet2.bin.perturb_speed --factors "0.9 1.0 1.1" data/train data/train_sp
python -m espnet2.bin.perturb_speed --pipe 0.9 <wav.scp value>   # writes wav to stdout
"""

from __future__ import annotations

import argparse
import io
import logging
import sys

import soundfile as sf

from espnet2.recipe.format import read_recording
from espnet2.recipe.perturb import change_speed, perturb_and_combine


def main(cmd: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--factors", default="0.9 1.0 1.1", help="space-separated speed factors")
    p.add_argument("--pipe", type=float, default=None, help="internal: perturb one recording")
    p.add_argument("paths", nargs="+", help="SRC DST (or the wav.scp value with --pipe)")
    a = p.parse_args(cmd)
    if a.pipe is not None:
        wav, fs = read_recording(" ".join(a.paths))
        buf = io.BytesIO()  # WAV needs a seekable file for its header; stdout is a pipe
        sf.write(buf, change_speed(wav, fs, a.pipe), fs, format="WAV", subtype="PCM_16")
        sys.stdout.buffer.write(buf.getvalue())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if len(a.paths) != 2:
        p.error("expected SRC DST")
    perturb_and_combine(a.paths[0], a.paths[1], [float(f) for f in a.factors.split()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
