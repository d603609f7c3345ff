#!/usr/bin/env bash
# PURL on real read speech: speechocean762's training part (125 speakers, 2,646
# utterances, 16 kHz Opus; CC BY 4.0), 25 speakers held out for trials, by the
# mini recipe: its run.sh runs here, with its conf/ and local/ (linked), on this
# corpus instead of the synthetic one. A check that the pipeline learns real
# voices, not a benchmark. Run from this folder:
#   bash run.sh                              # stages 0..6
#   bash run.sh --noise-rate 0               # without simulated noise
#   bash run.sh --protocol paper             # the original work's protocol
# Every option of egs/mini/run.sh, listed below; this recipe sets these two:
set -euo pipefail

here=$(dirname "$(readlink -f "$0")")
corpus=${SPEECHOCEAN762:-$here/../../../shared/data/speechocean762-train}  # the corpus (<speaker>/**/*.opus)
num_test_speakers=25                                                       # held out for the trial list

mini=(bash "$here/../mini/run.sh" --synthetic false --corpus "$corpus" --num-test-speakers $num_test_speakers)
if [[ " $* " == *" --help "* || " $* " == *" -h "* ]]; then  # this header, then mini's options
  echo "Usage: run.sh [options]"; sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"
  echo "  --corpus $corpus"; echo "  --num-test-speakers $num_test_speakers"
  "${mini[@]}" --help | sed -n '/^Options/,$p'
  exit 0
fi
exec "${mini[@]}" "$@"
