"""utils/slurm.sh (sbatch job arrays) and steps/train.sh --slurm (srun torchrun)
against a real Slurm on localhost (tests/slurm_cluster.py)."""

from __future__ import annotations

import subprocess

import pytest

from purl.data.datadir import read_kv
from tests.conftest import ROOT, recipe_env
from tests.slurm_cluster import LocalSlurm, free_port, why_no_slurm
from tests.test_bad_inputs import audio_dir, write_feature_dir


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = why_no_slurm()
    if reason is not None:
        print(f"test_slurm: skipped: {reason}")
        pytest.skip(reason)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    yield cluster
    cluster.stop()


def run(slurm, *args, cwd):
    env = {**recipe_env(), "SLURM_CONF": str(slurm.conf), "PURL_RDZV_PORT": str(free_port())}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)


def test_slurm_sh_runs_a_job_array_and_names_the_failed_task(slurm, tmp_path):
    proc = run(slurm, ROOT / "utils" / "slurm.sh", "JOB=1:3", tmp_path / "log" / "x.JOB.log",
               "bash", "-c", "echo task JOB; [ JOB != 2 ]", cwd=tmp_path)
    assert proc.returncode == 1
    assert "1 of 3 jobs failed" in proc.stderr and "x.2.log" in proc.stderr
    assert "task 3" in (tmp_path / "log" / "x.3.log").read_text()
    assert "(Slurm job" in (tmp_path / "log" / "x.1.log").read_text()


def test_stage_1_through_slurm(slurm, tmp_path):
    data = audio_dir(tmp_path / "train", tmp_path)
    proc = run(slurm, ROOT / "steps" / "make_fbank.sh", "--nj", "2", "--cmd", "slurm.sh --time 5",
               data, data / "log", tmp_path / "fbank", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(read_kv(data / "feats.scp")) == 6
    assert "Slurm job" in (data / "log" / "make_fbank.2.log").read_text()


def test_training_through_srun_torchrun(slurm, tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "train")
    exp = tmp_path / "exp"
    proc = run(slurm, ROOT / "steps" / "train.sh", "--slurm", "true", "--cpu-procs", "2",
               "--overrides", "optim.epochs=1 train.average_last=1", tiny_config, data, exp, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (exp / "models" / "final.pt").is_file()
    assert "2 process(es) on cpu" in (exp / "log" / "train.log").read_text()
