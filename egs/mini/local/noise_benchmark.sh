#!/usr/bin/env bash
# The noisy-label benchmark: which method gives back what label noise took, under
# which kind of noise, at which rate. For each (seed, rate, noise type): stage 2,
# one pretraining, stage 4, then every method's update from that pretrained model
# and stage 6, all by this recipe's run.sh; rate 0 is one cell per seed, shared by
# the kinds. Everything lives in <work> (default exp/benchmark), a folder shaped
# like the recipe (its run.sh, conf, local, steps, utils linked; its own data/ and
# exp/), so the recipe's own runs are untouched: its split holds out
# --num-outsider-speakers speakers as the outsiders of open noise. A rerun skips
# what is done (every stage's settings records), redoes what changed.
# Writes <work>/RESULTS.md (the table), <work>/eer_vs_rate.png (the figure) and
# <work>/benchmark.json; a cell's log is <work>/log/<noise><rate>_seed<seed>.log.
# Options after '--' go to run.sh in every cell.
#   local/noise_benchmark.sh --seeds "0 1"
#   local/noise_benchmark.sh --rates "0 0.2" --noise-types "permute open" -- --purl-overrides "optim.epochs=3"
set -euo pipefail

seeds="0 1"                     # one full grid per seed
rates="0 0.1 0.2 0.4"           # fractions of training utterances under a wrong speaker
noise_types="permute similar open"
methods="control filter purl relabel relabel_retrain orgate"   # stage-5 methods of run.sh (--methods)
num_outsider_speakers=30        # held out as the outsiders of open noise
work=exp/benchmark
protocol=tuned                  # run.sh's --protocol

. ./path.sh
. utils/parse_options.sh
if [ $# != 0 ] && [[ "$1" != --* ]]; then  # what follows '--' are run.sh's options
  echo "Usage: $0 [--seeds LIST] [--rates LIST] [--noise-types LIST] [--methods LIST] [--work DIR] [-- run.sh options]" >&2
  exit 1
fi
run_opts=("$@")  # for run.sh, in every cell
recipe=$PWD
mkdir -p $work/log
for f in run.sh cmd.sh path.sh conf local steps utils; do ln -sfn $recipe/$f $work/$f; done
cd $work
common=(--protocol $protocol --num-outsider-speakers $num_outsider_speakers --clean-reference false "${run_opts[@]}")

log "Benchmark: stages 0-1 in $work (log/prepare.log)"
bash run.sh --stage 0 --stop-stage 1 "${common[@]}" > log/prepare.log 2>&1 || {
  echo "$0: stages 0-1 failed; see $work/log/prepare.log" >&2; exit 1; }

failed=()
for seed in $seeds; do
  for rate in $rates; do
    rate=$(awk -v r="$rate" 'BEGIN { print r + 0 }')  # run.sh's spelling, as in its dir names
    for noise_type in $noise_types; do
      noise=$noise_type; [ "$noise_type" != permute ] || noise=noisy
      if awk -v r="$rate" 'BEGIN { exit !(r == 0) }'; then
        # no noise: one cell, whatever the kind
        [ "$noise_type" = "${noise_types%% *}" ] || continue
        noise_type=permute; noise=noisy
      fi
      cell=$noise${rate}_seed$seed
      log "Benchmark cell $cell: $methods (log/$cell.log)"; SECONDS=0
      if bash run.sh --stage 2 --stop-stage 6 --seed $seed --noise-rate $rate --noise-type $noise_type \
          --methods "$methods" "${common[@]}" > log/$cell.log 2>&1; then
        log "Benchmark cell $cell done in ${SECONDS}s"
      else
        log "Benchmark cell $cell FAILED after ${SECONDS}s: see $work/log/$cell.log"; failed+=($cell)
      fi
    done
  done
done

# The summaries' names carry the protocol and, for the original's front end, _sbfbank (run.sh's feats_tag):
# the features are run.sh's --feature-type (either spelling) or else the protocol's stages.conf default.
feature_type=""
for ((i = 0; i < ${#run_opts[@]}; i++)); do
  case ${run_opts[i]} in
    --feature-type) feature_type=${run_opts[i + 1]:-} ;;
    --feature-type=*) feature_type=${run_opts[i]#*=} ;;
  esac
done
feature_type=$(. conf/$protocol/stages.conf; echo "$feature_type")
tag=_$protocol; [ "$feature_type" != speechbrain ] || tag+=_sbfbank
local/benchmark_table.py --tag "$tag" --seeds "$seeds" --rates "$rates" --noise-types "$noise_types" --methods "$methods" .
[ ${#failed[@]} = 0 ] || { echo "$0: failed cells: ${failed[*]}" >&2; exit 1; }
