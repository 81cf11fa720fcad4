#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR/..
# FSDD -> data/{train,valid,test} (speaker-disjoint; text = the spoken digit, for probing).
#   local/data.sh [--fsdd_root DIR] [--subset N]   (no --fsdd_root: download the v1.0.10 release)
set -euo pipefail
. ./path.sh
python3 -m espnet2.bin.fsdd_data --data_dir data --download_dir downloads "$@"
