"""Bad inputs of issue 26 that tests/test_bad_inputs.py, test_stale_outputs.py
and test_locks.py left open: two stage-4 runs at once into one dir (real
processes, the first killed with SIGKILL), and an audio path that loops."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from purl.audio import AudioError, audio_duration, read_audio
from purl.data.datadir import DataDirError
from purl.stages.reliability import check_reliability_dir
from tests.conftest import ROOT, recipe_env, run_script
from tests.test_locks import holds_lock
from tests.test_reliability_stage import noisy_dir_with_embeddings
from tests.test_stale_outputs import lockable, wait_for

# Stage 4 with the sklearn estimator, held in its fit (before anything is saved).
SLOW_FIT = """
import sys, time
from purl.reliability import Reliability
from purl.stages.reliability import load_reliability_config, run_stage
def slow_save(self, out_dir):
    time.sleep(120)
Reliability.save = slow_save
run_stage(sys.argv[1], sys.argv[2], sys.argv[3], load_reliability_config(None, ["reliability.estimator=sklearn"]))
"""


def test_two_stage_4_runs_into_one_dir_the_second_stops_and_the_killed_first_leaves_no_fit(tmp_path):
    data, scp, _ = noisy_dir_with_embeddings(tmp_path, speakers=6, utts=12)
    out = tmp_path / "rel"
    first = subprocess.Popen([sys.executable, "-c", SLOW_FIT, str(scp), str(data), str(out)], env=recipe_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: holds_lock(out, first.pid), "the first run to lock the dir")
        second = run_script(ROOT / "steps" / "reliability.py", "--estimator", "global", scp, data, out, check=False)
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert f"{out} is in use by pid {first.pid} (" in second.stderr
        assert "Detection" not in second.stdout and "estimator" not in second.stdout  # no report of a fit
        assert first.poll() is None  # the first goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert lockable(out)  # its lock went with it
    for name in ("reliability.json", "reliability.settings", "report.json"):
        assert not (out / name).exists(), name
    with pytest.raises(DataDirError):
        check_reliability_dir(out, "train (purl.reliability)")
    run_script(ROOT / "steps" / "reliability.py", "--estimator", "global", scp, data, out)
    assert json.loads((out / "report.json").read_text())["estimator"] == "global"
    check_reliability_dir(out, "train (purl.reliability)")


@pytest.mark.parametrize("name", ["loop.wav", "loop.m4a"])
def test_an_audio_path_that_loops_is_named_as_such(tmp_path, name):
    (tmp_path / name).symlink_to(tmp_path / name)
    for read in (read_audio, audio_duration):
        with pytest.raises(AudioError, match=rf"^{tmp_path / name} is a symbolic link that loops"):
            read(str(tmp_path / name))
