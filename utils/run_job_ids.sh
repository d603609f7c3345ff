#!/usr/bin/env bash
# Runs some of a step's jobs through a job runner that takes Kaldi's JOB=A:B
# ranges: ours (run_jobs.sh, slurm.sh) or your copy of Kaldi's run.pl,
# queue.pl or slurm.pl. The ids are grouped into contiguous ranges, one runner
# call each, all at once; every call's exit status is checked.
#
# Usage: run_job_ids.sh <cmd> "<job ids>" <log-with-JOB> <command ...>
#  e.g.: run_job_ids.sh "run.pl --max-jobs-run 4" "1 2 5" exp/log/x.JOB.log steps/x.py JOB
# Exit status: 0 when every job succeeded, else 1 (the runners name the failed logs).
set -uo pipefail

[ $# -ge 4 ] || { echo "Usage: $0 <cmd> \"<job ids>\" <log-with-JOB> <command ...>" >&2; exit 1; }
cmd=$1; ids=$2; log=$3; shift 3
read -r -a runner <<< "$cmd"  # a runner with its own options: "queue.pl --mem 2G"
[ ${#runner[@]} -gt 0 ] || { echo "$0: empty job runner (set --cmd)" >&2; exit 1; }

ranges=()
start=""; prev=""
for id in $(printf '%s\n' $ids | sort -n); do
  if [ -n "$prev" ] && [ "$id" -eq $((prev + 1)) ]; then prev=$id; continue; fi
  [ -z "$start" ] || ranges+=("$start:$prev")
  start=$id; prev=$id
done
[ -z "$start" ] || ranges+=("$start:$prev")

pids=()
for range in "${ranges[@]}"; do
  "${runner[@]}" "JOB=$range" "$log" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
