#!/usr/bin/env bash
# The GPU check: one short run on a GPU machine that says which settings to make
# CUDA's defaults, and that stage 3 trains there. Two parts, in this order:
#   models: each encoder the recipes train (ECAPA-TDNN C=256; the thin ResNet-34
#           in the original layout and in the clova one) with bf16 autocast and
#           torch.compile each off and on (bench/bench_models.py --grid, the rows
#           without compile first): training and embedding utterances/s, the
#           warm-up seconds (with compile: mostly compiling) and peak memory, at
#           one fixed batch shape (embedding whole utterances meets a new frame
#           count per batch, which compile recompiles for or makes dynamic);
#   train:  stage 3's trainer (bench/gpu_check.py) on a synthetic corpus, each
#           VoxCeleb encoder config with train.amp false and true, at 1 and
#           --nproc processes (DDP over NCCL): utterances/s and peak memory.
# Each row is printed when it is done. Without a CUDA device it says so and
# exits 0 (nothing to check there); --device cpu runs the parts on the CPU
# (gloo), a check of the script itself.
# Run from the repository root:
#   bash bench/gpu_check.sh
#   bash bench/gpu_check.sh --parts models --original /tmp/PURL-original
#   bash bench/gpu_check.sh --device cpu --parts train --nproc 2 --steps 6 --amps false \
#     --overrides "data.speakers_per_batch=16 data.num_workers=0"
set -euo pipefail

parts="models train"      # what to run: models (the encoders' grid), train (stage 3's trainer)
device=cuda               # cuda, or cpu (gloo)
encoders="ecapa_c256,resnet34,resnet34_clova"       # bench_models configs of the models part
model_opts="--batch-size 256 --steps 20 --warmup 3"  # other bench_models options of the models part
original=""               # a checkout of github.com/jimmy1016-coder/PURL: its thin ResNet-34 in the grid too
configs="egs/voxceleb/conf/paper/ecapa_supcon.yaml egs/voxceleb/conf/paper/resnet34_supcon.yaml"  # the train part's
amps="false true"         # train.amp values (bf16 autocast) of the train part
nproc=""                  # processes of the second trainer run ("": every GPU torch sees)
steps=100                 # training steps per trainer run
overrides=""              # config overrides of the train part, e.g. "data.num_workers=8"
work=/tmp/purl_gpu_check  # corpus, features and runs
num_speakers=400          # >= data.speakers_per_batch (300 in the VoxCeleb configs)
utts_per_speaker=8
nj=8

. ./path.sh
. utils/parse_options.sh
[ $# -eq 0 ] || { echo "Usage: $0 [options]   (--help lists them)" >&2; exit 1; }
for part in $parts; do
  case $part in models|train) ;; *) echo "$0: --parts: unknown part '$part' (models, train)" >&2; exit 1 ;; esac
done

if [ "$device" = cuda ]; then
  count=$(python -c "import torch; print(torch.cuda.device_count())")
  if [ "$count" -eq 0 ]; then
    echo "$0: torch sees no CUDA device: no GPU to check, nothing run (--device cpu checks the script on the CPU)" >&2
    exit 0
  fi
  nproc=${nproc:-$count}
  [ "$nproc" -le "$count" ] || { echo "$0: --nproc $nproc, but torch sees $count CUDA device(s)" >&2; exit 1; }
  gpu_list() { seq -s, 0 $(($1 - 1)); }
else
  nproc=${nproc:-2}
  gpu_list() { echo ""; }
fi

for part in $parts; do
  if [ $part = models ]; then
    log "GPU check: the encoders with bf16 and torch.compile off and on, on $device"
    original_opts=()
    [ -z "$original" ] || original_opts=(--original "$original")
    # shellcheck disable=SC2086
    python -m bench.bench_models --devices $device --grid --configs "$encoders${original:+,resnet34_original_repo}" \
      "${original_opts[@]+"${original_opts[@]}"}" $model_opts
  else
    log "GPU check: corpus and features in $work"
    if [ ! -f $work/data/train/feats.scp ]; then
      egs/mini/local/make_synthetic_corpus.py --num-speakers $num_speakers --utts-per-speaker $utts_per_speaker \
        --nj $nj $work/corpus
      local/prepare_folder_corpus.py $work/corpus $work/data/train
      steps/make_fbank.sh --nj $nj $work/data/train $work/data/train/log $work/fbank
    fi
    sets=()
    for o in $overrides; do sets+=(--set "$o"); done
    for config in $configs; do
      for amp in $amps; do
        for n in $(printf "%s\n" 1 "$nproc" | uniq); do
          log "GPU check: $config, train.amp=$amp, $n process(es) on $device, $steps steps"
          rm -rf $work/exp_$n
          CUDA_VISIBLE_DEVICES=$(gpu_list $n) PYTHONWARNINGS=ignore::FutureWarning \
            torchrun --standalone --nproc-per-node $n bench/gpu_check.py \
            --steps $steps --set train.amp=$amp "${sets[@]+"${sets[@]}"}" $config $work/data/train $work/exp_$n
        done
      done
    done
  fi
done
