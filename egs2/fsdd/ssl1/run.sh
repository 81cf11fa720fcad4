#!/usr/bin/env bash
# FSDD example: pre-train a small HuBERT (MFCC k-means labels) and a small DinoSR on 4 speakers,
# probe both on 2 held-out speakers. CPU, ~5 minutes.
#   ./run.sh [--fsdd_root /path/to/fsdd] [--subset N] [any ssl.sh option]
#   ./run.sh --seeds "0 1 2 3"   seed study: each config trained and probed once per seed
#                                (exp/ssl_<config>_raw_seed<S>), then exp/seed_study_<config>.md
set -euo pipefail

local_data_opts=""
seeds=""
target_gain=10
ssl_args=""
expdir=exp
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --fsdd_root|--fsdd-root|--subset) local_data_opts+=" $1 $2"; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --target_gain) target_gain=$2; shift 2 ;;
        --ssl_args) ssl_args=$2; shift 2 ;;
        --expdir) expdir=$2; args+=("$1" "$2"); shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

# HuBERT: MFCC k-means labels of the speed-perturbed set. DinoSR: no labels, unperturbed set.
run_config() {
    local train_config=$1; shift
    ./ssl.sh \
        --train_set train --valid_set valid --test_sets test \
        --local_data_opts "${local_data_opts}" \
        --fs 16k --audio_format flac --min_wav_duration 0.1 --max_wav_duration 3 \
        --ngpu 0 --nj 2 --skip_packing false \
        --inference_ssl_model valid.loss.ave.pth \
        --train_config "${train_config}" "$@"
}
hubert() {
    run_config conf/train_hubert.yaml --speed_perturb_factors "0.8 0.9 1.0 1.1 1.2" \
        --label_mode generate --km_feature mfcc --km_cmvn utterance --n_clusters 200 \
        --portion_km 1.0 --km_geometry 512,320,256 "$@"
}
dinosr() { run_config conf/train_dinosr.yaml --label_mode none "$@"; }

if [ -z "${seeds}" ]; then
    hubert "${args[@]+"${args[@]}"}" --ssl_args "${ssl_args}"
    dinosr "${args[@]+"${args[@]}"}" --ssl_args "${ssl_args}"
    exit 0
fi
# Seed study: the same stages with --seed S added to --ssl_args (stages 1-6 are shared and
# skipped once done), then the gains over each run's own
# random init summarised against --target_gain (points; a miss is reported, not an error).
# shellcheck source=/dev/null
. ./path.sh
for config in hubert dinosr; do
    reports=()
    for seed in ${seeds}; do
        tag=train_${config}_raw_seed${seed}
        "${config}" "${args[@]+"${args[@]}"}" --skip_packing true --ssl_tag "${tag}" \
            --ssl_args "${ssl_args} --seed ${seed}"
        reports+=("${expdir}/ssl_${tag}/probe/probe.json")
    done
    rc=0
    python3 -m espnet2.bin.probe_summary "${reports[@]}" --target_gain "${target_gain}" \
        --markdown "${expdir}/seed_study_train_${config}.md" \
        --json "${expdir}/seed_study_train_${config}.json" || rc=$?
    [ "${rc}" -le 1 ] || exit "${rc}"
done
