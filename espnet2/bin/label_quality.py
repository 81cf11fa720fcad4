"""Label quality (purity, PNMI) and label validation from the command line.

Quality of pseudo-labels against references (frame labels, or one word per utterance)::

    python -m espnet2.bin.label_quality --labels exp/km/test/pseudo_labels_km100.txt \\
        --ref_text dump/raw/test/text.digits [--ref_level auto|frame|utt] [--hyp_upsample 1] \\
        [--out quality.json]

Validation of a set's labels (exits 1 listing every problem)::

    python -m espnet2.bin.label_quality --validate --data_dir dump/raw/valid \\
        --labels dump/raw/valid/text --token_list tokens.txt --geometry wav2vec_cnn \\
        [--num_classes 100] [--tolerance 2] [--train_token_list train_tokens.txt]

``--data_dir`` may also be a ``wav.scp`` or ``utt2num_samples`` file.
"""

from __future__ import annotations

import argparse
import logging
import sys

from espnet2.data.errors import DataError
from espnet2.labels.quality import (
    format_report,
    iter_label_file,
    measure_quality,
    read_ref,
    write_report,
)
from espnet2.labels.validate import validate_labels

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--labels", required=True, help="utt l1 l2 ... file")
    p.add_argument("--validate", action="store_true", help="validate instead of measuring")
    p.add_argument("--ref_text", help="references: utt tok1 tok2 ... or utt word")
    p.add_argument("--ref_level", choices=["auto", "frame", "utt"], default="auto")
    p.add_argument("--hyp_upsample", type=int, default=1)
    p.add_argument("--out", help="report JSON path")
    p.add_argument("--data_dir", help="set dir, wav.scp or utt2num_samples (--validate)")
    p.add_argument("--token_list")
    p.add_argument("--geometry", default="wav2vec_cnn")
    p.add_argument("--num_classes", type=int, default=None)
    p.add_argument("--tolerance", type=int, default=2)
    p.add_argument("--train_token_list", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    args = get_parser().parse_args(argv)
    if args.validate:
        if not (args.data_dir and args.token_list):
            raise SystemExit("--validate needs --data_dir and --token_list")
        problems = validate_labels(
            args.data_dir,
            args.labels,
            args.token_list,
            args.geometry,
            num_classes=args.num_classes,
            tolerance=args.tolerance,
            train_token_list=args.train_token_list,
        )
        if problems:
            print(f"label_quality: {DataError(problems)}", file=sys.stderr)
            return 1
        print(f"{args.labels}: OK")
        return 0
    if not args.ref_text:
        raise SystemExit("--ref_text is required to measure quality (or pass --validate)")
    report = measure_quality(
        iter_label_file(args.labels), read_ref(args.ref_text), args.ref_level, args.hyp_upsample
    )
    if args.out:
        write_report(report, args.out)
    print(format_report(report, args.labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
