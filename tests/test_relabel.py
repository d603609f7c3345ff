"""The relabel method: proposals against the ground truth, and its data dir."""

from __future__ import annotations

import json

import numpy as np
import pytest

from purl.data.datadir import read_kv, utt2spk_to_spk2utt, validate_data_dir, write_kv
from purl.kaldi_io import save_embeddings
from purl.relabel import Proposals, RelabelError, RelabelSettings, proposal_metrics, propose
from purl.stages.relabel_data_dir import run_relabel
from purl.testing import simulate_embeddings


def test_proposals_move_mislabelled_utterances_back_to_their_true_speaker():
    emb, noisy, true = simulate_embeddings([20] * 30, dim=64, noise_rate=0.2, seed=1)
    proposals = propose(emb, noisy)
    metrics = proposal_metrics(noisy, proposals, true)
    assert metrics["relabel_precision"] > 0.95 and metrics["relabel_recall"] > 0.8
    assert metrics["clean_moved"] <= 3 and metrics["clean_dropped"] <= 0.02 * len(noisy)


def test_without_noise_almost_nothing_is_proposed():
    emb, noisy, true = simulate_embeddings([20] * 30, dim=64, noise_rate=0.0, seed=2)
    proposals = propose(emb, noisy)
    assert proposals.moved(noisy).sum() <= 3 and proposals.dropped.sum() <= 0.02 * len(noisy)


def test_outsiders_are_dropped_not_moved():
    """Utterances of speakers with no label (true speaker 30..34) under training labels."""
    emb, _, true = simulate_embeddings([20] * 35, dim=64, noise_rate=0.0, clean_cos=(0.6, 0.7), utt_spread=0.3, seed=3)
    outsider = true >= 30
    labels = true.copy()
    labels[outsider] = np.random.default_rng(0).integers(0, 30, outsider.sum())
    proposals = propose(emb, labels)
    metrics = proposal_metrics(labels, proposals, np.where(outsider, -2, true), training=~outsider)
    assert metrics["outsiders"] == 100
    assert metrics["outsiders_dropped"] >= 75 and metrics["outsiders_moved"] <= 10
    assert metrics["clean_dropped"] <= 0.03 * (~outsider).sum()


def test_a_move_torn_between_two_speakers_is_dropped_not_made():
    """Three speakers of 10 utterances at unit axes e0, e1, e2; utterance 0 of
    speaker 0 sits between speakers 1 and 2 (cos 0.70 and 0.66 to their
    centroids): it leads its own label by far, the runner-up by 0.04. The
    join test is off (join_spread 1e6): the speakers are too tight for it."""
    emb = np.repeat(np.eye(3), 10, axis=0) + 0.01 * np.random.default_rng(0).standard_normal((30, 3))
    emb[0] = [0.0, 0.72, 0.68]
    labels = np.repeat(np.arange(3), 10)
    torn = propose(emb, labels, RelabelSettings(join_spread=1e6, runner_up_margin=0.1))
    assert torn.new[0] == -1 and (torn.new[1:] == labels[1:]).all()
    moved = propose(emb, labels, RelabelSettings(join_spread=1e6, runner_up_margin=0))  # any lead moves: to the nearer one
    assert moved.new[0] == 1 and (moved.new[1:] == labels[1:]).all()
    emb[0] = [0.0, 0.95, 0.31]  # a clear lead: moves under either setting
    assert propose(emb, labels, RelabelSettings(join_spread=1e6, runner_up_margin=0.1)).new[0] == 1


def test_proposal_metrics_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    true = np.array([0, 1, 1, 0, 2, -2])  # utt 1 and 3 mislabelled (recoverable), utt 5 an outsider
    new = np.array([0, 1, 1, 2, -1, -1])  # 1 moved right, 3 moved wrong, 4 (clean) and 5 dropped
    zeros = np.zeros(6)
    p = Proposals(new=new, own=zeros, best=zeros, best_speaker=np.zeros(6, np.int64), own_rank=np.zeros(6, np.int64))
    f = proposal_metrics(labels, p, true, training=true >= 0)
    assert f["n_moved"] == 2 and f["relabel_precision"] == 0.5 and f["relabel_recall"] == 0.5
    assert f["n_dropped"] == 2 and f["drop_precision"] == 0.5 and f["clean_dropped"] == 1
    assert f["outsiders_dropped"] == 1 and f["mislabelled_left"] == 1


