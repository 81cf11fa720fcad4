#!/usr/bin/env bash
# FSDD example: pre-train a small HuBERT (MFCC k-means labels) and a small DinoSR on 4 speakers,
# probe both on 2 held-out speakers. CPU, ~5 minutes.
#   ./run.sh [--fsdd_root /path/to/fsdd] [--subset N] [any ssl.sh option]
#   ./run.sh --seeds "0 1 2 3"   seed study (ssl.sh): each config trained and probed once per
#                                seed, then exp/seed_study_train_{hubert,dinosr}_raw.md
set -euo pipefail

local_data_opts=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --fsdd_root|--fsdd-root|--subset) local_data_opts+=" $1 $2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

common=(--train_set train --valid_set valid --test_sets test --local_data_opts "${local_data_opts}"
    --fs 16k --audio_format flac --min_wav_duration 0.1 --max_wav_duration 3
    --ngpu 0 --nj 2 --skip_packing false --inference_ssl_model valid.loss.ave.pth)

# HuBERT: MFCC k-means labels of the speed-perturbed set.
./ssl.sh "${common[@]}" --train_config conf/train_hubert.yaml \
    --speed_perturb_factors "0.8 0.9 1.0 1.1 1.2" \
    --label_mode generate --km_feature mfcc --km_cmvn utterance --n_clusters 200 \
    --portion_km 1.0 --km_geometry 512,320,256 "${args[@]+"${args[@]}"}"
# DinoSR: no labels, unperturbed set.
./ssl.sh "${common[@]}" --train_config conf/train_dinosr.yaml --label_mode none \
    "${args[@]+"${args[@]}"}"
