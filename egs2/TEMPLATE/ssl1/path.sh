#!/usr/bin/env bash
# Environment for the recipes: the project's venv (installed on first use). OMP_NUM_THREADS=1 keeps
# the parallel data jobs (--nj) from oversubscribing; ssl_train picks its own torch threads.
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)
export MAIN_ROOT
venv=${ESPNET_SSL_VENV:-${MAIN_ROOT}/tools/venv}
if [ ! -x "${venv}/bin/python" ]; then
    "${MAIN_ROOT}/tools/install.sh"
fi
# shellcheck disable=SC1091
. "${venv}/bin/activate"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export PYTHONPATH=${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}
export PYTHONIOENCODING=UTF-8
export LC_ALL=C
