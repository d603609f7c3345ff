"""utils/parse_options.sh and utils/run_jobs.sh."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import ROOT, copy_recipe, recipe_env

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


TOOL = """#!/usr/bin/env bash
# Makes the widgets of a data dir.
#   tool.sh --num-jobs 8 data/train
set -euo pipefail
base=run

# ---- what to run
num_jobs=4          # parallel jobs
cmd=$base           # job runner
estimator=""        # histogram or bic
                    # ("": the conf's)
use_gpu=false
. {root}/utils/parse_options.sh
echo "$num_jobs $*"
"""


def test_help_prints_the_header_and_each_declared_option_with_its_default(tmp_path):
    script = tmp_path / "tool.sh"
    script.write_text(TOOL.format(root=ROOT))
    proc = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""
    lines = [line.rstrip() for line in proc.stdout.splitlines()]
    assert lines[:2] == ["Makes the widgets of a data dir.", "  tool.sh --num-jobs 8 data/train"]
    options = [" ".join(line.split()) for line in lines[lines.index("") + 2:]]
    assert options == ["--base run", "", "# ---- what to run", "--num-jobs 4 # parallel jobs",
                       "--cmd $base (= run) # job runner", '--estimator "" # histogram or bic', '# ("": the conf\'s)',
                       "--use-gpu false"]
    proc = subprocess.run(["bash", str(script), "--num-jobs", "2", "a", "b"], capture_output=True, text=True)
    assert proc.stdout == "2 a b\n"  # not a recipe: positional arguments are the script's


@pytest.mark.parametrize("recipe", ["mini", "voxceleb", "cnceleb"])
def test_every_recipe_s_help_lists_its_options_with_their_defaults(recipe):
    text = (ROOT / "egs" / recipe / "run.sh").read_text()
    declared = re.findall(r"^([a-z_]+)=(\S*)", text.split(". utils/parse_options.sh")[0], re.M)
    proc = subprocess.run(["bash", "run.sh", "--help"], cwd=ROOT / "egs" / recipe, env=recipe_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "no usage text" not in proc.stdout
    assert proc.stdout.startswith("Usage: run.sh [options]\n" + text.splitlines()[1][2:] + "\n")
    for name, default in declared:
        assert f"  --{name.replace('_', '-')} {default}" in proc.stdout, name



def test_the_speechocean762_recipe_s_help_gives_its_header_its_corpus_and_the_mini_recipe_s_options():
    """speechocean762 runs egs/mini/run.sh on its corpus: its help is its own
    header, the two options it sets, then every option of the mini recipe."""
    text = (ROOT / "egs" / "speechocean762" / "run.sh").read_text()
    mini = (ROOT / "egs" / "mini" / "run.sh").read_text()
    proc = subprocess.run(["bash", "run.sh", "--help"], cwd=ROOT / "egs" / "speechocean762", env=recipe_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("Usage: run.sh [options]\n" + text.splitlines()[1][2:] + "\n")
    assert "  --corpus " in proc.stdout and "speechocean762-train" in proc.stdout
    assert "  --num-test-speakers 25\n" in proc.stdout
    for name, default in re.findall(r"^([a-z_]+)=(\S*)", mini.split(". utils/parse_options.sh")[0], re.M):
        assert f"  --{name.replace('_', '-')} {default}" in proc.stdout, name

RECIPE = """#!/usr/bin/env bash
set -euo pipefail
stage=0
stop_stage=6
nj=4
. {root}/utils/parse_options.sh
""" + "".join(f'if [ $stage -le {n} ] && [ $stop_stage -ge {n} ]; then echo "stage {n}"; fi\n' for n in range(7))


@pytest.mark.parametrize("args, message", [
    (["3"], "run.sh: takes options only, not '3' (one stage: --stage 3 --stop-stage 3)"),
    (["--nj", "2", "data"], "run.sh: takes options only, not 'data' (bash run.sh --help lists them)"),
    (["--stage", "4", "--stop-stage", "2"], "run.sh: --stage 4 is after --stop-stage 2: no stage would run"),
    (["--stage", "7"], "run.sh: --stage 7: the last stage is 6 (stages: 0 1 2 3 4 5 6)"),
    (["--stage", "-3", "--stop-stage", "-1"], "run.sh: --stage -3 --stop-stage -1 selects none of the stages"),
])
def test_a_recipe_refuses_a_stray_argument_and_a_range_of_no_stage(tmp_path, args, message):
    script = tmp_path / "run.sh"
    script.write_text(RECIPE.replace("{root}", str(ROOT)))
    proc = subprocess.run(["bash", str(script), *args], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.startswith(message) and proc.stdout == ""
    proc = subprocess.run(["bash", str(script), "--stage", "5"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "stage 5\nstage 6\n"


def test_the_mini_recipe_refuses_a_stage_number_given_as_an_argument(tmp_path):
    recipe = copy_recipe("mini", tmp_path / "mini")
    proc = subprocess.run(["bash", "run.sh", "3"], cwd=recipe, env=recipe_env(), capture_output=True, text=True)
    assert proc.returncode == 1 and "run.sh: takes options only, not '3'" in proc.stderr
    assert sorted(p.name for p in recipe.iterdir()) == sorted(p.name for p in (ROOT / "egs" / "mini").iterdir()
                                                              if p.name not in ("data", "exp", "fbank", "corpus",
                                                                                "RESULTS.md"))


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
