"""Nothing stale: a stage killed (SIGKILL) while redoing its output leaves
nothing that a later stage takes for complete; the consumer refuses, naming
the dir, and a rerun redoes the work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from purl.data.datadir import DataDirError, read_kv, write_kv
from purl.data.prepare import prepare_folder_corpus
from purl.locks import DirInUseError, locked_dir
from purl.stages.embeddings import plan_embedding_jobs
from purl.stages.fbank import check_features
from purl.stages.reliability import check_reliability_dir
from purl.stages.training import training_data_settings
from tests.conftest import ROOT, recipe_env, run_script
from tests.test_reliability_stage import noisy_dir_with_embeddings

OPTIONS = {"num_crops": 0, "crop_frames": 300, "random_crop_seed": None}


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def lockable(directory) -> bool:
    try:
        with locked_dir(directory):
            return True
    except DirInUseError:
        return False


def consumers_refuse(data, tmp_path) -> None:
    checkpoint = tmp_path / "any.pt"
    checkpoint.write_bytes(b"x")
    with pytest.raises(DataDirError, match="feats"):
        plan_embedding_jobs(checkpoint, data, tmp_path / "emb", 1, OPTIONS)
    config = {"purl": {"init_checkpoint": "", "reliability": ""}}
    with pytest.raises(DataDirError, match="feats"):
        training_data_settings(config, str(data))


def test_fbank_killed_while_recomputing_leaves_features_nobody_uses(tmp_path, tiny_corpus):
    data = tmp_path / "data" / "train"
    prepare_folder_corpus(tiny_corpus, data)
    make_fbank = [str(ROOT / "steps" / "make_fbank.sh"), "--nj", "2", str(data), str(data / "log"),
                  str(tmp_path / "fbank")]
    run_script(*make_fbank, cwd=tmp_path)
    old = read_kv(data / "feats.scp")
    wav_scp = read_kv(data / "wav.scp")
    utt = next(iter(wav_scp))
    other = wav_scp[sorted(wav_scp)[-1]]
    # Another audio for one utterance, read through a pipe that waits: the
    # recompute is under way (feats.scp moved aside, a job reading) when killed.
    wav_scp[utt] = f"sleep 60; cat {other} |"
    write_kv(data / "wav.scp", wav_scp)
    proc = subprocess.Popen(make_fbank, cwd=tmp_path, env=recipe_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (data / "log" / "make_fbank.1.log").is_file() and not (data / "feats.scp").exists(),
                 "the recompute to start")
        time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # The dir's lock goes with the last of the killed processes (a job, a moment after the script).
    wait_for(lambda: lockable(data), "the lock to be released", timeout=10)
    assert (data / "feats.scp.stale").is_file() and not (data / "feats.settings").exists()
    consumers_refuse(data, tmp_path)

    wav_scp[utt] = other  # the rerun reads it at once
    write_kv(data / "wav.scp", wav_scp)
    run_script(*make_fbank, cwd=tmp_path)
    check_features(data, "test")
    assert read_kv(data / "feats.scp").keys() == old.keys()


def test_features_whose_ark_was_rewritten_are_refused(tmp_path):
    from tests.conftest import write_feature_dir

    data = write_feature_dir(tmp_path / "data")
    check_features(data, "test")
    ark = data / "feats.ark"
    ark.write_bytes(ark.read_bytes())  # same bytes, but written again: what the record vouched for is gone
    os.utime(ark, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    consumers_refuse(data, tmp_path)


KILL_AFTER_EMBEDDINGS = """
import os, signal, sys
import numpy as np
from purl.reliability import Reliability
from purl.stages.reliability import load_reliability_config, run_stage
save = Reliability.save
def save_then_die(self, out_dir):
    np.save(os.path.join(out_dir, "embeddings.npy"), self.embeddings)
    os.kill(os.getpid(), signal.SIGKILL)
Reliability.save = save_then_die
run_stage(sys.argv[1], sys.argv[2], sys.argv[3], load_reliability_config(None, ["reliability.threshold=0.4"]))
"""


def test_reliability_killed_while_refitting_is_refused_by_stage_5(tmp_path):
    data, scp, _ = noisy_dir_with_embeddings(tmp_path)
    out = tmp_path / "reliability"
    run_script(ROOT / "steps" / "reliability.py", scp, data, out)
    assert (out / "reliability.settings").is_file()
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_EMBEDDINGS, str(scp), str(data), str(out)],
                          env=recipe_env(), capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (out / "reliability.json").is_file() and not (out / "reliability.settings").exists()
    assert not (out / "report.json").exists()
    with pytest.raises(DataDirError, match="reliability.settings.*stage 4 did not finish"):
        check_reliability_dir(out, "train (purl.reliability)")
    run_script(ROOT / "steps" / "reliability.py", "--overrides", "reliability.threshold=0.4", scp, data, out)
    assert (out / "reliability.settings").is_file()
    assert json.loads((out / "report.json").read_text())["threshold"] == 0.4
    assert np.load(out / "embeddings.npy").shape[0] == len(read_kv(data / "utt2spk"))
