"""utils/parse_options.sh and utils/run_jobs.sh."""

from __future__ import annotations

import subprocess

from tests.conftest import ROOT, recipe_env

SCRIPT = """
stage=0
stop_stage=9
use_gpu=false
. {root}/utils/parse_options.sh
echo "$stage $stop_stage $use_gpu $*"
"""


def run_options(tmp_path, *args):
    script = tmp_path / "opts.sh"
    script.write_text(SCRIPT.format(root=ROOT))
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True)


def test_parse_options_sets_declared_variables(tmp_path):
    proc = run_options(tmp_path, "--stage", "3", "--stop-stage=4", "--use-gpu", "true", "pos")
    assert proc.returncode == 0 and proc.stdout.strip() == "3 4 true pos"


def test_parse_options_rejects_undeclared_option(tmp_path):
    proc = run_options(tmp_path, "--stgae", "3")
    assert proc.returncode == 1
    assert "unknown option '--stgae'" in proc.stderr and "--stop-stage" in proc.stderr


def test_parse_options_rejects_missing_value(tmp_path):
    proc = run_options(tmp_path, "--stage")
    assert proc.returncode == 1 and "option --stage needs a value" in proc.stderr


def test_parse_options_rejects_non_boolean_for_boolean(tmp_path):
    proc = run_options(tmp_path, "--use-gpu", "yes")
    assert proc.returncode == 1 and "takes true or false, not 'yes'" in proc.stderr


def test_run_jobs_fails_when_one_job_fails_and_names_its_log(tmp_path):
    proc = subprocess.run(
        [str(ROOT / "utils" / "run_jobs.sh"), "JOB=1:3", str(tmp_path / "log" / "job.JOB.log"),
         "bash", "-c", "echo running JOB; [ JOB != 2 ]"],
        capture_output=True, text=True, env=recipe_env(),
    )
    assert proc.returncode == 1
    assert "1 of 3 jobs failed" in proc.stderr and "job.2.log" in proc.stderr
    log1 = (tmp_path / "log" / "job.1.log").read_text()
    assert "running 1" in log1 and "exit status 0" in log1
    assert "exit status 1" in (tmp_path / "log" / "job.2.log").read_text()


def test_run_jobs_runs_a_job_list(tmp_path):
    proc = subprocess.run(
        [str(ROOT / "utils" / "run_jobs.sh"), "--max-jobs-run", "1", "JOB=2,4", str(tmp_path / "j.JOB.log"), "true"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.2.log", "j.4.log"]
