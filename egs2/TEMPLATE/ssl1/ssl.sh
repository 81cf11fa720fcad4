#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Self-supervised speech pre-training recipe (ESPnet ssl1 stages and options).
#   1 data prep  2 speed perturbation  3 format audio  4 length filter  5 pseudo-labels
#   6 shapes/stats  7 train  8 evaluate (probe)  9 pack
# Each stage is skipped when its .done stamp matches its options, inputs and outputs.
set -euo pipefail
log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (ssl.sh) $*" >&2; }
SECONDS=0
run_args=("$@")

# <options>
stage=1                     # first stage to run
stop_stage=10000            # last stage to run
skip_data_prep=false        # skip stages 1-5
skip_train=false            # skip stages 6-7
skip_eval=false             # skip stage 8 (probe)
skip_packing=true           # skip stage 9 (pack)
ngpu=1                      # GPUs per node (0: CPU)
num_nodes=1                 # nodes for training (Slurm backend, or torchrun with --node_rank)
node_rank=""                # this node's rank, for multi-node with the local backend (torchrun)
master_addr=""              # host of node 0, for multi-node with the local backend
master_port=29500           # rendezvous port for multi-node training
nj=32                       # parallel CPU jobs (format, stats, labels)
dumpdir=dump                # formatted data
expdir=exp                  # experiments
python=python3              # python interpreter
local_data_opts=""          # options passed to local/data.sh
speed_perturb_factors=""    # e.g. "0.9 1.0 1.1" (stage 2)
feats_type=raw              # [raw] input features (waveform only)
audio_format=flac           # [flac|wav|flac.ark|wav.ark] stage-3 audio: files, or one archive per job
fs=16k                      # sampling rate of the formatted audio
min_wav_duration=0.1        # seconds; shorter utterances are dropped (strict)
max_wav_duration=20         # seconds; longer utterances are dropped (strict)
label_mode=none             # [none|import|generate] stage 5: hubert1 labels, k-means here, or none
hubert1_dir=""              # import: hubert1 recipe dir (its dump/raw/<set>/text.km.<tag>) or k-means dir
hubert1_km_tag=""           # import: km tag of the hubert1 labels (empty: search hubert1_dir)
hubert1_token_list=""       # import: hubert1's tokens.txt
n_clusters=100              # generate: number of k-means clusters
portion_km=1.0              # generate: fraction of train utterances the k-means learns from
km_feature=mfcc             # [mfcc|model] generate: MFCC, or a layer of a trained SSL model
km_model_file=""            # generate with model: the SSL model file (e.g. exp/ssl_<it1>/valid.total_count.ave.pth)
km_layer=6                  # generate with model: the block whose output is clustered
km_geometry=wav2vec_cnn     # label frames: wav2vec_cnn (400,320,0) or rf,stride,pad of the frontend
km_cmvn=none                # [none|utterance] generate: per-utterance mean/var normalisation before k-means
token_type=""               # word when pseudo-labels are used (set automatically by stage 5)
token_list=""               # token list (default: the one stage 5 writes)
ssl_args=""                 # extra arguments for espnet2.bin.ssl_train (override the yaml)
num_splits_ssl=1            # >1: split the training data (--multiple_iterator true)
train_config=""             # training yaml
ssl_tag=""                  # experiment tag (default: yaml name + _raw)
feats_normalize=""          # [|global_mvn|utterance_mvn] global_mvn: sum feature stats (stage 6)
train_set=""                # (required) training set name
valid_set=""                # (required) validation set name
test_sets=""                # held-out sets formatted for stage 8
probe_opts=""               # extra arguments for espnet2.bin.ssl_probe (stage 8)
probe_train_set=""          # probe-train set (default: train_set before speed perturbation)
inference_ssl_model=valid.total_count.ave.pth  # model file evaluated and packed
seeds=""                    # e.g. "0 1 2 3": seed study, stages 1-8 once per seed (tag <ssl_tag>_seed<S>)
target_gain=10              # seed study: probe gain (points) over random init each seed should reach
speech_fold_length=800      # --fold_length (x100 samples) for batch_type folded
text_fold_length=400        # --fold_length of the label stream
# shellcheck disable=SC2034
lang=noinfo                 # language tag (ESPnet compatibility; unused)
use_ssh=false               # ESPnet's SSH launch: not supported (use --node_rank/--master_addr or Slurm)
skip_upload_hf=true         # ESPnet's Hugging Face upload: not supported (must stay true)
# </options>

