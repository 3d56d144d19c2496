#!/bin/bash
# One node's launcher, started by srun on every node of the job (train.sbatch, train_multinode.sbatch):
#
#   node_launch.sh [accelerate launch options] train.py --config CONFIG [key=value ...]
#
# Slurm delivers its signals (--signal=USR1@120, SIGTERM) to every process of the job step. The
# trainer processes turn them into "finish the step, checkpoint, exit 75" (train.py); the launcher
# must outlive them, but SIGUSR1's default action would kill it at once, workers included. So this
# script ignores both signals and execs the launcher, which keeps them ignored (an ignored signal stays
# ignored across exec); train.py installs its own handlers. torchrun re-installs one for SIGTERM that
# stops the workers after 30 s, which is why the cluster scripts ask for SIGUSR1 well ahead.
trap '' USR1 TERM
exec accelerate launch --num_machines "${SLURM_NNODES:-1}" --machine_rank "${SLURM_NODEID:-0}" "$@"
