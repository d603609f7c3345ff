# Environment of the project; sourced by every recipe (egs/*/path.sh links here).
# Creates the Python environment on first use (utils/setup_env.sh), then puts its
# python first on PATH, the purl/ package on PYTHONPATH and utils/ on PATH.
# Set PURL_VENV=none to use the python already on PATH as it is.
PURL_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
export PURL_ROOT
if [ "${PURL_VENV:-}" != none ]; then
  bash "$PURL_ROOT/utils/setup_env.sh" || return 1 2>/dev/null || exit 1
  PATH=${PURL_VENV:-$PURL_ROOT/.venv}/bin:$PATH
fi
export PATH=$PURL_ROOT/utils:$PATH
export PYTHONPATH=$PURL_ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
# CPU training on a shared machine: idle OpenMP threads sleep instead of spinning
# (spinning threads of two jobs on the same cores slow both several times over).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export LC_ALL=C

# log MESSAGE: one line with the time and the calling file:line.
log() {
  echo "$(date '+%Y-%m-%d %H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*"
}