. ./path.sh
. ./cmd.sh
eval "$(python3 -m espnet2.bin.ssl_sh_options --script "${BASH_SOURCE[0]}" -- "$@")"
# shellcheck source=scripts/stage_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/scripts/stage_lib.sh"
[ "${skip_data_prep}" = true ] && skip_stages 1 5
if [ "${use_ssh}" = true ] || [ "${skip_upload_hf}" = false ]; then
    log "--use_ssh true / --skip_upload_hf false are not supported: launch multi-node with Slurm" \
        "(cmd_backend=slurm) or --node_rank/--master_addr; upload the stage-9 zip yourself"
    exit 2
fi
[ "${skip_train}" = true ] && skip_stages 6 7
[ "${skip_eval}" = true ] && skip_stages 8 8
[ "${skip_packing}" = true ] && skip_stages 9 9
orig_train_set=${train_set}
[ -n "${speed_perturb_factors}" ] && train_set=${train_set}_sp
data_feats=${dumpdir}/raw
ssl_stats_dir=${expdir}/ssl_stats_${feats_type}${speed_perturb_factors:+_sp}  # shapes of ${train_set}
[ -n "${ssl_tag}" ] || ssl_tag=$(basename "${train_config:-train}" .yaml)_${feats_type}
ssl_exp=${expdir}/ssl_${ssl_tag}
km_dir=${expdir}/kmeans_${km_feature}_${n_clusters}_${train_set}
[ "${km_feature}" = model ] && km_dir=${expdir}/kmeans_$(basename "$(dirname "${km_model_file}")")_L${km_layer}_${n_clusters}_${train_set}
[ "${km_cmvn}" = utterance ] && km_dir=${km_dir}_cmvn
[ "${label_mode}" = import ] && km_dir=${expdir}/kmeans_import_${hubert1_km_tag}
if [ "${label_mode}" != none ]; then
    token_type=${token_type:-word}; token_list=${token_list:-${km_dir}/tokens.txt}
fi
all_sets="${train_set} ${valid_set} ${test_sets}"
case ${audio_format} in *ark*) audio_type=kaldi_ark ;; *) audio_type=sound ;; esac
# with speed perturbation the probe trains on the unperturbed set: format it too (stage 8)
probe_train=${probe_train_set:-${orig_train_set}}
[ -n "${test_sets}" ] && [ "${probe_train}" != "${train_set}" ] && all_sets="${all_sets} ${probe_train}"

# Seed study: this command once per seed (--seed S added to --ssl_args; shared stages are
# skipped once done), then each run's probe gain over its own random init summarised. A missed
# --target_gain is reported, not an error.
if [ -n "${seeds}" ]; then
    [ -n "${test_sets}" ] || { log "--seeds needs --test_sets (the probe's held-out set)"; exit 2; }
    if [ "${stage}" -gt 8 ] || [ "${stop_stage}" -lt 8 ] || [[ "${skipped}" == *" 8 "* ]]; then
        log "--seeds summarises stage 8 (probe): include it (--stage <= 8 <= --stop_stage, --skip_eval false)"
        exit 2
    fi
    reports=()
    for seed in ${seeds}; do
        "$0" "${run_args[@]}" --seeds "" --skip_packing true --ssl_tag "${ssl_tag}_seed${seed}" \
            --ssl_args "${ssl_args} --seed ${seed}"
        reports+=("${expdir}/ssl_${ssl_tag}_seed${seed}/probe/probe.json")
    done
    rc=0
    ${python} -m espnet2.bin.probe_summary "${reports[@]}" --target_gain "${target_gain}" \
        --markdown "${expdir}/seed_study_${ssl_tag}.md" --json "${expdir}/seed_study_${ssl_tag}.json" || rc=$?
    [ "${rc}" -le 1 ] || exit "${rc}"
    log "Seed study written to ${expdir}/seed_study_${ssl_tag}.md [elapsed=${SECONDS}s]"
    exit 0
