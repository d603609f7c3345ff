#!/usr/bin/env bash
# The mini recipe's stages on real read speech: speechocean762's training part
# (125 speakers, 2,646 utterances, 16 kHz Opus; CC BY 4.0), 25 speakers held
# out for trials, with the same tiny CPU configs. A check that the pipeline
# learns real voices, not a benchmark. Options as in egs/mini/run.sh, e.g.
#   bash run.sh --noise-rate 0          # without simulated noise
corpus=${SPEECHOCEAN762:-$(cd "$(dirname "$0")" && pwd)/../../../shared/data/speechocean762-train}
cd "$(dirname "$0")" && exec bash ../mini/run.sh --synthetic false --corpus "$corpus" --num-test-speakers 25 "$@"
