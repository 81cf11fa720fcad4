#!/usr/bin/env bash
# Job backends (Kaldi/ESPnet cmd.sh): every stage runs its parallel jobs through ${train_cmd}
# and training through ${cuda_cmd} (with --gpu N, and --num_nodes M for multi-node).
#   local: parallel processes on this machine (espnet2.bin.run_jobs), one log per job
#   slurm: sbatch --wait (job arrays for JOB=1:N); options in conf/slurm.conf; multi-node
#          training runs one srun task per GPU on every node
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        export train_cmd="python3 -m espnet2.bin.run_jobs"
        export cuda_cmd="python3 -m espnet2.bin.run_jobs"
        export decode_cmd="python3 -m espnet2.bin.run_jobs"
        ;;
    slurm)
        export train_cmd="python3 -m espnet2.bin.run_jobs --backend slurm --config conf/slurm.conf"
        export cuda_cmd="python3 -m espnet2.bin.run_jobs --backend slurm --config conf/slurm.conf"
        export decode_cmd="python3 -m espnet2.bin.run_jobs --backend slurm --config conf/slurm.conf"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend=${cmd_backend}; use local or slurm" >&2
        return 1
        ;;
esac
