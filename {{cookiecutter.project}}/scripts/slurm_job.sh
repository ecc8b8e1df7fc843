#!/bin/bash
# One training run with plain sbatch, for those who do not submit with `python train.py -m cluster=slurm`.
# Arguments are train.py overrides; resources come from the sbatch command line, ranks from the allocation:
#   sbatch scripts/slurm_job.sh experiment=cifar10_cnn                          # 1 task on a CPU partition
#   sbatch --partition=gpu --gpus-per-node=1 --cpus-per-task=8 scripts/slurm_job.sh trainer=gpu
#   sbatch --nodes=2 --ntasks-per-node=4 --gpus-per-node=4 --cpus-per-task=8 scripts/slurm_job.sh trainer=multinode
# srun starts one rank per task; every rank composes the config itself and they meet in one
# run folder, logs/train/runs/<job id>. Submit from the project folder.
#SBATCH --job-name=train
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=01:00:00
#SBATCH --output=slurm-%x-%j.out
# 120 s before the limit SLURM sends SIGUSR1 to the ranks; at the next step boundary they save
# hpc_ckpt_<n>.ckpt into the run folder together and rank 0 requeues the job, which resumes from
# it in the same folder (same job id). SIGTERM (scancel, pre-emption) saves the same checkpoint and
# stops (harness/preemption.py).
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append

set -euo pipefail
# Your site's setup, e.g.: module load cuda/12.4; source .venv/bin/activate

# Lightning checks that SLURM started num_nodes x devices ranks: one rank per task, and on a GPU
# allocation one task per GPU. Without GPUs the ranks train on the CPU, in full precision.
tasks_per_node="${SLURM_NTASKS_PER_NODE:-1}"
gpus_per_node="${SLURM_GPUS_ON_NODE:-0}"
accelerator=cpu
if ((gpus_per_node > 0)); then
  if ((gpus_per_node != tasks_per_node)); then
    echo "slurm_job.sh: ${gpus_per_node} GPUs but ${tasks_per_node} tasks per node; ask for one task per GPU:" \
      "sbatch --ntasks-per-node=${gpus_per_node} --gpus-per-node=${gpus_per_node} ..." >&2
    exit 2
  fi
  accelerator=gpu
fi
srun python train.py \
  trainer.accelerator="${accelerator}" \
  trainer.num_nodes="${SLURM_JOB_NUM_NODES}" \
  trainer.devices="${tasks_per_node}" \
  "$@"
