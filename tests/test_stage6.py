"""Stage 6: extraction (batched equals alone), scoring outputs and bad input."""

from __future__ import annotations

import json
import shutil

import kaldiio
import numpy as np
import pytest
import torch

from purl.config import load_config
from purl.data.datadir import DataDirError, read_kv, read_trials
from purl.embed import embed_utterances
from purl.metrics import compute_eer, compute_eer_interpolated
from purl.models import build_model
from purl.stages.score import EER_INTERPOLATED, cohort_from_embeddings, collect_results, results_table, score_trial_lists
from purl.training.checkpoint import model_from_checkpoint, save_atomic
from purl.training.errors import TrainError
from tests.conftest import ROOT, run_script, write_feature_dir


def tiny_model(tiny_config):
    config = load_config(tiny_config)
    torch.manual_seed(0)
    return build_model(config["model"]["name"], **config["model"]["args"]), config


def test_an_utterance_embeds_the_same_in_a_batch_and_alone(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data", frames=(100, 101))  # all 100 frames: one batch
    feats = list(read_kv(data / "feats.scp").values())
    model, _ = tiny_model(tiny_config)
    batched = embed_utterances(model, feats, [100] * len(feats))
    alone = np.concatenate([embed_utterances(model, [f], [100]) for f in feats[:3]])
    np.testing.assert_allclose(batched[:3], alone, rtol=1e-5, atol=1e-6)
    cropped = embed_utterances(model, feats[:2], [100, 100], num_crops=3, crop_frames=40)
    assert cropped.shape == (2, 16)


def write_scp(path, table):
    with kaldiio.WriteHelper(f"ark,scp:{path.with_suffix('.ark')},{path}") as writer:
        for u, v in table.items():
            writer(u, np.asarray(v, dtype=np.float32))


def scored_setup(tmp_path, trials_text):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    emb = {f"s{s}-u{u}": centres[s] + 0.3 * rng.normal(size=8) for s in range(3) for u in range(4)}
    write_scp(tmp_path / "xvector.scp", emb)
    (tmp_path / "trials").write_text(trials_text)
    return tmp_path / "xvector.scp", emb


def test_scoring_writes_scores_results_and_det_plot(tmp_path):
    trials = "".join(f"s{a}-u0 s{b}-u{u} {'target' if a == b else 'nontarget'}\n"
                     for a in range(3) for b in range(3) for u in range(1, 4))
    scp, emb = scored_setup(tmp_path, trials)
    cohort_scp = tmp_path / "cohort.scp"
    write_scp(cohort_scp, emb)
    (tmp_path / "utt2spk").write_text("".join(f"{u} {u[:2]}\n" for u in sorted(emb)))
    cohort = cohort_from_embeddings(cohort_scp, tmp_path / "utt2spk")
    assert cohort.shape == (3, 8)
    np.testing.assert_allclose(cohort[0], np.mean([emb[f"s0-u{u}"] for u in range(4)], axis=0), rtol=1e-5)
    out = tmp_path / "exp" / "model" / "scores"
    results = score_trial_lists(scp, [tmp_path / "trials"], out, cohort=cohort, top_k=2)
    assert set(results[tmp_path.name]) == {"cosine", "as-norm"}
    assert results[tmp_path.name]["cosine"]["EER (%)"] == pytest.approx(0.0)
    for name in ("results.md", "results.json", f"det_{tmp_path.name}.png", f"{tmp_path.name}.cosine.score"):
        assert (out / name).is_file(), name
    assert len((out / f"{tmp_path.name}.as-norm.score").read_text().splitlines()) == 27
    text = collect_results(tmp_path / "exp", tmp_path / "RESULTS.md")
    assert "## model" in text and "| cosine | 0.00 |" in text


def test_results_give_the_originals_interpolated_eer_beside_todays(tmp_path):
    trials = "".join(f"s{a}-u{e} s{b}-u{u} {'target' if a == b else 'nontarget'}\n"
                     for a in range(3) for b in range(3) for e in range(4) for u in range(4) if (a, e) != (b, u))
    scp, _ = scored_setup(tmp_path, trials)
    rng = np.random.default_rng(1)  # speakers that overlap: an EER well above 0
    write_scp(scp, {f"s{s}-u{u}": rng.normal(size=8) + 0.5 * s for s in range(3) for u in range(4)})
    out = tmp_path / "scores"
    metrics = score_trial_lists(scp, [tmp_path / "trials"], out)[tmp_path.name]["cosine"]
    rows = [line.split() for line in (out / f"{tmp_path.name}.cosine.score").read_text().splitlines()]
    scores = np.array([float(r[2]) for r in rows])
    target = np.array([r[0][:2] == r[1][:2] for r in rows])
    assert metrics[EER_INTERPOLATED] == pytest.approx(100 * compute_eer_interpolated(scores, target), abs=1e-3)
    assert metrics["EER (%)"] == pytest.approx(100 * compute_eer(scores, target)[0], abs=1e-3)
    assert metrics[EER_INTERPOLATED] != metrics["EER (%)"] and metrics["EER (%)"] > 10
    assert "| EER (%) | minDCF(0.01) | minDCF(0.05) | EER interp. (%) |" in (out / "results.md").read_text()
    before = {"O": {"cosine": {"EER (%)": 1.0, "minDCF(0.01)": 0.1, "minDCF(0.05)": 0.05}}}  # results.json of before
    assert "| O | cosine | 1.00 | 0.1000 | 0.0500 | - |" in results_table(before)


def test_trial_without_embedding_names_the_line(tmp_path):
    scp, _ = scored_setup(tmp_path, "s0-u0 s0-u1 target\ns0-u0 s9-u9 nontarget\n")
    with pytest.raises(DataDirError, match=r"trials line 2: no embedding for 's9-u9'"):
        score_trial_lists(scp, [tmp_path / "trials"], tmp_path / "scores")


def test_empty_trial_list_is_an_error(tmp_path):
    scp, _ = scored_setup(tmp_path, "")
    with pytest.raises(DataDirError, match="empty trial list"):
        score_trial_lists(scp, [tmp_path / "trials"], tmp_path / "scores")


@pytest.mark.parametrize("kind, text", [("non-target", "s0-u0 s0-u1 target\n"), ("target", "s0-u0 s1-u1 nontarget\n")])
def test_trial_list_without_targets_or_nontargets_is_an_error(tmp_path, kind, text):
    scp, _ = scored_setup(tmp_path, text)
    with pytest.raises(DataDirError, match=f"has no {kind} trials"):
        score_trial_lists(scp, [tmp_path / "trials"], tmp_path / "scores")


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path, tiny_config):
    model, config = tiny_model(tiny_config)
    config["model"]["args"]["embed_dim"] = 32  # the saved config no longer fits the weights
    save_atomic({"model": model.state_dict(), "config": config}, tmp_path / "final.pt")
    with pytest.raises(TrainError, match="its weights do not fit ecapa_tdnn"):
        model_from_checkpoint(tmp_path / "final.pt")