fi

# Options shared by stages 6 and 7 (one per line).
train_opts() {
    [ -n "${train_config}" ] && printf '%s\n' --config "${train_config}"
    [ -n "${token_type}" ] && printf '%s\n' --token_type "${token_type}"
    [ -n "${token_list}" ] && printf '%s\n' --token_list "${token_list}"
    printf '%s\n' --frontend_conf "fs=${fs}"
}
# Stage 7 data streams and shape files (split dirs when num_splits_ssl > 1).
data_opts() {
    local src=${data_feats}/${train_set} shape=${ssl_stats_dir}/train/speech_shape
    if [ "${num_splits_ssl}" -gt 1 ]; then
        src=${ssl_stats_dir}/splits${num_splits_ssl}; shape=${src}/speech_shape
        printf '%s\n' --multiple_iterator true
    fi
    printf '%s\n' --train_data_path_and_name_and_type "${src}/wav.scp,speech,${audio_type}" --train_shape_file "${shape}"
    printf '%s\n' --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/wav.scp,speech,${audio_type}"
    printf '%s\n' --valid_shape_file "${ssl_stats_dir}/valid/speech_shape"
    if [ -n "${token_type}" ]; then
        printf '%s\n' --train_data_path_and_name_and_type "${src}/text,text,text"
        printf '%s\n' --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/text,text,text"
    fi
    if [ "${feats_normalize}" = global_mvn ]; then
        printf '%s\n' --normalize global_mvn --normalize_conf "stats_file=${ssl_stats_dir}/train/feats_stats.npz"
    fi
}
# Stage 5: the pseudo-label CLIs (each writes <dir>/text for the dirs, the token list, a report).
run_label_cli() {
    local sets=("${train_set}" "${valid_set}")
    if [ "${label_mode}" = import ]; then
        local src=(--hubert1_dir "${hubert1_dir}") d
        if [ -n "${hubert1_km_tag}" ]; then
            src=(--labels)
            for d in "${sets[@]}"; do src+=("${d}=${hubert1_dir}/dump/raw/${d}/text.km.${hubert1_km_tag}"); done
        fi
        ${python} -m espnet2.bin.import_hubert1_labels "${src[@]}" --sets "${sets[@]}" \
            --dump_dir "${data_feats}" --token_list "${hubert1_token_list}" --token_list_out "${token_list}" \
            --geometry "${km_geometry}"
    else
        ${python} -m espnet2.bin.make_pseudo_labels --train_dir "${data_feats}/${train_set}" \
            --sets "${data_feats}/${valid_set}" --feature "${km_feature}" --n_clusters "${n_clusters}" \
            --portion "${portion_km}" --km_dir "${km_dir}" --geometry "${km_geometry}" --fs "$(fs_hz)" --nj "${nj}" \
            --cmvn "${km_cmvn}" \
            ${km_model_file:+--model_file "${km_model_file}" --layer "${km_layer}"}
    fi
}
fs_hz() { ${python} -c "import humanfriendly; print(humanfriendly.parse_size('${fs}'))"; }

if begin_stage 1 "Data preparation: local/data.sh ${local_data_opts}"; then
    key="${local_data_opts} $(sum_of local/data.sh)"
    outputs=("data/${orig_train_set}/wav.scp" "data/${valid_set}/wav.scp")
    if ! is_done data/.stage1.done "${key}" "${outputs[@]}"; then
        # shellcheck disable=SC2086
        local/data.sh ${local_data_opts}
        mark_done data/.stage1.done "${key}" "${outputs[@]}"
    fi
    end_stage 1
fi

