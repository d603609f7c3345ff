"""The filtering baseline: per-speaker centroid filtering of the original
submission, and the stage-5 script that writes the filtered data dir."""

from __future__ import annotations

import kaldiio
import numpy as np
import pytest

from purl.data.datadir import read_kv, utt2spk_to_spk2utt, validate_data_dir, write_kv
from purl.filtering import centroid_filter
from tests.conftest import ROOT, run_script, write_feature_dir


def test_centroid_filter_drops_the_utterances_far_from_their_speaker():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    labels = np.repeat(["a", "b", "c"], 10)
    emb = centres[np.repeat([0, 1, 2], 10)] + 0.1 * rng.normal(size=(30, 16))
    outliers = [3, 14, 15, 27]  # filed under a speaker, voice of another
    emb[outliers] = centres[[1, 2, 0, 1]] + 0.1 * rng.normal(size=(4, 16))
    keep, cosine = centroid_filter(emb, labels, keep_ratio=0.5)
    assert keep.sum() == 15 and [keep[labels == s].sum() for s in "abc"] == [5, 5, 5]
    assert not keep[outliers].any()
    assert cosine.shape == (30,) and cosine[outliers].max() < np.delete(cosine, outliers).min()


def test_centroid_filter_keeps_floor_of_the_ratio_and_at_least_one():
    emb = np.random.default_rng(1).normal(size=(8, 4))
    labels = np.array([0, 1, 1, 1, 2, 2, 2, 2])
    keep, _ = centroid_filter(emb, labels, keep_ratio=0.5)
    assert [keep[labels == s].sum() for s in range(3)] == [1, 1, 2]
    assert centroid_filter(emb, labels, keep_ratio=1.0)[0].all()
    with pytest.raises(ValueError, match="keep_ratio=0 must be in"):
        centroid_filter(emb, labels, keep_ratio=0)


def test_centroid_is_the_mean_of_the_raw_embeddings_as_in_the_original():
    # With length-normalised embeddings the centroid would point between b and c and keep c.
    emb = np.array([[10.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    keep, cosine = centroid_filter(emb, np.zeros(3, dtype=int), keep_ratio=0.5)
    assert keep.tolist() == [True, False, False]
    centroid = emb.mean(0)
    np.testing.assert_allclose(cosine, emb @ centroid / np.linalg.norm(emb, axis=1) / np.linalg.norm(centroid), rtol=1e-6)


def write_embeddings(data_dir, path, seed=0):
    utts = read_kv(data_dir / "utt2spk")
    rng = np.random.default_rng(seed)
    with kaldiio.WriteHelper(f"ark,scp:{path.with_suffix('.ark')},{path}") as writer:
        for utt in utts:
            writer(utt, rng.normal(size=8).astype(np.float32))


def test_filter_data_dir_writes_a_valid_filtered_dir_skips_same_settings_and_redoes_others(tmp_path):
    data = write_feature_dir(tmp_path / "train", num_speakers=3, utts_per_speaker=4)
    utt2spk = read_kv(data / "utt2spk")
    # Stage 2's layout: the id keeps the true speaker, utt2spk has the noisy one.
    write_kv(data / "utt2truespk", utt2spk)
    utt2spk = {u: "spk00" if u == "spk01-u00" else s for u, s in utt2spk.items()}
    write_kv(data / "utt2spk", utt2spk)
    write_kv(data / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    scp = tmp_path / "xvector.scp"
    write_embeddings(data, scp)
    out = tmp_path / "train_filtered0.5"
    proc = run_script(ROOT / "steps" / "filter_data_dir.py", scp, data, out)
    assert "kept 5 of 12 utterances" in proc.stderr and "mislabelled utterances kept" in proc.stderr
    kept = validate_data_dir(out, require=["feats.scp", "utt2num_frames", "utt2truespk"])
    assert len(kept) == 5 and kept.speakers == ["spk00", "spk01", "spk02"]
    removed = [line.split()[0] for line in (out / "removed").read_text().splitlines()]
    assert sorted(removed + kept.utts) == sorted(utt2spk)
    assert "same settings and inputs; skipping" in run_script(ROOT / "steps" / "filter_data_dir.py", scp, data, out).stderr
    proc = run_script(ROOT / "steps" / "filter_data_dir.py", "--keep-ratio", "0.75", scp, data, out)
    assert "keep_ratio: 0.5 -> 0.75" in proc.stderr and len(validate_data_dir(out)) == 8


def test_filter_data_dir_without_an_embedding_fails_and_writes_nothing(tmp_path):
    data = write_feature_dir(tmp_path / "train", num_speakers=2, utts_per_speaker=3)
    scp = tmp_path / "xvector.scp"
    write_embeddings(data, scp)
    scp.write_text("".join(line + "\n" for line in scp.read_text().splitlines()[1:]))
    proc = run_script(ROOT / "steps" / "filter_data_dir.py", scp, data, tmp_path / "out", check=False)
    assert proc.returncode == 1
    assert "no embedding for 'spk00-u00'" in proc.stderr and "rerun steps/extract_embeddings.sh" in proc.stderr
    assert not (tmp_path / "out").exists()
