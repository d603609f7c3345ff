#!/usr/bin/env bash
# Creates the project's Python environment in <root>/.venv when it is missing, or
# completes it when an earlier attempt stopped half-way (the marker below is
# written last). Called by path.sh; safe to run by hand.
#
# The venv is made with --system-site-packages so that a torch already installed
# for the machine's CUDA driver is kept. Only where no torch imports does this
# install one: torch==2.13.0, which on a CPU box with a local CPU wheel takes
# that wheel (never the multi-GB CUDA packages).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${PURL_VENV:-$root/.venv}
python=${PURL_PYTHON:-python3}
marker=$venv/.purl_env_ready
stamp=$(cat "$root/requirements.txt" "$root/requirements-test.txt" | sha1sum | cut -c1-12)

if [ -f "$marker" ] && [ "$(cat "$marker")" = "$stamp" ]; then
  exit 0
fi

echo "setup_env: creating the Python environment in $venv (once; a few minutes)" >&2
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv --system-site-packages "$venv" || {
    echo "setup_env: '$python -m venv' failed; install the venv module (Debian: apt-get install python3-venv) or set PURL_PYTHON" >&2
    exit 1
  }
fi
log=$venv/setup_env.log
pip_install() {  # pip's chatter goes to the log; its tail is shown when it fails
  "$venv/bin/python" -m pip install "$@" >> "$log" 2>&1 || {
    echo "setup_env: 'pip install $*' failed; the end of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  }
}
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "setup_env: no torch found; installing torch==2.13.0" >&2
  pip_install "torch==2.13.0"
fi
pip_install -r "$root/requirements.txt" -r "$root/requirements-test.txt"
"$venv/bin/python" -c "import torch, numpy, sklearn, kaldiio, kaldi_native_fbank, soundfile, av, threadpoolctl, yaml, tqdm, matplotlib, onnx, tensorboard, pytest, onnxruntime" || {
  echo "setup_env: the environment in $venv does not import its packages; remove it and rerun" >&2
  exit 1
}
echo "$stamp" > "$marker"
echo "setup_env: environment ready ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))" >&2
