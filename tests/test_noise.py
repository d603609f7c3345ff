"""Stage 2: the noise simulation is exact and reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from purl.data.datadir import DataDir, read_kv, utt2spk_to_spk2utt, validate_data_dir, write_kv
from purl.label_noise import (
    NoiseError,
    merge_speakers,
    nearest_speakers,
    relabel,
    relabel_similar,
    replace_with_outsiders,
    split_speakers,
)
from purl.stages.simulate_noise import fbank_speaker_vectors, make_noisy_data_dir, noise_settings, run_noise


def utt2spk(speakers=10, utts=7):
    return {f"s{s}-u{u}": f"s{s}" for s in range(speakers) for u in range(utts)}


def labels_dir(path, truth):
    """A data dir of utt2spk and spk2utt only."""
    path.mkdir()
    write_kv(path / "utt2spk", truth)
    write_kv(path / "spk2utt", utt2spk_to_spk2utt(truth))
    return path


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.2, 0.5])
def test_relabel_moves_exactly_round_r_n_to_another_speaker(rate):
    truth = utt2spk()
    noisy = relabel(truth, rate, seed=3)
    moved = [u for u in truth if noisy[u] != truth[u]]
    assert len(moved) == round(rate * len(truth))
    assert set(noisy.values()) <= set(truth.values())


def test_relabel_is_reproducible_and_seeded():
    truth = utt2spk()
    assert relabel(truth, 0.2, seed=1) == relabel(truth, 0.2, seed=1)
    assert relabel(truth, 0.2, seed=1) != relabel(truth, 0.2, seed=2)


def test_relabel_targets_are_uniform_over_the_other_speakers():
    truth = utt2spk(speakers=4, utts=2000)
    noisy = relabel(truth, 0.5, seed=0)
    moved_from_s0 = [noisy[u] for u in truth if truth[u] == "s0" and noisy[u] != "s0"]
    counts = [moved_from_s0.count(s) for s in ("s1", "s2", "s3")]
    assert min(counts) > 0.8 * max(counts)


def test_noisy_data_dir_keeps_the_truth_and_validates(tmp_path):
    src = tmp_path / "train"
    src.mkdir()
    truth = utt2spk()
    write_kv(src / "utt2spk", truth)
    write_kv(src / "spk2utt", utt2spk_to_spk2utt(truth))
    write_kv(src / "feats.scp", {u: f"x.ark:{i}" for i, u in enumerate(truth)})
    summary = make_noisy_data_dir(src, tmp_path / "noisy", 0.2, seed=0)
    assert summary == {"utterances": 70, "relabelled": 14}
    noisy = validate_data_dir(tmp_path / "noisy", require=["utt2spk", "spk2utt", "utt2truespk", "feats.scp"])
    assert read_kv(tmp_path / "noisy" / "utt2truespk") == truth
    assert sum(noisy.utt2spk[u] != truth[u] for u in truth) == 14


def test_noise_stage_rerun_skips_same_settings_and_redoes_another_seed(tmp_path, caplog):
    from purl.stages.simulate_noise import run_noise

    src = tmp_path / "train"
    src.mkdir()
    truth = utt2spk()
    write_kv(src / "utt2spk", truth)
    write_kv(src / "spk2utt", utt2spk_to_spk2utt(truth))
    caplog.set_level("INFO")
    assert run_noise(src, tmp_path / "noisy", 0.2, seed=0) == {"utterances": 70, "relabelled": 14}
    first = read_kv(tmp_path / "noisy" / "utt2spk")
    assert run_noise(src, tmp_path / "noisy", 0.2, seed=0) is None and "skipping" in caplog.text
    assert run_noise(src, tmp_path / "noisy", 0.2, seed=1) is not None
    assert "seed: 0 -> 1" in caplog.text and read_kv(tmp_path / "noisy" / "utt2spk") != first


def test_the_three_kinds_move_the_same_utterances_at_a_seed():
    """Kinds differ in where utterances go, not in which: a fair comparison."""
    truth = utt2spk()
    vectors = {f"s{s}": np.eye(10)[s] + 0.1 * s for s in range(10)}
    outsiders = {f"o{s}-u{u}": f"o{s}" for s in range(3) for u in range(7)}
    permuted = relabel(truth, 0.2, seed=4)
    similar = relabel_similar(truth, 0.2, 4, vectors, k=3)
    opened, _ = replace_with_outsiders(truth, 0.2, 4, outsiders)
    moved = {u for u in truth if permuted[u] != truth[u]}
    assert moved == {u for u in truth if similar[u] != truth[u]}
    assert moved == set(truth) - set(opened)


def test_nearest_speakers_by_cosine_after_the_common_mean():
    # s0 and s1 point the same way, s2 and s3 another; all share a large common part.
    common = np.array([10.0, 0, 0, 0])
    vectors = {"s0": common + [0, 1, 0, 0], "s1": common + [0, 0.9, 0.1, 0], "s2": common + [0, 0, 0, 1],
               "s3": common + [0, 0, 0.1, 0.9]}
    near = nearest_speakers(vectors, k=1)
    assert near == {"s0": ["s1"], "s1": ["s0"], "s2": ["s3"], "s3": ["s2"]}
    with pytest.raises(NoiseError, match="k=4"):
        nearest_speakers(vectors, k=4)


def test_similar_noise_sends_each_moved_utterance_to_one_of_its_k_nearest():
    rng = np.random.default_rng(0)
    truth = utt2spk(speakers=12, utts=10)
    vectors = {f"s{s}": rng.standard_normal(8) for s in range(12)}
    near = nearest_speakers(vectors, k=2)
    noisy = relabel_similar(truth, 0.3, 0, vectors, k=2)
    moved = [u for u in truth if noisy[u] != truth[u]]
    assert len(moved) == 36
    assert all(noisy[u] in near[truth[u]] for u in moved)
    assert len({noisy[u] for u in moved}) > 2  # not one destination for all


def test_open_noise_replaces_utterances_with_outsiders_under_the_same_labels():
    truth = utt2spk()
    outsiders = {f"o{s}-u{u}": f"o{s}" for s in range(4) for u in range(7)}
    noisy, their_truth = replace_with_outsiders(truth, 0.2, 1, outsiders)
    assert len(noisy) == len(truth)
    assert sorted(noisy.values()) == sorted(truth.values())  # every speaker keeps its size
    came_in = set(noisy) - set(truth)
    assert len(came_in) == 14 and came_in == set(their_truth)
    assert all(their_truth[u] == outsiders[u] for u in came_in)
    assert all(noisy[u] == truth[u] for u in set(noisy) & set(truth))  # the rest keep their labels
    with pytest.raises(NoiseError, match="needs 35 outsider utterances, the outsiders have 28"):
        replace_with_outsiders(truth, 0.5, 1, outsiders)
    with pytest.raises(NoiseError, match="also a training speaker"):
        replace_with_outsiders(truth, 0.2, 1, {"s1-x": "s1"})


def _feature_dir(path, speakers, utts, seed, tilts=None):
    """A data dir with real ark features whose speakers differ in their spectrum
    (``tilts``: a 20-bin spectrum per speaker; random by default)."""
    import kaldiio

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    table = {f"{spk}-u{u}": spk for spk in speakers for u in range(utts)}
    with kaldiio.WriteHelper(f"ark,scp:{path}/feats.ark,{path}/feats.scp") as writer:
        for spk in speakers:
            tilt = rng.standard_normal(20) if tilts is None else tilts[spk]
            for u in range(utts):
                writer(f"{spk}-u{u}", (tilt + 0.3 * rng.standard_normal((50, 20))).astype(np.float32))
    write_kv(path / "feats.scp", read_kv(path / "feats.scp", check_sorted=False))
    write_kv(path / "wav.scp", {u: f"/audio/{u}.wav" for u in table})
    write_kv(path / "utt2spk", table)
    write_kv(path / "spk2utt", utt2spk_to_spk2utt(table))
    return table


def test_open_noisy_dir_carries_the_outsiders_files_and_lists_them(tmp_path):
    truth = _feature_dir(tmp_path / "train", [f"s{s}" for s in range(6)], 5, 0)
    outsiders = _feature_dir(tmp_path / "outsiders", ["o1", "o2"], 5, 1)
    summary = run_noise(tmp_path / "train", tmp_path / "noisy", 0.2, 0, noise_type="open",
                        outsiders=tmp_path / "outsiders")
    assert summary == {"utterances": 30, "relabelled": 6}
    noisy = validate_data_dir(tmp_path / "noisy", require=["utt2spk", "utt2truespk", "feats.scp", "wav.scp"])
    listed = read_kv(tmp_path / "noisy" / "outsiders")
    assert set(listed) == set(noisy.utt2spk) - set(truth) and len(listed) == 6
    true = read_kv(tmp_path / "noisy" / "utt2truespk")
    assert all(true[u] == outsiders[u] for u in listed)
    assert read_kv(tmp_path / "noisy" / "feats.scp")[next(iter(listed))] == \
        read_kv(tmp_path / "outsiders" / "feats.scp")[next(iter(listed))]
    # the same settings skip; another kind redoes and leaves no list of the first kind
    assert run_noise(tmp_path / "train", tmp_path / "noisy", 0.2, 0, noise_type="open",
                     outsiders=tmp_path / "outsiders") is None
    run_noise(tmp_path / "train", tmp_path / "noisy", 0.2, 0, noise_type="similar", nearest_k=2)
    assert not (tmp_path / "noisy" / "outsiders").exists()
    assert (tmp_path / "noisy" / "nearest_speakers").is_file()
    validate_data_dir(tmp_path / "noisy", require=["utt2truespk"])


def test_similar_noise_from_fbank_statistics_finds_the_speaker_with_the_same_spectrum(tmp_path):
    """Twins: speakers a<n> and b<n> share a spectrum up to a small difference."""
    rng = np.random.default_rng(5)
    tilts = {}
    for n in range(4):
        tilts[f"a{n}"] = rng.standard_normal(20)
        tilts[f"b{n}"] = tilts[f"a{n}"] + 0.1 * rng.standard_normal(20)
    _feature_dir(tmp_path / "train", sorted(tilts), 4, 2, tilts)
    near = nearest_speakers(fbank_speaker_vectors(DataDir(tmp_path / "train")), 1)
    assert near == {s: [("b" if s[0] == "a" else "a") + s[1:]] for s in tilts}


def test_permute_record_is_the_one_written_before_there_were_kinds(tmp_path):
    """A noisy dir made before --noise-type existed is not redone."""
    record = noise_settings(labels_dir(tmp_path / "train", utt2spk()), 0.2, 0)
    assert set(record) == {"rate", "seed", "utt2spk"}


def test_merge_noise_files_whole_speakers_under_another_speaker_s_label():
    truth = utt2spk(speakers=10, utts=7)
    noisy = merge_speakers(truth, 0.2, seed=2)
    moved = [u for u in truth if noisy[u] != truth[u]]
    assert len(moved) == 14  # at least round(0.2 * 70), whole speakers of 7
    guests = {truth[u] for u in moved}
    assert all(noisy[u] != truth[u] for u in truth if truth[u] in guests)  # the whole speaker
    assert not guests & set(noisy.values())  # an absorbed speaker has no label left
    hosts = {noisy[u] for u in moved}
    assert len(hosts) == 2 and not hosts & guests  # one guest per host
    assert all(noisy[u] == truth[u] for u in truth if truth[u] not in guests)
    assert merge_speakers(truth, 0.2, seed=2) == noisy and merge_speakers(truth, 0.2, seed=3) != noisy
    assert len([u for u, s in merge_speakers(truth, 0.25, seed=2).items() if s != truth[u]]) == 21  # 17.5 -> 3 speakers
    with pytest.raises(NoiseError, match="merge noise at rate 0.6 needs 42 .* moves 35"):
        merge_speakers(truth, 0.6, seed=0)


def test_split_noise_files_half_of_whole_speakers_under_a_second_label():
    truth = utt2spk(speakers=10, utts=7)
    noisy = split_speakers(truth, 0.2, seed=2)
    moved = [u for u in truth if noisy[u] != truth[u]]
    assert len(moved) == 15  # halves of 3 (rounded down) reach round(0.2 * 70) = 14
    assert all(noisy[u] == truth[u] + "-split" for u in moved)
    for spk in {truth[u] for u in moved}:
        assert sum(noisy[u] == spk for u in truth) == 4 and sum(noisy[u] == spk + "-split" for u in truth) == 3
    assert split_speakers(truth, 0.2, seed=2) == noisy and split_speakers(truth, 0.2, seed=3) != noisy
    with pytest.raises(NoiseError, match="split noise at rate 0.5 needs 35 .* is 30"):
        split_speakers(truth, 0.5, seed=0)
    with pytest.raises(NoiseError, match="speaker 's1-split': split noise names its new labels"):
        split_speakers(truth | {"x-u0": "s1-split"}, 0.2, seed=0)


@pytest.mark.parametrize("kind", ["merge", "split"])
def test_merge_and_split_dirs_validate_record_their_kind_and_keep_the_truth(tmp_path, kind):
    truth = utt2spk()
    summary = run_noise(labels_dir(tmp_path / "train", truth), tmp_path / "noisy", 0.2, 0, noise_type=kind)
    noisy = validate_data_dir(tmp_path / "noisy", require=["utt2truespk"])
    assert read_kv(tmp_path / "noisy" / "utt2truespk") == truth
    assert summary["relabelled"] == sum(noisy.utt2spk[u] != truth[u] for u in truth) >= 14
    assert (len(noisy.speakers) < 10) if kind == "merge" else (len(noisy.speakers) > 10)
    assert noise_settings(tmp_path / "train", 0.2, 0, noise_type=kind)["noise_type"] == kind
    assert run_noise(tmp_path / "train", tmp_path / "noisy", 0.2, 0, noise_type=kind) is None
