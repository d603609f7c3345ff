"""The embedded default recipe end to end, reduced (few speakers, one epoch per
training run), so that no stage can break unseen; then, on the same data, the
original work's protocol (--protocol paper)."""

from __future__ import annotations

import json

import kaldiio
import numpy as np
import pytest
import yaml

from purl.config import load_config
from purl.data.datadir import validate_data_dir
from purl.features import feature_type_of
from purl.records import read_record
from purl.training.checkpoint import load_checkpoint
from tests.conftest import copy_recipe, run_script

TRAIN = "optim.epochs=1 data.samples_per_epoch=64 data.speakers_per_batch=8 data.chunk_frames=100 data.num_workers=0"
SIZE = ("--num-speakers", "20", "--utts-per-speaker", "5", "--num-test-speakers", "6")


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
    """The recipe copied, and its default run (stages 0-6)."""
    recipe = copy_recipe("mini", tmp_path_factory.mktemp("recipe") / "mini")
    return recipe, run_script("bash", "run.sh", *SIZE, "--train-overrides", TRAIN, cwd=recipe)


def test_mini_recipe_runs_every_stage_and_prints_the_table(mini_run):
    recipe, proc = mini_run
    for stage in range(7):
        assert f"Stage {stage} done" in proc.stdout, proc.stdout[-3000:]
    validate_data_dir(recipe / "data" / "train_noisy0.2_seed0", require=["feats.scp", "utt2truespk"])
    summary = (recipe / "exp" / "summary_tuned_noisy0.2_seed0.md").read_text()
    for row in ("SupCon, clean labels", "SupCon, noisy labels", "noisy + control", "noisy + filtering (keep 0.5)",
                "noisy + PURL", "noisy, relabelled", "noisy, relabelled, retrained"):
        assert f"| {row} |" in summary
    retrain = yaml.safe_load((recipe / "exp" / "relabel_retrain_tuned_noisy0.2_seed0" / "config.yaml").read_text())
    assert retrain["purl"]["init_checkpoint"] == ""  # 20% noise: relabelling changed more than 1% of the labels
    assert "noisy-pair detection AUC" in summary
    assert (recipe / "exp" / "RESULTS.md").read_text().count("| test | cosine |") == 7  # clean, noisy, 5 methods
    assert (recipe / "exp" / "supcon_tuned_noisy0.2_seed0" / "reliability" / "reliability.png").is_file()
    # relabel's two rounds: a model trained on round 1's labels embedded the noisy set, which proposed the final ones
    round1_model = recipe / "exp" / "relabel_round1_tuned_noisy0.2_seed0"
    assert (recipe / "data" / "train_noisy0.2_seed0_relabelled_round1" / "relabel.json").is_file()
    assert (round1_model / "models" / "final.pt").is_file()
    assert (round1_model / "embeddings" / "train" / "xvector.scp").is_file()
    relabel = json.loads((recipe / "data" / "train_noisy0.2_seed0_relabelled" / "relabel.json").read_text())
    assert relabel["embeddings"] == "exp/relabel_round1_tuned_noisy0.2_seed0/embeddings/train/xvector.scp"
    # Every stage skips what is done: a rerun trains nothing.
    rerun = run_script("bash", "run.sh", *SIZE, "--train-overrides", TRAIN, cwd=recipe)
    assert rerun.stdout.count("is complete; skipping") >= 5


