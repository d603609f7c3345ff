#!/usr/bin/env bash
# The project's test command: creates the environment when it is missing (as
# run.sh does), then runs the test suite. Extra arguments go to pytest, e.g.
#   bash tests/run.sh -k fbank
#   bash tests/run.sh -x tests/test_losses.py
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
exec python -m pytest "$@"   # no path given: pyproject.toml's testpaths (tests/)
