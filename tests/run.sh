#!/usr/bin/env bash
# The project's test command: creates the environment when it is missing (as
# run.sh does), then runs the test suite. Extra arguments go to pytest, e.g.
#   bash tests/run.sh -k fbank
#   bash tests/run.sh -x tests/test_losses.py
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
# The test files run in one process per core (pytest-xdist; a file's tests
# stay in one process, so its module-scoped fixtures are made once): on 2 cores
# the suite takes about 11 minutes instead of 17. Pass -p no:xdist to run it
# in this process alone; an environment made before pytest-xdist was a
# requirement runs it so too.
xdist=(-n auto --dist loadfile)
[[ " $* " != *" -p no:xdist "* ]] && python -c "import xdist" 2> /dev/null || xdist=()
exec python -m pytest "${xdist[@]}" "$@"   # no path given: pyproject.toml's testpaths (tests/)
