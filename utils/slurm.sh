#!/usr/bin/env bash
# run_jobs.sh through Slurm: each job runs as 'srun $PURL_SRUN_OPTS <command>'.
# Set it in a recipe with cmd=utils/slurm.sh and e.g.
#   export PURL_SRUN_OPTS="--partition=gpu --ntasks=1 --cpus-per-task=4 --time=4:00:00"
exec "$(dirname "$0")/run_jobs.sh" --launcher "srun ${PURL_SRUN_OPTS:---ntasks=1}" "$@"
