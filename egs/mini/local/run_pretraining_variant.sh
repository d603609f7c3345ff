#!/usr/bin/env bash
# One variant of stage 3's noisy-label SupCon pretraining, beside the recipe's own
# model of the same seed, for a with/without comparison: trains
# exp/supcon_<name>_tuned_noisy<rate>_seed<seed> on run.sh's data dir (run stages 0-6 of
# `bash run.sh --seed <seed>` first), scores it as stage 6 does (tuned protocol:
# training mean subtracted, AS-Norm beside) and prints both rows.
#   local/run_pretraining_variant.sh --seed 1 chns "chns.hard_ratio=0.5 chns.num_clusters=6 chns.refresh_every=2"
#   local/run_pretraining_variant.sh --seed 1 --config conf/supcon_aug.yaml --noise-sources true aug ""
# --noise-sources true first makes the generated stand-ins for MUSAN and RIRS_NOISES
# (local/make_noise_sources.py) and their data dirs data/musan_{noise,music,speech},
# data/rirs, which conf/supcon_aug.yaml names.
set -euo pipefail
. ./cmd.sh

seed=0
noise_rate=0.2
config=conf/tuned/supcon.yaml
noise_sources=false
gpus=""
nj=2
cmd=$train_cmd

. ./path.sh
. utils/parse_options.sh
if [ $# != 2 ]; then
  echo "Usage: $0 [--seed N] [--config YAML] [--noise-sources true] <name> <overrides>" >&2; exit 1
fi
name=$1; variant_overrides=$2

noisy=data/train_noisy${noise_rate}_seed$seed
baseline=exp/supcon_tuned_noisy${noise_rate}_seed$seed
variant=exp/supcon_${name}_tuned_noisy${noise_rate}_seed$seed
test=data/test
for f in $noisy/feats.scp $baseline/scores/results.json; do
  [ -f $f ] || { echo "$0: $f missing: run 'bash run.sh --seed $seed --noise-rate $noise_rate' first" >&2; exit 1; }
done

if [ "$noise_sources" = true ]; then
  local/make_noise_sources.py --seed 0 noise_sources
  local/prepare_musan.py noise_sources/musan data
  local/prepare_rirs.py noise_sources/RIRS_NOISES data/rirs
fi

log "Pretraining $variant ($config; $variant_overrides)"
steps/train.sh --gpus "$gpus" --valid-data $test --overrides "train.seed=$seed $variant_overrides" $config $noisy $variant
steps/extract_embeddings.sh --nj $nj --cmd "$cmd" $variant/models/final.pt $test $variant/embeddings/test
steps/extract_embeddings.sh --nj $nj --cmd "$cmd" $variant/models/final.pt $noisy $variant/embeddings/train
steps/score.py --mean $variant/embeddings/train/mean.vec \
  --cohort $variant/embeddings/train/xvector.scp --cohort-utt2spk $noisy/utt2spk --top-k 50 \
  --results exp/RESULTS.md $variant/embeddings/test/xvector.scp $variant/scores $test/trials
steps/summarize.py "SupCon, noisy labels=$baseline" "SupCon, noisy labels, $name=$variant" \
  | tee exp/summary_${name}_tuned_noisy${noise_rate}_seed$seed.md
