#!/usr/bin/env bash
# The GPU check: stage 3 (SupCon pretraining, the VoxCeleb ECAPA-TDNN config) on
# the synthetic corpus on CUDA, --steps steps at 1 and at --nproc processes (DDP
# over NCCL), printing utterances/s and the peak memory of each process. With
# --device cpu, the same on the CPU over gloo (a check of the script itself).
# Run from the repository root:
#   bash bench/gpu_check.sh --nproc 8 --steps 300
#   bash bench/gpu_check.sh --device cpu --nproc 2 --steps 6 --overrides "data.speakers_per_batch=16 data.num_workers=0"
set -euo pipefail

nproc=""                  # processes of the second run ("": every GPU torch sees)
steps=300
device=cuda               # cuda, or cpu (gloo)
config=egs/voxceleb/conf/ecapa_supcon.yaml
overrides=""              # config overrides, e.g. "data.num_workers=8"
work=/tmp/purl_gpu_check  # corpus, features and runs
num_speakers=400          # >= data.speakers_per_batch (300 in the VoxCeleb configs)
utts_per_speaker=8
nj=8
help_message="Usage: $0 [options]
Options:
  --nproc N        processes of the second run (\"$nproc\": every GPU)
  --steps N        training steps per run ($steps)
  --device D       cuda or cpu ($device)
  --config FILE    ($config)
  --overrides STR  config overrides ($overrides)
  --work DIR       ($work)"

. ./path.sh
. utils/parse_options.sh
[ $# -eq 0 ] || { echo "$help_message" >&2; exit 1; }

if [ "$device" = cuda ]; then
  count=$(python -c "import torch; print(torch.cuda.device_count())")
  [ "$count" -gt 0 ] || { echo "$0: torch sees no CUDA device (use --device cpu to check the script)" >&2; exit 1; }
  nproc=${nproc:-$count}
  [ "$nproc" -le "$count" ] || { echo "$0: --nproc $nproc, but torch sees $count CUDA device(s)" >&2; exit 1; }
  gpu_list() { seq -s, 0 $(($1 - 1)); }
else
  nproc=${nproc:-2}
  gpu_list() { echo ""; }
fi

log "GPU check: corpus and features in $work"
if [ ! -f $work/data/train/feats.scp ]; then
  egs/mini/local/make_synthetic_corpus.py --num-speakers $num_speakers --utts-per-speaker $utts_per_speaker \
    --nj $nj $work/corpus
  local/prepare_folder_corpus.py $work/corpus $work/data/train
  steps/make_fbank.sh --nj $nj $work/data/train $work/data/train/log $work/fbank
fi
sets=()
for o in $overrides; do sets+=(--set "$o"); done
for n in $(printf "%s\n" 1 "$nproc" | uniq); do
  log "GPU check: $n process(es) on $device, $steps steps"
  rm -rf $work/exp_$n
  CUDA_VISIBLE_DEVICES=$(gpu_list $n) PYTHONWARNINGS=ignore::FutureWarning \
    torchrun --standalone --nproc-per-node $n bench/gpu_check.py \
    --steps $steps "${sets[@]+"${sets[@]}"}" $config $work/data/train $work/exp_$n
done
