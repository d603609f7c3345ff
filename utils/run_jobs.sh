#!/usr/bin/env bash
# Runs a command as jobs 1..N, each with its own log; fails when any job fails.
#
# Usage: run_jobs.sh [--max-jobs-run N] JOB=1:N|JOB=2,5,.. <log> <command ...>
#  e.g.: run_jobs.sh JOB=1:4 data/train/log/make_fbank.JOB.log \
#          python steps/compute_fbank.py data/train/split4/JOB fbank/train.JOB.ark
# JOB=2,5 runs only those jobs (a rerun of the unfinished ones). Every 'JOB' in the log path and the command becomes the job's number. The log
# starts with the command line and ends with the exit status and the time taken.
# Exit status: 0 when every job succeeded, else 1 with the failed jobs' logs named.
set -uo pipefail

max_jobs_run=0     # 0: all jobs at once
while [ $# -gt 0 ]; do
  case "$1" in
    --max-jobs-run) max_jobs_run=$2; shift 2 ;;
    *) break ;;
  esac
done
if [ $# -ge 3 ] && [[ "$1" =~ ^JOB=([0-9]+):([0-9]+)$ ]]; then
  job_ids=$(seq "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")
elif [ $# -ge 3 ] && [[ "$1" =~ ^JOB=([0-9]+(,[0-9]+)*)$ ]]; then
  job_ids=${BASH_REMATCH[1]//,/ }
else
  echo "Usage: $0 [--max-jobs-run N] JOB=1:N|JOB=2,5,.. <log> <command ...>" >&2
  exit 1
fi
log_pattern=$2; shift 2
mkdir -p "$(dirname "$log_pattern")"

run_one() {
  local job=$1 log=${log_pattern//JOB/$1} args=() a start status
  shift
  for a in "$@"; do args+=("${a//JOB/$job}"); done
  start=$(date +%s)
  {
    echo "# ${args[*]}"
    echo "# started at $(date)"
  } > "$log"
  ( "${args[@]}" ) >> "$log" 2>&1
  status=$?
  echo "# finished at $(date) after $(( $(date +%s) - start )) s with exit status $status" >> "$log"
  return $status
}

declare -A pids=()
failed=()
wait_for() {  # waits for one job; remembers it if it failed
  local job=$1
  wait "${pids[$job]}" || failed+=("$job")
  unset "pids[$job]"
}
num_jobs=0
for job in $job_ids; do
  num_jobs=$((num_jobs + 1))
  if [ "$max_jobs_run" -gt 0 ]; then
    while [ "${#pids[@]}" -ge "$max_jobs_run" ]; do
      wait -n 2>/dev/null
      for j in "${!pids[@]}"; do
        kill -0 "${pids[$j]}" 2>/dev/null || wait_for "$j"
      done
    done
  fi
  run_one "$job" "$@" &
  pids[$job]=$!
done
for j in "${!pids[@]}"; do wait_for "$j"; done

if [ ${#failed[@]} -gt 0 ]; then
  echo "$(basename "$0"): ${#failed[@]} of $num_jobs jobs failed; see:" >&2
  for j in $(printf '%s\n' "${failed[@]}" | sort -n); do
    echo "  ${log_pattern//JOB/$j}" >&2
    tail -n 5 "${log_pattern//JOB/$j}" | sed 's/^/    | /' >&2
  done
  exit 1
fi
exit 0
