#!/bin/bash
# One training run with plain sbatch, for those who do not submit with `python train.py -m cluster=slurm`.
# Arguments are train.py overrides; the allocation sets the ranks:
#   sbatch scripts/slurm_job.sh experiment=cifar10_cnn
#   sbatch --nodes=2 --ntasks-per-node=4 --gpus-per-node=4 scripts/slurm_job.sh trainer=multinode
# srun starts one rank per task; every rank composes the config itself and they meet in one
# run folder, logs/train/runs/<job id>. Submit from the project folder.
#SBATCH --job-name=train
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=01:00:00
#SBATCH --output=slurm-%x-%j.out
# Requeue owned by Lightning: 120 s before the limit SLURM sends SIGUSR1 to the ranks; Lightning
# writes hpc_ckpt_<n>.ckpt into the run folder and requeues the job, which resumes from it in
# the same folder (same job id).
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append

set -euo pipefail
# Your site's setup, e.g.: module load cuda/12.4; source .venv/bin/activate

# Lightning checks that SLURM started num_nodes x devices ranks: take both from the allocation.
srun python train.py \
  trainer.num_nodes="${SLURM_JOB_NUM_NODES}" \
  trainer.devices="${SLURM_NTASKS_PER_NODE:-1}" \
  "$@"
