#!/usr/bin/env bash
# System packages the test suite uses beyond Python: Slurm (slurmctld, slurmd, sbatch, srun) for
# the real-Slurm backend test. Idempotent; needs root and apt-get, else says what to install.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "install_system_test_deps: Slurm is missing; install Debian's slurm-wlm as root" \
         "(the Slurm backend test is skipped without it)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq slurm-wlm >/dev/null
echo "install_system_test_deps: installed slurm-wlm" >&2
