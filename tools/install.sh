#!/usr/bin/env bash
# Create (or reuse) tools/venv and install this package into it, idempotently.
#   bash tools/install.sh          the package + its test extra (pytest, ruff, shellcheck)
#   bash tools/install.sh --test   also the system packages the test suite uses (Slurm daemons
#                                  for the real-Slurm backend test), via apt-get when root
# torch is installed first with an exact CPU-friendly pin so that the package's
# range (torch>=2.6,<3) is already satisfied and pip never pulls a CUDA build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${ESPNET_SSL_VENV:-${root}/tools/venv}
python=${PYTHON:-python3}
if [ "${1:-}" = --test ]; then
    bash "${root}/tools/install_system_test_deps.sh"
fi
torch_spec=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x "${venv}/bin/python" ]; then
    "${python}" -m venv "${venv}"
fi
# shellcheck disable=SC1091
. "${venv}/bin/activate"
stamp="${venv}/.espnet_ssl_installed"
want="$(cat "${root}/pyproject.toml" "${BASH_SOURCE[0]}" | cksum)"
if [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want}" ]; then
    exit 0  # already installed from this exact pyproject/install script
fi
python -m pip install --quiet --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install --quiet "${torch_spec}"
python -m pip install --quiet -e "${root}[test]"
echo "${want}" > "${stamp}"
echo "installed into ${venv}" >&2