def test_extract_embeddings_sh_writes_kaldi_vectors(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data")
    model, config = tiny_model(tiny_config)
    save_atomic({"model": model.state_dict(), "config": config}, tmp_path / "final.pt")
    out = tmp_path / "emb"
    run_script(ROOT / "steps" / "extract_embeddings.sh", "--nj", "2", tmp_path / "final.pt", data, out, cwd=tmp_path)
    vectors = kaldiio.load_scp(str(out / "xvector.scp"))
    assert len(vectors) == 24 and vectors["spk00-u00"].shape == (16,)
    assert (out / "mean.vec").read_text().startswith("[ ")
    rerun = run_script(ROOT / "steps" / "extract_embeddings.sh", "--nj", "2", tmp_path / "final.pt", data, out, cwd=tmp_path)
    assert "skipping" in rerun.stdout


def test_scoring_rerun_reuses_same_inputs_and_rescores_when_one_differs(tmp_path, caplog):
    from purl.stages.score import run_scoring

    trials = "".join(f"s{a}-u0 s{b}-u{u} {'target' if a == b else 'nontarget'}\n"
                     for a in range(3) for b in range(3) for u in range(1, 4))
    scp, _ = scored_setup(tmp_path, trials)
    out = tmp_path / "exp" / "m" / "scores"
    caplog.set_level("INFO")
    first = run_scoring(scp, out, [tmp_path / "trials"], top_k=5)
    (out / "results.md").write_text("a marker that a rescoring would overwrite\n")
    assert run_scoring(scp, out, [tmp_path / "trials"], top_k=5) == first
    assert "skipping" in caplog.text and (out / "results.md").read_text().startswith("a marker")
    (tmp_path / "trials").write_text(trials.replace("s0-u0 s0-u1 target\n", ""))
    run_scoring(scp, out, [tmp_path / "trials"], top_k=5, results=tmp_path / "RESULTS.md")
    assert "other settings or inputs (trials:" in caplog.text and "|" in (out / "results.md").read_text()
    assert "## m" in (tmp_path / "RESULTS.md").read_text()


def test_score_step_names_a_cohort_of_another_model_without_a_traceback(tmp_path):
    trials = "".join(f"s{a}-u0 s{b}-u1 {'target' if a == b else 'nontarget'}\n" for a in range(3) for b in range(3))
    scp, emb = scored_setup(tmp_path, trials)
    write_scp(tmp_path / "cohort.scp", {u: np.ones(4) for u in emb})  # 4-dim: another model's
    (tmp_path / "utt2spk").write_text("".join(f"{u} {u[:2]}\n" for u in sorted(emb)))
    proc = run_script(ROOT / "steps" / "score.py", "--cohort", tmp_path / "cohort.scp", "--cohort-utt2spk",
                      tmp_path / "utt2spk", scp, tmp_path / "scores", tmp_path / "trials", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("score.py: cohort has shape") and "Traceback" not in proc.stderr


# --- calibration (steps/calibrate.py after steps/score.py)

def calibration_setup(tmp_path, with_cohort=True):
    """A scored model: exp/m/scores from test embeddings and trials, and the
    training embeddings and data dir (utt2spk, utt2dur) to calibrate on."""
    from purl.data.datadir import make_trials, write_kv, write_trials
    from purl.stages.score import run_scoring

    rng = np.random.default_rng(0)
    emb, dirs = {}, {}
    for part, speakers in (("train", 30), ("test", 8)):
        centres = rng.normal(size=(speakers, 16))
        utt2spk, utt2dur = {}, {}
        for s in range(speakers):
            for u in range(6):
                utt = f"{part}{s:02d}-u{u}"
                seconds = float(rng.choice([1.5, 8.0]))  # short utterances: noisier embeddings
                emb[utt] = centres[s] + rng.normal(size=16) * (1.2 if seconds < 2 else 0.6) + 2.0
                utt2spk[utt], utt2dur[utt] = f"{part}{s:02d}", f"{seconds}"
        data = tmp_path / "data" / part
        data.mkdir(parents=True)
        write_kv(data / "utt2spk", utt2spk)
        write_kv(data / "utt2dur", utt2dur)
        dirs[part] = data
        write_scp(tmp_path / f"{part}.scp", {u: v for u, v in emb.items() if u.startswith(part)})
    write_trials(dirs["test"] / "trials", make_trials(read_kv(dirs["test"] / "utt2spk"), seed=1))
    mean = tmp_path / "mean.vec"
    mean.write_text("[ " + " ".join(f"{v:.6f}" for v in np.mean([emb[u] for u in emb if u.startswith("train")], 0))
                    + " ]\n")
    scores = tmp_path / "exp" / "m" / "scores"
    cohort = dict(cohort=tmp_path / "train.scp", cohort_utt2spk=dirs["train"] / "utt2spk") if with_cohort else {}
    run_scoring(tmp_path / "test.scp", scores, [dirs["test"] / "trials"], mean=mean, top_k=10, **cohort)
    return scores, dirs


def test_calibration_writes_llrs_metrics_diagram_and_the_calibration_record(tmp_path):
    from purl.metrics import cllr, compute_eer
    from purl.stages.calibrate import run_calibration

    scores, dirs = calibration_setup(tmp_path)
    before = {p.name: p.read_bytes() for p in scores.glob("*.score")}
    results_before = (scores / "results.json").read_bytes()
    threshold_before = (scores / "threshold.json").read_text()
    report = run_calibration(tmp_path / "train.scp", dirs["train"], scores, num_speakers=20, seed=0,
                             results=tmp_path / "exp" / "RESULTS.md")
    # the raw scores and their metrics are untouched
    assert {p.name: p.read_bytes() for p in scores.glob("*.score")} == before
    assert (scores / "results.json").read_bytes() == results_before
    assert report["measures"] == ["duration", "magnitude", "imposter mean"]
    metrics = report["results"]["test"]
    assert set(metrics) == {"cosine", "as-norm"} and set(metrics["cosine"]) == {"linear", "qmf"}
    raw = json.loads(results_before)["test"]
    for method in ("cosine", "as-norm"):
        linear = metrics[method]["linear"]
        # a monotone map: the same EER and minDCF as the raw scores
        assert linear["EER (%)"] == pytest.approx(raw[method]["EER (%)"])
        assert linear["minDCF(0.01)"] == pytest.approx(raw[method]["minDCF(0.01)"])
        assert linear["Cllr"] >= linear["min Cllr"] and linear["actDCF(0.05)"] >= linear["minDCF(0.05)"]
    # the LLR files, in the trial list's order
    trials = read_trials(dirs["test"] / "trials")
    lines = (scores / "test.cosine.linear.llr").read_text().splitlines()
    assert [tuple(line.split()[:2]) for line in lines] == [(a, b) for a, b, _ in trials]
    llr = np.array([float(line.split()[2]) for line in lines])
    labels = np.array([t for _, _, t in trials])
    assert cllr(llr, labels) == pytest.approx(metrics["cosine"]["linear"]["Cllr"], abs=1e-5)
    assert compute_eer(llr, labels)[0] * 100 == pytest.approx(metrics["cosine"]["linear"]["EER (%)"])
    for name in ("test.as-norm.qmf.llr", "reliability_test.png", "calibration.md", "calibration_trials"):
        assert (scores / name).is_file(), name
    # calibration utterances are training utterances of 20 speakers, never test ones
    cal = read_trials(scores / "calibration_trials")
    assert {u[:7] for a, b, _ in cal for u in (a, b)} <= {f"train{s:02d}" for s in range(30)}
    assert len({u[:7] for a, b, _ in cal for u in (a, b)}) == 20
    # threshold.json keeps what scoring wrote (mean, EER threshold) and gains the calibration
    record = json.loads((scores / "threshold.json").read_text())
    assert record["threshold"] == json.loads(threshold_before)["threshold"] and len(record["mean"]) == 16
    assert record["calibration"]["p_target"] == 0.05
    assert record["calibration"]["scale"] == pytest.approx(report["fits"]["cosine"]["linear"]["weights"][0])
    text = (tmp_path / "exp" / "RESULTS.md").read_text()
    assert "| test | cosine + linear |" in text and "| test | as-norm + qmf |" in text
    assert text.count("| test | cosine |") == 1  # the raw scores' row, as before calibration


def test_calibration_rerun_skips_and_redoes_after_a_rescoring(tmp_path, caplog):
    from purl.stages.calibrate import run_calibration
    from purl.stages.score import run_scoring

    scores, dirs = calibration_setup(tmp_path, with_cohort=False)
    caplog.set_level("INFO")
    first = run_calibration(tmp_path / "train.scp", dirs["train"], scores, num_speakers=20)
    assert set(first["results"]["test"]) == {"cosine"} and first["measures"] == ["duration", "magnitude"]
    assert run_calibration(tmp_path / "train.scp", dirs["train"], scores, num_speakers=20) == first
    assert "calibration.json was made from the same settings" in caplog.text
    # another seed draws other speakers
    assert run_calibration(tmp_path / "train.scp", dirs["train"], scores, num_speakers=20, seed=1) != first
    # a rescoring rewrites threshold.json without the calibration: calibrating again restores it
    (scores / "results.json").unlink()
    run_scoring(tmp_path / "test.scp", scores, [dirs["test"] / "trials"], mean=tmp_path / "mean.vec", top_k=10)
    assert "calibration" not in json.loads((scores / "threshold.json").read_text())
    run_calibration(tmp_path / "train.scp", dirs["train"], scores, num_speakers=20, seed=1)
    assert "calibration" in json.loads((scores / "threshold.json").read_text())


def test_calibration_refuses_the_evaluation_list_and_its_utterances(tmp_path):
    from purl.calibration import CalibrationError
    from purl.stages.calibrate import run_calibration

    scores, dirs = calibration_setup(tmp_path, with_cohort=False)
    with pytest.raises(CalibrationError, match="is an evaluation list"):
        run_calibration(tmp_path / "test.scp", dirs["test"], scores, dev_trials=dirs["test"] / "trials")
    (dirs["test"] / "dev_trials").write_text((dirs["test"] / "trials").read_text().splitlines()[0] + "\n")
    with pytest.raises(CalibrationError, match="in the evaluation list"):
        run_calibration(tmp_path / "test.scp", dirs["test"], scores, dev_trials=dirs["test"] / "dev_trials")


def test_calibrate_step_without_scoring_json_says_what_to_run(tmp_path):
    scores, dirs = calibration_setup(tmp_path, with_cohort=False)
    (scores / "scoring.json").unlink()
    proc = run_script(ROOT / "steps" / "calibrate.py", tmp_path / "train.scp", dirs["train"], scores, check=False)
    assert proc.returncode == 1 and "scoring.json: missing (run steps/score.py" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_summary_gains_calibration_columns_after_the_existing_ones(tmp_path):
    from purl.stages.calibrate import run_calibration
    from purl.stages.score import COLUMNS, summary_rows, summary_table

    scores, dirs = calibration_setup(tmp_path, with_cohort=False)
    exp = scores.parent
    before = summary_table([("model", exp)])
    assert before.splitlines()[0] == "| model | " + " | ".join(COLUMNS) + " |"
    run_calibration(tmp_path / "train.scp", dirs["train"], scores, num_speakers=20)
    after = summary_table([("model", exp)])
    header, _, row = after.splitlines()[:3]
    assert header == "| model | EER (%) | minDCF(0.01) | minDCF(0.05) | Cllr | actDCF(0.01) | actDCF(0.05) |"
    # the existing columns keep their values and places
    assert row.startswith(before.splitlines()[2].removesuffix(" |"))
    metrics = summary_rows([("model", exp)])[0]
    linear = json.loads((scores / "calibration.json").read_text())["results"]["test"]["cosine"]["linear"]
    assert metrics["Cllr"] == linear["Cllr"] and metrics["actDCF(0.05)"] == linear["actDCF(0.05)"]
    # a model without calibration beside a calibrated one: dashes in its calibration columns
    shutil.copytree(scores, exp.parent / "other" / "scores")
    (exp.parent / "other" / "scores" / "calibration.json").unlink()
    mixed = summary_table([("model", exp), ("other", exp.parent / "other")]).splitlines()
    assert mixed[2] == row and mixed[3].endswith(" | - | - | - |")


def test_epoch_results_tabulate_and_plot_every_scored_epoch(tmp_path):
    from purl.stages.score import EPOCH_SCORES, epoch_results

    exp = tmp_path / "exp" / "m"
    for epoch, eer in ((202, 3.0), (201, 4.0), (210, 2.5)):
        (exp / EPOCH_SCORES / f"epoch_{epoch}").mkdir(parents=True)
        metrics = {"EER (%)": eer, "minDCF(0.01)": 0.3, "minDCF(0.05)": 0.2, EER_INTERPOLATED: eer + 0.01}
        (exp / EPOCH_SCORES / f"epoch_{epoch}" / "results.json").write_text(json.dumps({"vox1_O": {"cosine": metrics}}))
    (exp / EPOCH_SCORES / "epoch_203").mkdir()  # no results.json: not scored (yet)
    text = epoch_results(exp)
    assert [line.split(" | ")[0] for line in text.splitlines()[4:]] == ["| 201", "| 202", "| 210"]
    assert "| 201 | vox1_O | 4.00 | 0.3000 | 0.2000 | 4.01 |" in text
    assert (exp / EPOCH_SCORES / "results.csv").read_text().splitlines()[1] == "201,vox1_O,4.0,0.3,0.2,4.01"
    assert (exp / EPOCH_SCORES / "eer.png").stat().st_size > 0


@pytest.mark.parametrize("epochs, message", [("5", "--epochs '5': give A:B"), ("7:6", "--epochs '7:6': give A:B"),
                                             ("1:2", "has none of epoch_1.pt ... epoch_2.pt")])
def test_score_epochs_refuses_a_bad_range_and_a_run_without_the_checkpoints(tmp_path, epochs, message):
    (tmp_path / "exp" / "models").mkdir(parents=True)
    proc = run_script("bash", ROOT / "steps" / "score_epochs.sh", "--epochs", epochs, tmp_path / "exp",
                      tmp_path / "data", tmp_path / "data" / "trials", check=False)
    assert proc.returncode == 1 and message in proc.stderr
