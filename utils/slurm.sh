#!/usr/bin/env bash
# A job runner for Slurm with the calling convention of run_jobs.sh and Kaldi's
# run.pl: submits jobs A..B as one sbatch job array, waits for it, and checks
# every task's exit status (a task that never wrote one, e.g. killed for its time
# limit or memory, counts as failed).
#
# Usage: slurm.sh [options] JOB=A:B|JOB=A <log-with-JOB> <command ...>
#  e.g.: slurm.sh --mem 4G --time 1:00:00 JOB=1:8 data/train/log/make_fbank.JOB.log \
#          steps/compute_fbank.py data/train/split8/JOB fbank/train/raw_fbank.JOB.ark
# Options (Kaldi's names, turned into sbatch's):
#   --max-jobs-run N   at most N tasks at a time (--array=A-B%N)
#   --mem SIZE         --mem=SIZE per task
#   --num-threads N    --cpus-per-task=N
#   --gpu N            --gres=gpu:N
#   --time T           --time=T
# and PURL_SBATCH_OPTS, e.g. "--partition=cpu --account=me", for anything else.
# The tasks run in this directory with this environment (sbatch's --export=ALL).
# Exit status: 0 when every task succeeded, else 1 with the failed tasks' logs named.
set -uo pipefail

sbatch_opts=()
throttle=""
while [ $# -gt 0 ]; do
  case "$1" in
    --max-jobs-run) throttle="%$2"; shift 2 ;;
    --mem) sbatch_opts+=("--mem=$2"); shift 2 ;;
    --num-threads) sbatch_opts+=("--cpus-per-task=$2"); shift 2 ;;
    --gpu) [ "$2" = 0 ] || sbatch_opts+=("--gres=gpu:$2"); shift 2 ;;
    --time) sbatch_opts+=("--time=$2"); shift 2 ;;
    --*) echo "$0: unknown option $1 (known: --max-jobs-run --mem --num-threads --gpu --time)" >&2; exit 1 ;;
    *) break ;;
  esac
done
if [ $# -ge 3 ] && [[ "$1" =~ ^JOB=([0-9]+):([0-9]+)$ ]]; then
  first=${BASH_REMATCH[1]}; last=${BASH_REMATCH[2]}
elif [ $# -ge 3 ] && [[ "$1" =~ ^JOB=([0-9]+)$ ]]; then
  first=${BASH_REMATCH[1]}; last=$first
else
  echo "Usage: $0 [options] JOB=A:B <log-with-JOB> <command ...>" >&2
  exit 1
fi
command -v sbatch > /dev/null || { echo "$0: sbatch not found: this runner needs Slurm (use run_jobs.sh on one machine)" >&2; exit 1; }
log_pattern=$2; shift 2
log_dir=$(dirname "$log_pattern")
mkdir -p "$log_dir/q"
# The task script: the command with JOB replaced by the task id, its output
# and exit status in the task's log.
script=$log_dir/q/$(basename "${log_pattern//JOB/array}").sh
{
  echo "#!/usr/bin/env bash"
  echo "cd $(printf '%q' "$PWD")"
  echo "job=\$SLURM_ARRAY_TASK_ID"
  printf 'log=%q\n' "$log_pattern"
  echo 'log=${log//JOB/$job}'
  printf 'args=('; for a in "$@"; do printf '%q ' "$a"; done; echo ')'
  echo 'args=("${args[@]//JOB/$job}")'
  echo '{ echo "# ${args[*]}"; echo "# started at $(date) on $(hostname) (Slurm job ${SLURM_ARRAY_JOB_ID}_${job})"; } > "$log"'
  echo 'start=$(date +%s)'
  echo '"${args[@]}" >> "$log" 2>&1'
  echo 'status=$?'
  echo 'echo "# finished at $(date) after $(( $(date +%s) - start )) s with exit status $status" >> "$log"'
  echo 'exit $status'
} > "$script"
for job in $(seq "$first" "$last"); do rm -f "${log_pattern//JOB/$job}"; done
# shellcheck disable=SC2086
sbatch --wait --parsable --array="$first-$last$throttle" --export=ALL --job-name="$(basename "$script" .sh)" \
  --output=/dev/null "${sbatch_opts[@]}" ${PURL_SBATCH_OPTS:-} "$script" > "$log_dir/q/sbatch.out" 2>&1
sbatch_status=$?

failed=()
for job in $(seq "$first" "$last"); do
  log=${log_pattern//JOB/$job}
  grep -q "with exit status 0$" "$log" 2>/dev/null || failed+=("$job")
done
if [ ${#failed[@]} -gt 0 ] || [ $sbatch_status -ne 0 ]; then
  echo "$(basename "$0"): ${#failed[@]} of $((last - first + 1)) jobs failed (sbatch said: $(tail -n 1 "$log_dir/q/sbatch.out")); see:" >&2
  for j in "${failed[@]}"; do
    log=${log_pattern//JOB/$j}
    echo "  $log" >&2
    if [ -f "$log" ]; then tail -n 5 "$log" | sed 's/^/    | /' >&2; else echo "    | (no log: the task never ran or was killed; see sacct)" >&2; fi
  done
  exit 1
fi
exit 0
