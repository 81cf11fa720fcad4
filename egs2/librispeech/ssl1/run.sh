#!/usr/bin/env bash
# LibriSpeech 960 h pre-training. model=hubert (default): HuBERT Base iteration 1 (MFCC km100
# labels made here), then iteration 2 (layer-6 km500 of iteration 1). model=dinosr: DinoSR Base.
# model=hubert_import: ESPnet's published train_hubert.yaml on hubert1's km500 labels.
#   [model=dinosr] ./run.sh [--download_dir downloads] [any ssl.sh option, e.g. --ngpu 8]
set -euo pipefail
model=${model:-hubert}
download=(--local_data_opts "--root downloads/LibriSpeech --download_dir downloads")
common=(--train_set train_960 --valid_set dev --nj 32 --ngpu 4 --max_wav_duration 30 "${download[@]}")
it1=conf/tuning/train_hubert_base_it1.yaml

case "${model}" in
hubert)
    ./ssl.sh "${common[@]}" --label_mode generate --km_feature mfcc --n_clusters 100 \
        --portion_km 0.1 --train_config "${it1}" "$@"
    ./ssl.sh "${common[@]}" --stage 5 --label_mode generate --km_feature model --km_layer 6 \
        --km_model_file "exp/ssl_$(basename "${it1}" .yaml)_raw/valid.total_count.ave.pth" \
        --n_clusters 500 --portion_km 0.1 --train_config conf/tuning/train_hubert_base_it2.yaml "$@" ;;
dinosr)
    ./ssl.sh "${common[@]}" --label_mode none --train_config conf/tuning/train_dinosr_base.yaml "$@" ;;
hubert_import)
    ./ssl.sh "${common[@]}" --label_mode import --hubert1_dir ../hubert1 \
        --hubert1_km_tag kmeans_iter1_hubert_train_960_portion0.1 \
        --hubert1_token_list ../hubert1/data/en_token_list_kmeans_iter1_hubert_500clusters/word/tokens.txt \
        --train_config conf/tuning/train_hubert.yaml "$@" ;;
*) echo "model=${model}: choose hubert, dinosr or hubert_import" >&2; exit 1 ;;
esac
