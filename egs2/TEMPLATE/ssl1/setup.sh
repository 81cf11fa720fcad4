#!/usr/bin/env bash
# Create a new ssl1 recipe dir: ./setup.sh ../../<corpus>/ssl1
# Copies conf/ (and local/ when present); links ssl.sh, path.sh, cmd.sh and scripts/.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "Usage: $0 <new recipe dir, e.g. ../../mycorpus/ssl1>" >&2
    exit 1
fi
dir=$1
template=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -e "${dir}" ]; then
    echo "$0: ${dir} already exists; choose a new directory" >&2
    exit 1
fi
mkdir -p "${dir}"
dir=$(cd "${dir}" && pwd)
rel=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "${template}" "${dir}")
cp -r "${template}/conf" "${dir}/conf"
if [ -d "${template}/local" ]; then
    cp -r "${template}/local" "${dir}/local"
else
    mkdir -p "${dir}/local"
fi
for f in ssl.sh path.sh cmd.sh scripts; do
    ln -s "${rel}/${f}" "${dir}/${f}"
done
echo "Created ${dir}: write local/data.sh and run.sh (see egs2/fsdd/ssl1 for an example)"
