"""Import hubert1 k-means pseudo-labels into this recipe's data dirs.

    python -m espnet2.bin.import_hubert1_labels --hubert1_dir ../hubert1/exp/kmeans_iter0 \\
        --sets train valid --token_list ../hubert1/data/token_list/.../tokens.txt \\
        --dump_dir dump/raw --token_list_out data/token_list/km100/tokens.txt \\
        --geometry wav2vec_cnn [--num_classes 100] [--tolerance 2]

Flags:
    --hubert1_dir     searched for ``<set>/pseudo_labels_km*.txt`` or ``<set>/text.km.*``.
    --labels SET=PATH explicit label files instead of (or overriding) --hubert1_dir.
    --sets            set names (folders under --dump_dir) to import.
    --token_list      hubert1's ``tokens.txt`` (any order; literal ``<sos/eos>\\n<unk>`` line OK).
    --token_list_out  cleaned copy, one token per line: pass it to training as --token_list.
    --geometry        encoder frames (``wav2vec_cnn`` or ``rf,stride,pad``) the labels must match.
Writes ``<dump_dir>/<set>/text`` only when every set validates; else exits 1 listing every
problem (missing/extra utterances, wrong set, lengths, unknown labels, num_classes).
"""

from __future__ import annotations

import argparse
import logging
import sys

from espnet2.data.errors import DataError
from espnet2.labels.import_hubert1 import find_label_files, import_hubert1_labels


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--hubert1_dir", default=None)
    p.add_argument("--labels", nargs="*", default=[], metavar="SET=PATH")
    p.add_argument("--sets", nargs="*", default=[])
    p.add_argument("--token_list", required=True)
    p.add_argument("--dump_dir", required=True)
    p.add_argument("--token_list_out", required=True)
    p.add_argument("--geometry", default="wav2vec_cnn")
    p.add_argument("--num_classes", type=int, default=None)
    p.add_argument("--tolerance", type=int, default=2)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    args = get_parser().parse_args(argv)
    explicit = dict(item.split("=", 1) for item in args.labels)
    try:
        todo = [s for s in args.sets if s not in explicit]
        found = find_label_files(args.hubert1_dir, todo) if todo and args.hubert1_dir else {}
        missing = [s for s in todo if s not in found]
        if missing:
            raise SystemExit(f"no label file for sets {missing}: pass --hubert1_dir or --labels")
        import_hubert1_labels(
            {**found, **explicit},
            args.token_list,
            args.dump_dir,
            args.token_list_out,
            args.geometry,
            num_classes=args.num_classes,
            tolerance=args.tolerance,
        )
    except DataError as e:
        print(f"import_hubert1_labels: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
