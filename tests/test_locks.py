"""One run per output at a time: two real processes on one exp dir or data
dir; the second stops at once naming the first, and the lock goes with the
first when it is killed (SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from purl.data.datadir import read_kv, write_kv
from purl.data.prepare import prepare_folder_corpus
from purl.fileio import temp_path
from purl.locks import LOCK_NAME, DirInUseError, locked_dir
from tests.conftest import ROOT, recipe_env, run_script, write_feature_dir
from tests.test_stale_outputs import lockable, wait_for


def holds_lock(directory, pid: int) -> bool:
    lock = directory / LOCK_NAME
    return lock.is_file() and lock.read_text().startswith(f"pid {pid} ")


def test_second_training_in_one_exp_dir_stops_naming_the_first(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data")
    exp = tmp_path / "exp"
    train = [sys.executable, str(ROOT / "steps" / "train.py"), str(tiny_config), str(data), str(exp)]
    first = subprocess.Popen(train + ["--set", "optim.epochs=1000", "--set", "train.seed=1"], env=recipe_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: holds_lock(exp, first.pid), "the first run to lock the exp dir")
        second = subprocess.run(train + ["--set", "train.seed=2"], env=recipe_env(), capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 1
        assert f"{exp} is in use by pid {first.pid} (" in second.stderr and "train.py" in second.stderr
        assert first.poll() is None  # the first goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert lockable(exp)  # killed: its lock went with it


def test_second_fbank_run_on_one_data_dir_stops_naming_the_first(tmp_path, tiny_corpus):
    data = tmp_path / "data" / "train"
    prepare_folder_corpus(tiny_corpus, data)
    wav_scp = read_kv(data / "wav.scp")
    utt = next(iter(wav_scp))
    wav_scp[utt] = f"sleep 60; cat {wav_scp[utt]} |"  # keeps the first run busy
    write_kv(data / "wav.scp", wav_scp)
    make_fbank = [str(ROOT / "steps" / "make_fbank.sh"), "--nj", "1", str(data), str(data / "log"),
                  str(tmp_path / "fbank")]
    first = subprocess.Popen(make_fbank, cwd=tmp_path, env=recipe_env(), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: holds_lock(data, first.pid), "the first run to lock the data dir")
        second = run_script(*make_fbank, cwd=tmp_path, check=False)
        assert second.returncode == 1 and f"{data} is in use by pid {first.pid}" in second.stderr
        assert "make_fbank.sh" in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # Killed: the lock goes with the last of its processes (the job, a moment after the script).
    wait_for(lambda: lockable(data), "the lock to be released", timeout=10)


def test_lock_in_one_process_refuses_a_second_holder(tmp_path):
    with locked_dir(tmp_path / "out"):
        proc = subprocess.run([sys.executable, "-c", "import sys; from purl.locks import locked_dir\n"
                               f"with locked_dir({str(tmp_path / 'out')!r}): pass"],
                              env=recipe_env(), capture_output=True, text=True)
        assert proc.returncode != 0 and f"is in use by pid {os.getpid()}" in proc.stderr
    with pytest.raises(DirInUseError):
        with locked_dir(tmp_path / "x"):
            with locked_dir(tmp_path / "x"):  # another descriptor: refused like another process
                pass


def test_temporary_names_differ_between_processes(tmp_path):
    code = f"from purl.fileio import temp_path; print(temp_path({str(tmp_path / 'a.png')!r}))"
    other = subprocess.run([sys.executable, "-c", code], env=recipe_env(), capture_output=True, text=True,
                           check=True).stdout.strip()
    assert other != str(temp_path(tmp_path / "a.png")) and other.endswith(".tmp")