if [ -n "${speed_perturb_factors}" ] && begin_stage 2 "Speed perturbation: data/${orig_train_set} -> data/${train_set}"; then
    key="${speed_perturb_factors} $(sum_of "data/${orig_train_set}"/*)"
    if ! is_done "data/${train_set}/.done" "${key}" "data/${train_set}/wav.scp"; then
        ${python} -m espnet2.bin.perturb_speed --factors "${speed_perturb_factors}" "data/${orig_train_set}" "data/${train_set}"
        mark_done "data/${train_set}/.done" "${key}" "data/${train_set}/wav.scp"
    fi
    end_stage 2
fi

if begin_stage 3 "Format audio (${fs}, ${audio_format}): data/<set> -> ${data_feats}/org/<set>"; then
    for dset in ${all_sets}; do
        key="${fs} ${audio_format} $(sum_of "data/${dset}"/*)"
        is_done "${data_feats}/org/${dset}/.done" "${key}" "${data_feats}/org/${dset}/wav.scp" && continue
        ${python} -m espnet2.bin.format_wav_scp --nj "${nj}" --cmd "${train_cmd}" --fs "${fs}" \
            --audio_format "${audio_format}" "data/${dset}" "${data_feats}/org/${dset}"
        mark_done "${data_feats}/org/${dset}/.done" "${key}" "${data_feats}/org/${dset}/wav.scp"
    done
    end_stage 3
fi

if begin_stage 4 "Remove utterances outside (${min_wav_duration}, ${max_wav_duration}) s"; then
    for dset in ${all_sets}; do
        key="${min_wav_duration} ${max_wav_duration} ${fs} $(sum_of "${data_feats}/org/${dset}/.done")"
        is_done "${data_feats}/${dset}/.done" "${key}" "${data_feats}/${dset}/wav.scp" && continue
        ${python} -m espnet2.bin.filter_data_dir --fs "${fs}" --min_wav_duration "${min_wav_duration}" \
            --max_wav_duration "${max_wav_duration}" "${data_feats}/org/${dset}" "${data_feats}/${dset}"
        mark_done "${data_feats}/${dset}/.done" "${key}" "${data_feats}/${dset}/wav.scp"
    done
    end_stage 4
fi

if [ "${label_mode}" != none ] && begin_stage 5 "Pseudo-labels (${label_mode}) -> ${km_dir}"; then
    key="${label_mode} ${hubert1_dir} ${hubert1_km_tag} ${n_clusters} ${portion_km} ${km_feature} ${km_model_file} ${km_layer} ${km_geometry} ${km_cmvn} $(sum_of "${data_feats}/${train_set}/.done" "${data_feats}/${valid_set}/.done")"
    outputs=("${data_feats}/${train_set}/text" "${data_feats}/${valid_set}/text" "${token_list}")
    if ! is_done "${km_dir}/.done" "${key}" "${outputs[@]}"; then
        run_label_cli
        mark_done "${km_dir}/.done" "${key}" "${outputs[@]}"
    fi
    end_stage 5
fi

# Stage 6 is shared by every config: only global MVN stats depend on the config's frontend.
if begin_stage 6 "Shapes/stats: ${ssl_stats_dir}"; then
    key="${token_type} ${token_list} ${fs} ${feats_normalize} ${feats_normalize:+${train_config}} $(sum_of "${data_feats}/${train_set}"/{wav.scp,text} "${data_feats}/${valid_set}"/{wav.scp,text})"
    if ! is_done "${ssl_stats_dir}/.done" "${key}" "${ssl_stats_dir}"/{train,valid}/speech_shape; then
        # shellcheck disable=SC2046,SC2086
        ${python} -m espnet2.bin.collect_stats --cmd "${train_cmd}" --nj "${nj}" --output_dir "${ssl_stats_dir}" \
            --train_dir "${data_feats}/${train_set}" --valid_dir "${data_feats}/${valid_set}" \
            $([ -n "${token_type}" ] && echo --with_text) $([ "${feats_normalize}" = global_mvn ] && echo --sum_stats) \
            -- $(train_opts) ${ssl_args}
        mark_done "${ssl_stats_dir}/.done" "${key}" "${ssl_stats_dir}"/{train,valid}/speech_shape
    fi
    split=${ssl_stats_dir}/splits${num_splits_ssl}
    if [ "${num_splits_ssl}" -gt 1 ] && ! is_done "${split}/.done" "${key}" "${split}/speech_shape/num_splits"; then
        # shellcheck disable=SC2046
        ${python} -m espnet2.bin.split_scps --num_splits "${num_splits_ssl}" --output_dir "${split}" --scps "${data_feats}/${train_set}/wav.scp" \
            $([ -n "${token_type}" ] && echo "${data_feats}/${train_set}/text") "${ssl_stats_dir}/train/speech_shape"
        mark_done "${split}/.done" "${key}" "${split}/speech_shape/num_splits"
    fi
    end_stage 6
