"""The regroup method: labels holding two voices split, labels of one voice
joined, against the ground truth of merge and split noise; and its data dir."""

from __future__ import annotations

import json

import numpy as np
import pytest

from purl.data.datadir import read_kv, utt2spk_to_spk2utt, validate_data_dir, write_kv
from purl.kaldi_io import save_embeddings
from purl.label_noise import merge_speakers, split_speakers
from purl.regroup import RegroupError, RegroupSettings, pair_structure, regroup, regrouping_metrics
from purl.stages.regroup_data_dir import run_regroup
from purl.testing import simulate_embeddings


def _labelled(emb_true, noise):
    """(labels, names) of ``noise`` (merge_speakers or split_speakers) at 20% on the true labels."""
    utt2spk = {f"u{i:04d}": f"s{t:02d}" for i, t in enumerate(emb_true)}
    noisy = noise(utt2spk, 0.2, 0)
    names = sorted(set(noisy.values()))
    index = {n: k for k, n in enumerate(names)}
    return np.array([index[noisy[u]] for u in utt2spk]), names


def test_merged_labels_are_split_into_their_two_voices():
    emb, _, true = simulate_embeddings([20] * 40, dim=64, noise_rate=0.0, seed=0)
    labels, names = _labelled(true, merge_speakers)
    regrouping = regroup(emb, labels, names)
    metrics = regrouping_metrics(labels, regrouping, true)
    assert len(regrouping.splits) == metrics["splits_right"] == 8  # 160 utterances: 8 speakers of 20 absorbed
    assert metrics["pair_precision_before"] < 0.75 and metrics["pair_precision"] == 1.0
    assert metrics["pair_recall"] == 1.0 and not regrouping.joins
    new_names = {regrouping.names[n] for _, n, *_ in regrouping.splits}
    assert all(n.endswith("-2") for n in new_names)


def test_labels_of_one_voice_are_joined_under_the_larger_name():
    emb, _, true = simulate_embeddings([20] * 40, dim=64, noise_rate=0.0, seed=1)
    labels, names = _labelled(true, split_speakers)
    regrouping = regroup(emb, labels, names)
    metrics = regrouping_metrics(labels, regrouping, true)
    assert metrics["pair_recall_before"] < 0.8 and metrics["pair_recall"] == 1.0
    assert len(regrouping.joins) == metrics["joins_right"] == 16 and not regrouping.splits
    kept = {regrouping.names[k] for _, k, *_ in regrouping.joins}
    assert not any(n.endswith("-split") for n in kept)  # equal halves: the name first in order is kept


@pytest.mark.parametrize("noise_rate", [0.0, 0.2])
def test_labels_of_one_voice_each_stay_as_they_are(noise_rate):
    """Clean labels, and uniform swaps (each label one voice and scattered strangers):
    nothing, or next to nothing, to regroup."""
    emb, noisy, true = simulate_embeddings([20] * 40, dim=64, noise_rate=noise_rate, seed=2)
    regrouping = regroup(emb, noisy, [f"s{k}" for k in range(40)])
    metrics = regrouping_metrics(noisy, regrouping, true)
    assert len(regrouping.splits) + len(regrouping.joins) <= 2 * (noise_rate > 0)
    assert metrics["pair_precision"] >= metrics["pair_precision_before"] - 1e-9


def test_pair_structure_by_hand():
    # same-label pairs: (0,1) one speaker, (2,3) two; one speaker's pairs: (0,1) (0,2) (1,2)
    assert pair_structure([0, 0, 1, 1], [0, 0, 0, 1]) == {"pair_precision": 0.5, "pair_recall": 1 / 3}


def test_bad_settings_and_inputs_are_refused():
    emb = np.random.default_rng(0).standard_normal((6, 4))
    for bad in (RegroupSettings(min_share=0.6), RegroupSettings(min_utts=0), RegroupSettings(halves=1.5),
                RegroupSettings(restarts=-1), RegroupSettings(split_spread=-1.0)):
        with pytest.raises(RegroupError):
            regroup(emb, np.array([0, 0, 0, 1, 1, 1]), ["a", "b"], bad)
    with pytest.raises(RegroupError, match="at least 2 labels"):
        regroup(emb, np.zeros(6, int), ["a"])
    with pytest.raises(RegroupError, match="'c' has no utterance"):
        regroup(emb, np.array([0, 0, 0, 1, 1, 1]), ["a", "b", "c"])
    with pytest.raises(RegroupError, match="indices"):
        regroup(emb, np.array([0, 0, 0, 1, 1, 5]), ["a", "b"])


def test_regroup_dir_writes_labels_changes_and_report_and_skips_a_rerun(tmp_path, caplog):
    emb, _, true = simulate_embeddings([12] * 16, dim=32, noise_rate=0.0, seed=4)
    utts = [f"s{t:02d}-u{i:03d}" for i, t in enumerate(true)]
    noisy = merge_speakers({u: f"s{t:02d}" for u, t in zip(utts, true)}, 0.2, 0)
    src = tmp_path / "noisy"
    src.mkdir()
    write_kv(src / "utt2spk", noisy)
    write_kv(src / "spk2utt", utt2spk_to_spk2utt(noisy))
    write_kv(src / "utt2truespk", {u: f"s{t:02d}" for u, t in zip(utts, true)})
    save_embeddings(tmp_path / "xvector.ark", utts, emb)
    scp, out = tmp_path / "xvector.scp", tmp_path / "regrouped"
    report = run_regroup(scp, src, out)
    new = validate_data_dir(out, require=["utt2spk", "spk2utt", "utt2truespk", "utt2oldspk"])
    assert report == json.loads((out / "regroup.json").read_text())
    assert report["splits"] == report["splits_right"] >= 2
    assert report["pair_precision"] > report["pair_precision_before"]
    assert set(new.utts) == set(noisy) and read_kv(out / "utt2oldspk") == noisy
    lines = (out / "regroups").read_text().splitlines()
    assert len(lines) == report["splits"] + report["joins"]
    kind, label, new_label, moved, _ = lines[0].split()
    assert kind == "split" and new_label == f"{label}-2"
    assert sum(new.utt2spk[u] == new_label for u in new.utts) == int(moved)
    caplog.set_level("INFO")
    assert run_regroup(scp, src, out) is None and "skipping" in caplog.text
    assert run_regroup(scp, src, out, RegroupSettings(min_share=0.4)) is not None
