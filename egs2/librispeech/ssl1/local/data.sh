#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR/..
# LibriSpeech -> data/{train_960,dev,dev_clean,dev_other,test_clean,test_other}.
#   local/data.sh [--root DIR/LibriSpeech] [--download_dir DIR] [--parts "train-clean-100 ..."]
# Without the parts under --root, pass --download_dir to fetch them from OpenSLR (SLR12).
set -euo pipefail
. ./path.sh
python3 -m espnet2.bin.librispeech_data --data_dir data "$@"
