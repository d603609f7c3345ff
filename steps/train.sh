#!/usr/bin/env bash
# Stages 3 and 5: runs steps/train.py on the GPUs in --gpus (one torchrun process
# each), or on the CPU when --gpus is "". Several machines: set PURL_TORCHRUN_OPTS
# to torchrun's rendezvous options on every node, e.g.
#   PURL_TORCHRUN_OPTS="--nnodes=2 --node-rank=0 --rdzv-backend=c10d --rdzv-endpoint=node1:29400 --rdzv-id=purl"
# or, under Slurm, --slurm true: 'srun $PURL_SRUN_OPTS' starts one torchrun per
# node of the allocation (e.g. PURL_SRUN_OPTS="--nodes=2 --gres=gpu:4 --time=48:00:00"),
# which meet at the first node (c10d rendezvous, the Slurm job id as its id).
set -euo pipefail
[ -n "${PURL_ROOT:-}" ] || . "$(dirname "$(readlink -f "$0")")/../path.sh"  # called outside a recipe

gpus=""            # e.g. "0,1,2,3"; "" trains on the CPU
cpu_procs=1        # processes when training on the CPU (gloo; for tests and small runs)
valid_data=""      # a data dir with features and trials: held-out metrics each epoch
overrides=""       # config overrides, space-separated section.key=value
slurm=false        # true: srun one torchrun per node (PURL_SRUN_OPTS sets nodes, GPUs, time)
help_message="Usage: $0 [options] <config.yaml> <train-data-dir> <exp-dir>
 e.g.: $0 --gpus 0,1 --valid-data data/test conf/paper/ecapa_supcon.yaml data/train exp/ecapa_supcon
Options:
  --gpus LIST        GPUs, one process each (\"$gpus\": the CPU)
  --cpu-procs N      CPU processes when --gpus is empty ($cpu_procs)
  --valid-data DIR   held-out dir with trials ($valid_data)
  --overrides STR    e.g. \"optim.epochs=10 data.num_workers=2\"
  --slurm BOOL       srun one torchrun per node ($slurm)"

. parse_options.sh
[ $# -eq 3 ] || { echo "$help_message" >&2; exit 1; }
config=$1; data=$2; exp=$3

args=()
for o in $overrides; do args+=(--set "$o"); done
[ -z "$valid_data" ] || args+=(--valid-data "$valid_data")
[ -z "$gpus" ] || args+=(--gpus "$gpus")
mkdir -p "$exp/log"
log_file=$exp/log/train.log
train_py=$(dirname "$0")/train.py

if [ -n "$gpus" ]; then
  # a list torch cannot see would otherwise train on the CPU without a word
  "$(dirname "$0")/preflight.py" --gpus "$gpus" > /dev/null
  export CUDA_VISIBLE_DEVICES=$gpus
  nproc=$(echo "$gpus" | tr ',' '\n' | grep -c .)
else
  export CUDA_VISIBLE_DEVICES=""
  nproc=$cpu_procs
fi
echo "# $0 $*  (CUDA_VISIBLE_DEVICES='$CUDA_VISIBLE_DEVICES')" >> "$log_file"
if [ "$slurm" = true ]; then
  command -v srun > /dev/null || { echo "$0: --slurm true but srun is not on PATH" >&2; exit 1; }
  # The rendezvous options are evaluated on each node, inside the allocation.
  # shellcheck disable=SC2016,SC2086
  launcher=(srun --ntasks-per-node=1 --kill-on-bad-exit=1 ${PURL_SRUN_OPTS:-} bash -c
    'exec torchrun --nnodes="$SLURM_NNODES" --nproc-per-node="$0" --rdzv-backend=c10d --rdzv-id="$SLURM_JOB_ID" \
       --rdzv-endpoint="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):${PURL_RDZV_PORT:-29400}" "$@"'
    "$nproc")
elif [ "$nproc" -gt 1 ] || [ -n "${PURL_TORCHRUN_OPTS:-}" ]; then
  # shellcheck disable=SC2086
  launcher=(torchrun ${PURL_TORCHRUN_OPTS:---standalone} --nproc-per-node "$nproc")
else
  launcher=(python)
fi
"${launcher[@]}" "$train_py" "${args[@]}" "$config" "$data" "$exp" 2>&1 | tee -a "$log_file"