def test_bad_settings_and_inputs_are_refused():
    emb, noisy, _ = simulate_embeddings([5] * 3, dim=8, seed=0)
    with pytest.raises(RelabelError, match="core_ratio"):
        propose(emb, noisy, RelabelSettings(core_ratio=0))
    with pytest.raises(RelabelError, match="runner_up_margin"):
        propose(emb, noisy, RelabelSettings(runner_up_margin=-0.1))
    with pytest.raises(RelabelError, match="at least 2 speakers"):
        propose(emb[:5], np.zeros(5, np.int64))
    with pytest.raises(RelabelError, match="integers"):
        propose(emb, noisy.astype(float))


def test_relabel_dir_writes_labels_proposals_and_report_and_skips_a_rerun(tmp_path, caplog):
    emb, noisy, true = simulate_embeddings([12] * 10, dim=32, noise_rate=0.2, seed=4)
    utts = [f"s{t}-u{i:03d}" for i, t in enumerate(true)]
    src = tmp_path / "noisy"
    src.mkdir()
    write_kv(src / "utt2spk", {u: f"s{n}" for u, n in zip(utts, noisy)})
    write_kv(src / "spk2utt", utt2spk_to_spk2utt(read_kv(src / "utt2spk")))
    write_kv(src / "utt2truespk", {u: f"s{t}" for u, t in zip(utts, true)})
    save_embeddings(tmp_path / "xvector.ark", utts, emb)
    scp = tmp_path / "xvector.scp"
    assert scp.is_file()
    report = run_relabel(scp, src, tmp_path / "relabelled")
    out = validate_data_dir(tmp_path / "relabelled", require=["utt2spk", "spk2utt", "utt2truespk"])
    assert report == json.loads((tmp_path / "relabelled" / "relabel.json").read_text())
    assert report["relabel_precision"] > 0.9 and report["moved"] > 0
    lines = (tmp_path / "relabelled" / "proposals").read_text().splitlines()
    assert len(lines) == report["moved"] + report["dropped"]
    utt, old, new, margin, _ = lines[0].split()
    assert read_kv(src / "utt2spk")[utt] == old and (new == "-" or out.utt2spk[utt] == new)
    margins = [float(line.split()[3]) for line in lines]
    assert margins == sorted(margins, reverse=True)
    caplog.set_level("INFO")
    assert run_relabel(scp, src, tmp_path / "relabelled") is None and "skipping" in caplog.text
    assert run_relabel(scp, src, tmp_path / "relabelled", RelabelSettings(margin=0.3)) is not None


def test_keep_dropped_keeps_them_under_their_old_label_and_lists_them(tmp_path):
    """Outsiders (true speakers 8, 9) under training labels: the ones it drops."""
    emb, _, true = simulate_embeddings([12] * 10, dim=32, noise_rate=0.0, clean_cos=(0.6, 0.7), utt_spread=0.3, seed=3)
    labels = np.where(true >= 8, np.random.default_rng(0).integers(0, 8, len(true)), true)
    utts = [f"s{t}-u{i:03d}" for i, t in enumerate(true)]
    src = tmp_path / "noisy"
    src.mkdir()
    write_kv(src / "utt2spk", {u: f"s{n}" for u, n in zip(utts, labels)})
    write_kv(src / "spk2utt", utt2spk_to_spk2utt(read_kv(src / "utt2spk")))
    save_embeddings(tmp_path / "xvector.ark", utts, emb)
    dropped = run_relabel(tmp_path / "xvector.scp", src, tmp_path / "dropped")
    kept = run_relabel(tmp_path / "xvector.scp", src, tmp_path / "kept", keep_dropped=True)
    assert kept == dropped and kept["dropped"] >= 10  # of the 24 outsiders
    listed = (tmp_path / "kept" / "unreliable_utts").read_text().split()
    assert len(listed) == kept["dropped"] and not (tmp_path / "dropped" / "unreliable_utts").exists()
    old, without, with_them = (read_kv(d / "utt2spk") for d in (src, tmp_path / "dropped", tmp_path / "kept"))
    assert set(with_them) == set(old) and set(without) == set(old) - set(listed)
    assert all(with_them[u] == old[u] for u in listed) and all(with_them[u] == without[u] for u in without)
