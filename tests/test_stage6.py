"""Stage 6: extraction (batched equals alone), scoring outputs and bad input."""

from __future__ import annotations

import json

import kaldiio
import numpy as np
import pytest
import torch

from purl.config import load_config
from purl.data.datadir import DataDirError, read_kv
from purl.embed import embed_utterances
from purl.metrics import compute_eer, compute_eer_interpolated
from purl.models import build_model
from purl.stages.scoring import EER_INTERPOLATED, cohort_from_embeddings, collect_results, results_table, score_trial_lists
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
    figures = score_trial_lists(scp, [tmp_path / "trials"], out)[tmp_path.name]["cosine"]
    rows = [line.split() for line in (out / f"{tmp_path.name}.cosine.score").read_text().splitlines()]
    scores = np.array([float(r[2]) for r in rows])
    target = np.array([r[0][:2] == r[1][:2] for r in rows])
    assert figures[EER_INTERPOLATED] == pytest.approx(100 * compute_eer_interpolated(scores, target), abs=1e-3)
    assert figures["EER (%)"] == pytest.approx(100 * compute_eer(scores, target)[0], abs=1e-3)
    assert figures[EER_INTERPOLATED] != figures["EER (%)"] and figures["EER (%)"] > 10
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
    from purl.stages.scoring import run_scoring

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


def test_epoch_results_tabulate_and_plot_every_scored_epoch(tmp_path):
    from purl.stages.scoring import EPOCH_SCORES, epoch_results

    exp = tmp_path / "exp" / "m"
    for epoch, eer in ((202, 3.0), (201, 4.0), (210, 2.5)):
        (exp / EPOCH_SCORES / f"epoch_{epoch}").mkdir(parents=True)
        figures = {"EER (%)": eer, "minDCF(0.01)": 0.3, "minDCF(0.05)": 0.2, EER_INTERPOLATED: eer + 0.01}
        (exp / EPOCH_SCORES / f"epoch_{epoch}" / "results.json").write_text(json.dumps({"vox1_O": {"cosine": figures}}))
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
