#!/usr/bin/env bash
# Stage 6 (and 4): embeddings of every utterance of a data dir, in nj jobs (a GPU
# per job, round-robin over --gpus), into <out-dir>/xvector.{ark,scp} plus the
# mean vector (mean.vec) of the set. Skipped when xvector.scp is newer than the
# checkpoint and the features; a rerun redoes only unfinished jobs.
set -euo pipefail

nj=4
cmd=run_jobs.sh
gpus=""           # e.g. "0,1"; "" runs on the CPU
num_crops=0       # 0: whole utterances; N: the mean of N crops of --crop-frames
crop_frames=300
random_crop_seed=""   # with --num-crops 1: one crop at a random start drawn from this seed and the utterance id
help_message="Usage: $0 [options] <checkpoint> <data-dir> <out-dir>
 e.g.: $0 --nj 8 --gpus 0,1,2,3 exp/ecapa/models/final.pt data/vox1 exp/ecapa/embeddings/vox1
Options:
  --nj N             parallel jobs ($nj)
  --cmd CMD          job runner ($cmd)
  --gpus LIST        GPUs for the jobs (\"$gpus\": CPU)
  --num-crops N      ($num_crops)
  --crop-frames N    ($crop_frames)
  --random-crop-seed S  one random crop per utterance (with --num-crops 1; \"$random_crop_seed\": evenly spaced crops)"

. parse_options.sh
[ $# -eq 3 ] || { echo "$help_message" >&2; exit 1; }
checkpoint=$1; data=$2; out=$3
script=$(basename "$0")

[ -f "$checkpoint" ] || { echo "$script: $checkpoint: no such checkpoint (train the model first)" >&2; exit 1; }
[ -f "$data/feats.scp" ] || { echo "$script: $data/feats.scp missing (run stage 1 for $data)" >&2; exit 1; }
if [ -f "$out/xvector.scp" ] && [ "$out/xvector.scp" -nt "$checkpoint" ] && [ "$out/xvector.scp" -nt "$data/feats.scp" ]; then
  echo "$script: $out/xvector.scp is complete; skipping"
  exit 0
fi
mkdir -p "$out/log"
out=$(cd "$out" && pwd)
num_utts=$(wc -l < "$data/feats.scp")
[ "$nj" -le "$num_utts" ] || nj=$num_utts
split_data_dir.py "$data" "$nj" > /dev/null
todo=()
for n in $(seq "$nj"); do
  scp=$out/xvector.$n.scp
  if [ ! -f "$scp" ] || [ "$checkpoint" -nt "$scp" ] || [ "$data/split$nj/$n/feats.scp" -nt "$scp" ]; then todo+=("$n"); fi
done
echo "$script: $data: $num_utts utterances in $nj jobs (${#todo[@]} to run); logs in $out/log/"
if [ ${#todo[@]} -gt 0 ]; then
  job_list=$(IFS=,; echo "${todo[*]}")
  OMP_NUM_THREADS=1 $cmd "JOB=$job_list" "$out/log/extract.JOB.log" \
    "$(dirname "$0")/extract_embeddings.py" --gpus "$gpus" --job JOB --num-crops "$num_crops" \
      --crop-frames "$crop_frames" ${random_crop_seed:+--random-crop-seed "$random_crop_seed"} "$checkpoint" "$data/split$nj/JOB" "$out/xvector.JOB.ark" || {
    echo "$script: embedding extraction failed for $data (logs above); rerun to redo the failed jobs" >&2
    exit 1
  }
fi
for n in $(seq "$nj"); do cat "$out/xvector.$n.scp"; done | sort > "$out/xvector.scp.tmp"
"$(dirname "$0")/embedding_mean.py" "$out/xvector.scp.tmp" "$out/mean.vec"
mv "$out/xvector.scp.tmp" "$out/xvector.scp"
echo "$script: wrote $out/xvector.scp ($(wc -l < "$out/xvector.scp") embeddings)"
