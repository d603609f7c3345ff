#!/usr/bin/env bash
# The embedded default: the whole PURL pipeline on a generated synthetic corpus,
# on CPU, in minutes. Arguments go to egs/mini/run.sh, e.g.
#   bash run.sh --stage 0 --stop-stage 1
cd "$(dirname "$0")/egs/mini" && exec bash run.sh "$@"
