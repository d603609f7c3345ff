#!/usr/bin/env bash
# Stage 6 (and 4): embeddings of every utterance of a data dir, in nj jobs (a GPU
# per job, round-robin over --gpus), into <out-dir>/xvector.{ark,scp} plus the
# mean vector (mean.vec) of the set and xvector.settings: the checkpoint, the
# crop options and the features they were made from. A rerun skips the dir only
# when those are the same, and redoes only the jobs whose own record differs.
# The data dir is only read (it may be read-only): its split is <out-dir>/split<nj>/.
set -euo pipefail
[ -n "${PURL_ROOT:-}" ] || . "$(dirname "$(readlink -f "$0")")/../path.sh"  # called outside a recipe

nj=4
cmd=run_jobs.sh   # job runner: run_jobs.sh, slurm.sh, or Kaldi's run.pl/queue.pl/slurm.pl
gpus=""           # e.g. "0,1"; "" runs on the CPU
num_crops=0       # 0: whole utterances; N: the mean of N crops of --crop-frames
crop_frames=300
normalise=utterance  # crops normalised over their utterance, or (crop) each over itself: the original's stage 4
random_crop_seed=""   # with --num-crops 1: one crop at a random start drawn from this seed and the utterance id
help_message="Usage: $0 [options] <checkpoint> <data-dir> <out-dir>
 e.g.: $0 --nj 8 --gpus 0,1,2,3 exp/ecapa/models/final.pt data/vox1 exp/ecapa/embeddings/vox1
Options:
  --nj N             parallel jobs ($nj)
  --cmd CMD          job runner ($cmd)
  --gpus LIST        GPUs for the jobs (\"$gpus\": CPU)
  --num-crops N      ($num_crops)
  --crop-frames N    ($crop_frames)
  --normalise W      utterance or crop ($normalise)
  --random-crop-seed S  one random crop per utterance (with --num-crops 1; \"$random_crop_seed\": evenly spaced crops)"

. parse_options.sh
[ $# -eq 3 ] || { echo "$help_message" >&2; exit 1; }
checkpoint=$1; data=$2; out=$3
script=$(basename "$0")
steps=$(dirname "$0")
opts=(--num-crops "$num_crops" --crop-frames "$crop_frames" ${random_crop_seed:+--random-crop-seed "$random_crop_seed"}
      --normalise "$normalise")

declare -A plan=()
while read -r key value; do plan[$key]=$value; done < <("$steps/embedding_jobs.py" "${opts[@]}" "$checkpoint" "$data" "$out" "$nj" || echo "failed 1")
[ -z "${plan[failed]:-}" ] || exit 1
nj=${plan[nj]}
if [ "${plan[status]}" = complete ]; then
  echo "$script: $out/xvector.scp is complete; skipping"
  exit 0
fi
read -r -a todo <<< "${plan[todo]:-}"
mkdir -p "$out/log"
out=$(cd "$out" && pwd)
echo "$script: $data: $(wc -l < "$data/feats.scp") utterances in $nj jobs (${#todo[@]} to run); logs in $out/log/"
if [ ${#todo[@]} -gt 0 ]; then
  OMP_NUM_THREADS=1 run_job_ids.sh "$cmd" "${todo[*]}" "$out/log/extract.JOB.log" \
    "$steps/extract_embeddings.py" --gpus "$gpus" --job JOB "${opts[@]}" \
      "$checkpoint" "$out/split$nj/JOB" "$out/xvector.JOB.ark" || {
    echo "$script: embedding extraction failed for $data (logs above, in $out/log); rerun to redo the failed jobs" >&2
    exit 1
  }
fi
"$steps/merge_embeddings.py" "${opts[@]}" "$checkpoint" "$data" "$out" "$nj"
