# Sourced by train.sbatch and train_multinode.sbatch: run the training step so that a stop request
# ends in a checkpoint and a requeue, and a requeued job resumes (train.resume=auto).
#
#   out=$(run_dir CONFIG [key=value ...])       # validates the config, prints its output_dir
#   run_preemptible "$out" srun ... scripts/slurm/node_launch.sh ... train.py --config CONFIG ...
#
# Signals: Slurm sends --signal=USR1@120 (and SIGTERM at the end) to every process of the job step,
# where the trainers handle them. A signal that reaches only this batch shell (scancel --signal=USR1
# --batch JOBID, --signal=B:USR1@...) is passed on to the step with scancel.
# Exit: `accelerate launch` turns any worker's failure into exit code 1, so the trainer's own code is
# read from OUTPUT_DIR/exit_code. 75 (stopped on request, checkpoint written) requeues the job;
# anything else ends the job with that code.

EXIT_PREEMPTED=75

run_dir() {
  python -c 'import sys; from amh.config import load_config; print(load_config(sys.argv[1], sys.argv[2:]).output_dir)' "$@"
}

_forward_signal() {
  _interrupted=1
  echo "[$(date +%T)] SIG$1 received: asking the trainer to finish its step, write a checkpoint and stop"
  scancel --signal="$1" "$SLURM_JOB_ID"
}

run_preemptible() {
  local out=$1 step code
  shift
  rm -f "$out/exit_code"
  trap '_forward_signal USR1' USR1
  trap '_forward_signal TERM' TERM
  "$@" &
  step=$!
  while :; do  # `wait` returns early when a trapped signal arrives; wait again for the real exit
    _interrupted=0
    wait "$step" && code=0 || code=$?
    [ "$_interrupted" = 1 ] || break
  done
  trap - USR1 TERM
  if [ -f "$out/exit_code" ]; then
    code=$(cat "$out/exit_code")
  fi
  echo "[$(date +%T)] trainer exit code $code (job $SLURM_JOB_ID, restart ${SLURM_RESTART_COUNT:-0})"
  if [ "$code" = "$EXIT_PREEMPTED" ]; then
    echo "[$(date +%T)] checkpoint written on request: requeueing; the next run resumes from it"
    scontrol requeue "$SLURM_JOB_ID" || echo "scontrol requeue failed: resubmit with the same output_dir to resume"
  fi
  return "$code"
}
