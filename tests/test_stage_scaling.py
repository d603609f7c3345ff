"""The stage paths that were quadratic in the number of utterances stay linear.

Not timed: each test counts what a quadratic version does per utterance (a
data-dir property read, a file reread per job, a file opened per entry) on a
few thousand generated utterances, where such a count is far above the bound.
"""

from __future__ import annotations

import kaldiio
import numpy as np
import pytest

from purl.data import datadir as datadir_module
from purl.data.datadir import DataDir, read_kv, split_data_dir, utt2spk_to_spk2utt
from purl.data.dataset import SpeakerBatchSampler
from purl.kaldi_io import load_embeddings
from purl.pair_weights import pair_weights_from_dir
from purl.stages.reliability import run_reliability
from purl.testing import simulate_embeddings
from tests.test_reliability_stage import noisy_dir_with_embeddings

UTTS, SPEAKERS = 6000, 60


@pytest.fixture
def counted_properties(monkeypatch):
    """Counts reads of DataDir.utts and .speakers (a list copy each before)."""
    counts = {}
    for name in ("utts", "speakers"):
        prop = getattr(DataDir, name)

        def counted(self, prop=prop, name=name):
            counts[name] = counts.get(name, 0) + 1
            return prop.fget(self)

        monkeypatch.setattr(DataDir, name, property(counted))
    return counts


def noisy_dir(tmp_path):
    data, scp, utt2spk = noisy_dir_with_embeddings(tmp_path, speakers=SPEAKERS, utts=UTTS // SPEAKERS)
    return data, scp, sorted(utt2spk)


def test_stage4_and_the_pair_weights_read_the_data_dir_a_bounded_number_of_times(tmp_path, counted_properties):
    data, scp, names = noisy_dir(tmp_path)
    report = run_reliability(scp, data, tmp_path / "rel", clean_dir=tmp_path / "cleaned")
    assert report["n_suspected"] > 100  # the old per-suspect reads would count far more than the bound
    # A list read per utterance (or per suspect) made stage 4 quadratic.
    assert max(counted_properties.values()) <= 10, counted_properties
    suspected = (tmp_path / "rel" / "suspected_mislabelled").read_text().splitlines()
    assert len(suspected) == report["n_suspected"]
    assert len(read_kv(tmp_path / "cleaned" / "utt2spk")) == UTTS - report["n_suspected"]

    counted_properties.clear()
    weights = pair_weights_from_dir(tmp_path / "rel", data)
    assert max(counted_properties.values()) <= 10, counted_properties
    assert len(weights.rows) == UTTS


def test_split_reads_each_file_once_and_matches_a_subset_per_part(tmp_path, monkeypatch):
    data, _, names = noisy_dir(tmp_path)
    reads = []
    real_read_kv = datadir_module.read_kv
    monkeypatch.setattr(datadir_module, "read_kv", lambda path, **kw: reads.append(path) or real_read_kv(path, **kw))
    parts = split_data_dir(data, 16)
    # Once per file of the dir, not once per file and job.
    assert len(reads) == len(set(reads)) <= 4, reads
    utt2spk, utt2truespk = read_kv(data / "utt2spk"), read_kv(data / "utt2truespk")
    joined = {}
    for part in parts:
        part_utt2spk = read_kv(part / "utt2spk")
        assert read_kv(part / "spk2utt", multi=True) == utt2spk_to_spk2utt(part_utt2spk)
        assert read_kv(part / "utt2truespk") == {u: utt2truespk[u] for u in part_utt2spk}
        joined.update(part_utt2spk)
    assert joined == utt2spk and list(joined) == list(utt2spk)
    assert abs(len(read_kv(parts[0] / "utt2spk")) - UTTS / 16) <= 1


def test_embeddings_are_read_without_opening_the_ark_per_entry(tmp_path, monkeypatch):
    _, scp, names = noisy_dir(tmp_path)
    reference = kaldiio.load_scp(str(scp))
    expected = np.stack([reference[u] for u in reference])
    opened = []
    real_load_mat = kaldiio.load_mat
    monkeypatch.setattr(kaldiio, "load_mat", lambda *a, **kw: opened.append(a) or real_load_mat(*a, **kw))
    utts, loaded = load_embeddings(scp)
    assert not opened
    assert sorted(utts) == names and np.array_equal(loaded, expected)


def test_embeddings_in_other_forms_are_read_too(tmp_path):
    rng = np.random.default_rng(0)
    vectors = {f"u{i}": rng.standard_normal(8) for i in range(5)}  # float64: Kaldi's DV, not FV
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'd.ark'},{tmp_path / 'd.scp'}") as writer:
        for u, v in vectors.items():
            writer(u, v)
    utts, loaded = load_embeddings(tmp_path / "d.scp")
    assert utts == list(vectors) and loaded.dtype == np.float32
    assert np.allclose(loaded, np.stack(list(vectors.values())), atol=1e-6)
    (tmp_path / "bad.scp").write_text("u0 no-offset-here\n")
    with pytest.raises(datadir_module.DataDirError, match=r"bad.scp line 1: expected 'utt ark-path:offset'"):
        load_embeddings(tmp_path / "bad.scp")


def test_sampler_groups_utterances_by_speaker_as_a_scan_per_speaker_would():
    labels = np.random.default_rng(0).integers(0, 50, size=3000)
    labels[labels == 7] = 8  # a speaker index without utterances
    sampler = SpeakerBatchSampler(labels, 10, 2, samples_per_epoch=100, seed=0)
    expected = [np.flatnonzero(labels == s) for s in range(50) if (labels == s).any()]
    assert len(sampler.by_speaker) == len(expected) == 49
    assert all(np.array_equal(a, b) for a, b in zip(sampler.by_speaker, expected))


def test_one_pass_evaluation_of_several_fits_equals_separate_ones():
    from purl.reliability import Reliability, detection_metrics_and_weights, detection_metrics_of_fits

    emb, noisy, true = simulate_embeddings([40] * 12, dim=16, noise_rate=0.2, seed=3)
    main = Reliability.fit(emb, noisy, "histogram")
    fits = [main] + [Reliability.fit(main.embeddings, noisy, name, normalised=True) for name in ("bic", "global")]
    assert all(f.embeddings is main.embeddings for f in fits)  # shared, not copied
    for (together, w_together), fit in zip(detection_metrics_of_fits(fits, true), fits):
        alone, w_alone = detection_metrics_and_weights(fit, true)
        assert together == alone and np.array_equal(w_together, w_alone)


def test_same_label_pairs_of_a_batch_are_every_pair_once_without_testing_all_pairs():
    """The pair-weight lookup finds a batch's same-label pairs from the sorted
    labels: the same set as testing every (i < j), each pair once."""
    from purl.pair_weights import same_label_pairs

    rng = np.random.default_rng(0)
    for n, speakers in [(600, 300), (37, 5), (20, 1), (1, 1), (0, 1)]:
        labels = rng.integers(0, speakers, n)
        i, j = same_label_pairs(labels)
        a, b = np.triu_indices(n, 1)
        expected = {(x, y) for x, y, same in zip(a.tolist(), b.tolist(), labels[a] == labels[b]) if same}
        found = [(min(x, y), max(x, y)) for x, y in zip(i.tolist(), j.tolist())]
        assert len(found) == len(set(found)) == len(expected)
        assert set(found) == expected
