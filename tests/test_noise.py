"""Stage 2: the noise simulation is exact and reproducible."""

from __future__ import annotations

import pytest

from purl.data.datadir import read_kv, utt2spk_to_spk2utt, validate_data_dir, write_kv
from purl.noise import relabel
from purl.stages.noise import make_noisy_data_dir


def utt2spk(speakers=10, utts=7):
    return {f"s{s}-u{u}": f"s{s}" for s in range(speakers) for u in range(utts)}


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
    from purl.stages.noise import run_noise

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
