"""Stage 4 end to end from an xvector.scp, and the pair weights stage 5 reads."""

from __future__ import annotations

import json

import kaldiio
import numpy as np
import pytest

from purl.data.datadir import DataDirError, utt2spk_to_spk2utt, validate_data_dir, write_kv
from purl.pair_weights import pair_weights_from_dir
from purl.testing import simulate_embeddings
from tests.conftest import ROOT, run_script


def noisy_dir_with_embeddings(tmp_path, speakers=12, utts=30):
    emb, noisy, true = simulate_embeddings([utts] * speakers, dim=32, noise_rate=0.2, seed=4)
    names = [f"s{t:02d}-u{n:03d}" for n, t in enumerate(true)]
    data = tmp_path / "train_noisy"
    data.mkdir()
    utt2spk = {u: f"s{label:02d}" for u, label in zip(names, noisy)}
    write_kv(data / "utt2spk", utt2spk)
    write_kv(data / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    write_kv(data / "utt2truespk", {u: f"s{t:02d}" for u, t in zip(names, true)})
    emb_dir = tmp_path / "emb"
    emb_dir.mkdir()
    with kaldiio.WriteHelper(f"ark,scp:{emb_dir / 'xvector.ark'},{emb_dir / 'xvector.scp'}") as writer:
        for u, e in zip(names, emb):
            writer(u, e)
    return data, emb_dir / "xvector.scp", utt2spk


def test_reliability_stage_reports_detection_and_writes_what_stage_5_needs(tmp_path):
    data, scp, utt2spk = noisy_dir_with_embeddings(tmp_path)
    out = tmp_path / "reliability"
    proc = run_script(ROOT / "steps" / "reliability.py", "--compare", "sklearn,global", "--clean-dir",
                      tmp_path / "cleaned", scp, data, out)
    assert "Detection against the ground truth" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["detection"]["pair_auc"] > 0.9
    assert set(report["compare"]) == {"histogram", "sklearn", "global"}
    for name in ("embeddings.npy", "gmm.npz", "reliability.json", "utts", "reliability.png", "report.md"):
        assert (out / name).is_file(), name
    suspected = [line.split()[0] for line in (out / "suspected_mislabelled").read_text().splitlines()]
    cleaned = validate_data_dir(tmp_path / "cleaned")
    assert len(cleaned) == len(utt2spk) - len(suspected) and not set(suspected) & set(cleaned.utts)
    rerun = run_script(ROOT / "steps" / "reliability.py", "--compare", "sklearn,global", "--clean-dir",
                       tmp_path / "cleaned", scp, data, out)
    assert "skipping" in rerun.stderr

    weights = pair_weights_from_dir(out, data)
    names = sorted(utt2spk)
    speaker_index = {s: n for n, s in enumerate(sorted(set(utt2spk.values())))}
    utts = np.array([0, 1, 2, 3, 4, 5, 200])
    labels = np.array([speaker_index[utt2spk[names[u]]] for u in utts])
    w = weights.pair_weights(utts, labels).numpy()
    assert w.shape == (7, 7) and np.allclose(w, w.T)
    assert labels[0] != labels[6] and w[0, 6] == 1.0  # pairs of different labels are not weighed
    a, b = next((a, b) for a in range(6) for b in range(a + 1, 6) if labels[a] == labels[b])
    expected = weights.reliability.weight(weights.rows[[utts[a]]], weights.rows[[utts[b]]])[0]
    assert w[a, b] == pytest.approx(expected)


def test_pair_weights_refuse_a_dir_with_other_labels(tmp_path):
    data, scp, utt2spk = noisy_dir_with_embeddings(tmp_path)
    run_script(ROOT / "steps" / "reliability.py", scp, data, tmp_path / "rel")
    relabelled = dict(utt2spk)
    first = next(iter(relabelled))
    relabelled[first] = "s11" if relabelled[first] != "s11" else "s10"
    write_kv(data / "utt2spk", relabelled)
    write_kv(data / "spk2utt", utt2spk_to_spk2utt(relabelled))
    with pytest.raises(DataDirError, match="fitted with other speaker labels"):
        pair_weights_from_dir(tmp_path / "rel", data)


def test_paper_config_counts_a_failed_fit_in_the_report_and_default_records_stay_as_before(tmp_path, monkeypatch):
    from sklearn.mixture import GaussianMixture

    from purl.stages.reliability import load_reliability_config, run_stage, stage_settings

    data, scp, _ = noisy_dir_with_embeddings(tmp_path, speakers=6, utts=12)
    fit, calls = GaussianMixture.fit, []

    def first_fit_raises(self, X, y=None):
        calls.append(len(X))
        if len(calls) == 1:
            raise np.linalg.LinAlgError("a fit that fails")
        return fit(self, X, y)

    monkeypatch.setattr(GaussianMixture, "fit", first_fit_raises)
    paper = load_reliability_config(ROOT / "egs" / "voxceleb" / "conf" / "paper" / "reliability.yaml")
    assert (paper["min_std"], paper["cosine_dtype"], paper["failed_fit"]) == (1e-6, "float32", "w1")
    report = run_stage(scp, data, tmp_path / "rel", paper)
    assert report["detection"]["n_speakers_fit_failed"] == 1 and len(calls) == 6
    assert "of them, 1 because their GMM fit raised" in (tmp_path / "rel" / "report.md").read_text()
    assert json.loads((tmp_path / "rel" / "reliability.json").read_text())["n_speakers_fit_failed"] == 1

    tuned = load_reliability_config(ROOT / "egs" / "voxceleb" / "conf" / "tuned" / "reliability.yaml")
    assert "cosine_dtype" not in stage_settings(scp, data, tuned, None)["gmm"]
    assert stage_settings(scp, data, paper, None)["gmm"]["cosine_dtype"] == "float32"
