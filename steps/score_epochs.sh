#!/usr/bin/env bash
# Stage 6 for every epoch of a run, as the original work's test scripts score
# epochs 200-229 of its PURL runs: each checkpoint <exp-dir>/models/epoch_<N>.pt
# of --epochs A:B (both included) embeds <test-dir> into
# <exp-dir>/embeddings/<test>_epoch<N>/ and is scored with the plain cosine into
# <exp-dir>/scores_epochs/epoch_<N>/ (steps/score.py: results.json, results.md,
# ...); then steps/epoch_results.py writes <exp-dir>/scores_epochs/results.md,
# results.csv and eer.png over the epochs. An epoch without its checkpoint
# (training prunes them: keep them with train.keep_epochs) is named and
# skipped. A rerun skips what is complete, as the two steps do.
set -euo pipefail
[ -n "${PURL_ROOT:-}" ] || . "$(dirname "$(readlink -f "$0")")/../path.sh"  # called outside a recipe
echo "$0 $*"

epochs=""         # A:B, e.g. 201:230 (this project's epoch N: the original's epoch=N-1)
nj=4
cmd=run_jobs.sh   # job runner: run_jobs.sh, slurm.sh, or Kaldi's run.pl/queue.pl/slurm.pl
gpus=""           # e.g. "0,1"; "" runs on the CPU
help_message="Usage: $0 [options] --epochs A:B <exp-dir> <test-data-dir> <trials> [<trials> ...]
 e.g.: $0 --epochs 201:230 --gpus 0,1 exp/ecapa_purl_noisy0_seed0 data/vox1 data/vox1/trials_vox1_O
Options:
  --epochs A:B       the epochs to score, both included (\"$epochs\")
  --nj N             parallel jobs for the embeddings ($nj)
  --cmd CMD          job runner ($cmd)
  --gpus LIST        GPUs for the jobs (\"$gpus\": CPU)"

. parse_options.sh
[ $# -ge 3 ] || { echo "$help_message" >&2; exit 1; }
exp=$1; data=$2; shift 2
script=$(basename "$0")
steps=$(dirname "$0")
[[ $epochs =~ ^([0-9]+):([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -le "${BASH_REMATCH[2]}" ] || {
  echo "$script: --epochs '$epochs': give A:B with A <= B, e.g. 201:230" >&2; exit 1; }
first=${BASH_REMATCH[1]}; last=${BASH_REMATCH[2]}

missing=()
for n in $(seq "$first" "$last"); do
  ckpt=$exp/models/epoch_$n.pt
  if [ ! -f "$ckpt" ]; then missing+=("$n"); continue; fi
  emb=$exp/embeddings/$(basename "$data")_epoch$n
  "$steps/extract_embeddings.sh" --nj "$nj" --cmd "$cmd" --gpus "$gpus" "$ckpt" "$data" "$emb"
  "$steps/score.py" "$emb/xvector.scp" "$exp/scores_epochs/epoch_$n" "$@" > /dev/null
done
if [ ${#missing[@]} -eq $((last - first + 1)) ]; then
  echo "$script: $exp/models has none of epoch_$first.pt ... epoch_$last.pt; nothing to score" >&2
  exit 1
fi
[ ${#missing[@]} -eq 0 ] || echo "$script: $exp/models has no epoch_N.pt for N = ${missing[*]}; those epochs are not scored" \
  "(the run pruned them: train.keep_epochs keeps them)" >&2
"$steps/epoch_results.py" "$exp"