fi

if begin_stage 7 "Training: ${ssl_exp} (ngpu=${ngpu}, num_nodes=${num_nodes})"; then
    key="$(train_opts | tr '\n' ' ') ${ssl_args} $(sum_of "${ssl_stats_dir}"/{train,valid}/speech_shape "${data_feats}/${train_set}/text")"
    if ! is_done "${ssl_exp}/.done" "${key}" "${ssl_exp}/config.yaml"; then
        write_replay "${ssl_exp}/run.sh" 7
        # shellcheck disable=SC2046,SC2086
        ${python} -m espnet2.bin.launch --cmd "${cuda_cmd}" --log "${ssl_exp}/train.log" --ngpu "${ngpu}" \
            --num_nodes "${num_nodes}" ${node_rank:+--node_rank "${node_rank}"} ${master_addr:+--master_addr "${master_addr}"} \
            --master_port "${master_port}" --python "${python}" -- -m espnet2.bin.ssl_train $(train_opts) $(data_opts) \
            --resume true --fold_length $((speech_fold_length * 100)) --fold_length "${text_fold_length}" \
            --output_dir "${ssl_exp}" ${ssl_args}
        mark_done "${ssl_exp}/.done" "${key}" "${ssl_exp}/config.yaml"
    fi
    end_stage 7
fi

if [ -n "${test_sets}" ] && begin_stage 8 "Evaluate (frozen-feature probe): ${ssl_exp}/probe"; then
    probe_test=${test_sets%% *}
    key="${probe_opts} ${inference_ssl_model} $(sum_of "${ssl_exp}/.done" "data/${probe_train}/text" "data/${probe_test}/text")"
    if ! is_done "${ssl_exp}/probe/.done" "${key}" "${ssl_exp}/probe/probe.json"; then
        # shellcheck disable=SC2086
        ${python} -m espnet2.bin.ssl_probe --exp_dir "${ssl_exp}" --model_file "${inference_ssl_model}" \
            --train_dir "${data_feats}/${probe_train}" --train_labels "data/${probe_train}/text" \
            --test_dir "${data_feats}/${probe_test}" --test_labels "data/${probe_test}/text" \
            --output_dir "${ssl_exp}/probe" --fs "$(fs_hz)" ${probe_opts}
        mark_done "${ssl_exp}/probe/.done" "${key}" "${ssl_exp}/probe/probe.json"
    fi
    end_stage 8
fi

if begin_stage 9 "Pack: ${ssl_exp}/${ssl_exp##*/}_${inference_ssl_model%.*}.zip"; then
    packed=${ssl_exp}/${ssl_exp##*/}_${inference_ssl_model%.*}.zip
    # shellcheck disable=SC2046
    ${python} -m espnet2.bin.pack_ssl --exp_dir "${ssl_exp}" --model_file "${inference_ssl_model}" \
        $([ -f "${km_dir}/km_${n_clusters}.npy" ] && echo --kmeans_model "${km_dir}/km_${n_clusters}.npy") \
        $([ -f "${ssl_exp}/probe/probe.json" ] && echo --option "${ssl_exp}/probe/probe.json") --outpath "${packed}"
    end_stage 9
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