def test_mini_recipe_runs_the_paper_protocol_on_the_same_data(mini_run):
    """Continued update, random-crop sklearn reliability at tol 1e-3, plain cosine."""
    recipe, _ = mini_run
    proc = run_script("bash", "run.sh", *SIZE, "--protocol", "paper", "--stage", "3", "--clean-reference", "false",
                      "--methods", "control purl", "--train-overrides", TRAIN, "--purl-overrides", "optim.epochs=2",
                      cwd=recipe)
    for stage in range(3, 7):
        assert f"Stage {stage} done" in proc.stdout, proc.stdout[-3000:]
    exp = recipe / "exp"
    assert "continuing exp/supcon_paper_noisy0.2_seed0/models/last.pt from epoch 2" in \
        (exp / "purl_paper_noisy0.2_seed0" / "log" / "train.log").read_text()
    assert load_checkpoint(exp / "control_paper_noisy0.2_seed0" / "models" / "final.pt")["averaged"] == ["epoch_2.pt"]
    report = json.loads((exp / "supcon_paper_noisy0.2_seed0" / "reliability" / "report.json").read_text())
    assert report["estimator"] == "sklearn" and report["settings"]["tol"] == 1e-3
    assert (exp / "supcon_paper_noisy0.2_seed0" / "embeddings" / "train_crop" / "xvector.scp").is_file()
    # plain cosine: no training mean subtracted
    purl = exp / "purl_paper_noisy0.2_seed0"
    emb = dict(kaldiio.load_scp(str(purl / "embeddings" / "test" / "xvector.scp")))
    score_files = list((purl / "scores").glob("*.cosine.score"))
    enroll, test, score = score_files[0].read_text().split("\n", 1)[0].split()
    a, b = emb[enroll], emb[test]
    assert float(score) == pytest.approx(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), abs=2e-6)
    summary = (exp / "summary_paper_noisy0.2_seed0.md").read_text()
    for row in ("SupCon, noisy labels", "noisy + control", "noisy + PURL"):
        assert f"| {row} |" in summary


def test_mini_recipe_calibrates_on_a_dir_of_unseen_speakers(mini_run):
    """--calibration-dir: stage 1 makes its features, stage 6 embeds it with every model and calibrates
    on it instead of the training speakers (here the test speakers' audio under other ids: plumbing only)."""
    recipe, _ = mini_run
    data, calib = recipe / "data" / "test", recipe / "data" / "calib"
    calib.mkdir()
    for name in ("wav.scp", "utt2spk"):
        lines = (data / name).read_text().splitlines()
        (calib / name).write_text("".join(
            "cal" + line.split()[0] + " " + ("cal" if name == "utt2spk" else "") + line.split(None, 1)[1] + "\n"
            for line in lines))
    spk2utt = run_script("utils/utt2spk_to_spk2utt.py", calib / "utt2spk", cwd=recipe).stdout
    (calib / "spk2utt").write_text(spk2utt)
    proc = run_script("bash", "run.sh", *SIZE, "--train-overrides", TRAIN, "--stage", "1", "--methods", "control",
                      "--clean-reference", "false", "--calibration-dir", "data/calib", cwd=recipe)
    assert "Stage 6 done" in proc.stdout, proc.stdout[-3000:]
    assert (calib / "feats.scp").is_file()
    for model in ("supcon_tuned_noisy0.2_seed0", "control_tuned_noisy0.2_seed0"):
        report = json.loads((recipe / "exp" / model / "scores" / "calibration.json").read_text())
        assert "data/calib" in report["calibration_trials"]["source"], report["calibration_trials"]
        assert (recipe / "exp" / model / "embeddings" / "calib" / "xvector.scp").is_file()


def test_mini_recipe_runs_the_paper_protocol_with_the_original_s_front_end_through_stage_4(mini_run):
    """--feature-type speechbrain --normalise crop: stage 1 makes SpeechBrain fbank in copies of stage 0's
    dirs, the models and stage 4 read them with each crop normalised over itself, beside the Kaldi runs."""
    recipe, _ = mini_run
    proc = run_script("bash", "run.sh", *SIZE, "--protocol", "paper", "--feature-type", "speechbrain",
                      "--normalise", "crop", "--stage", "1", "--stop-stage", "4", "--clean-reference", "false",
                      "--train-overrides", TRAIN, cwd=recipe)
    assert "Stage 4 done" in proc.stdout, proc.stdout[-3000:]
    data, exp = recipe / "data", recipe / "exp" / "supcon_paper_sbfbank_noisy0.2_seed0"
    assert feature_type_of(data / "train_sbfbank_noisy0.2_seed0") == "speechbrain"
    assert feature_type_of(data / "train") == feature_type_of(data / "test") == "kaldi"  # the Kaldi runs' dirs
    assert load_checkpoint(exp / "models" / "final.pt")["feature_type"] == "speechbrain"
    assert load_config(exp / "config.yaml")["data"]["normalise"] == "crop"
    assert read_record(exp / "embeddings" / "train_crop" / "xvector.settings")["normalise"] == "crop"
    refused = run_script("steps/extract_embeddings.sh", exp / "models" / "final.pt", data / "test",
                         exp / "embeddings" / "kaldi_test", cwd=recipe, check=False)
    assert refused.returncode == 1 and "a model trained on speechbrain features, but" in refused.stderr
