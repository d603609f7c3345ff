"""Stage 1: fbank values, ark round trip, the parallel step and its failures."""

from __future__ import annotations

import io

import kaldi_native_fbank as knf
import kaldiio
import kaldiio.matio
import numpy as np
import pytest
import soundfile as sf

from purl.data.datadir import read_kv, validate_data_dir
from purl.data.prepare import prepare_folder_corpus
from purl.features import compute_fbank, fbank_options, num_frames
from purl.kaldi_io import ArkWriter, compress_speech_feature
from purl.stages.fbank import make_fbank_job
from tests.conftest import ROOT, run_script, write_tone


def direct_knf(samples: np.ndarray) -> np.ndarray:
    """kaldi-native-fbank called as its own docs do, with Kaldi's options and no dither."""
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0
    opts.mel_opts.num_bins = 80
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16000, samples.tolist())
    fb.input_finished()
    return np.array([fb.get_frame(i) for i in range(fb.num_frames_ready)])


def test_fbank_equals_a_direct_kaldi_native_fbank_call(tmp_path):
    path = write_tone(tmp_path / "a.wav", seconds=1.0)
    int16, _ = sf.read(path, dtype="int16")
    samples = int16.astype(np.float32)  # Kaldi reads wav on the 16-bit scale
    ours = compute_fbank(samples, fbank_options())
    assert ours.shape == (98, 80) == (num_frames(16000, 16000), 80)
    np.testing.assert_allclose(ours, direct_knf(samples), rtol=0, atol=1e-5)


def test_compressed_ark_round_trip_is_within_compression_error(tmp_path):
    path = write_tone(tmp_path / "a.wav", seconds=1.0)
    result = make_fbank_job({"spk-a": str(path)}, tmp_path / "out.ark")
    assert result.done == 1 and not result.failed
    scp = read_kv(tmp_path / "out.scp")
    assert scp["spk-a"].startswith(f"{tmp_path / 'out.ark'}:")
    stored = kaldiio.load_mat(scp["spk-a"])
    int16, _ = sf.read(path, dtype="int16")
    exact = compute_fbank(int16.astype(np.float32), fbank_options())
    # kSpeechFeature compression: 8-bit codes within per-column quantiles.
    assert np.abs(stored - exact).max() < 0.05 * (exact.max() - exact.min())
    assert read_kv(tmp_path / "out.utt2num_frames")["spk-a"] == str(len(exact))


def kaldiio_compressed(feats: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    kaldiio.matio.write_array(buffer, feats, compression_method=2)
    return buffer.getvalue()


@pytest.mark.parametrize("rows", [1, 4, 5, 6, 97, 400, 1203])
def test_compression_writes_kaldiios_bytes(rows):
    rng = np.random.default_rng(rows)
    for scale in (0.01, 1.0, 5.0):
        feats = (12 - np.linspace(0, 6, 80) + rng.normal(0, scale, (rows, 80))).astype(np.float32)
        feats[:, 3] = 1.5                     # a constant column
        feats[:, 7] = np.round(feats[:, 7])   # ties
        assert compress_speech_feature(feats) == kaldiio_compressed(feats)


@pytest.mark.parametrize("compress", [True, False])
def test_ark_and_scp_equal_kaldiios(tmp_path, compress):
    rng = np.random.default_rng(0)
    mats = {f"u{i}": rng.normal(5, 2, (int(rng.integers(3, 300)), 80)).astype(np.float32) for i in range(5)}
    with ArkWriter(tmp_path / "ours.tmp", tmp_path / "ours.scp", ark_name=tmp_path / "ours.ark", compress=compress) as w:
        for utt, m in mats.items():
            w(utt, m)
    (tmp_path / "ours.tmp").rename(tmp_path / "ours.ark")
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/ref.ark,{tmp_path}/ref.scp",
                             compression_method=2 if compress else None) as w:
        for utt, m in mats.items():
            w(utt, m)
    assert (tmp_path / "ours.ark").read_bytes() == (tmp_path / "ref.ark").read_bytes()
    assert (tmp_path / "ours.scp").read_text() == (tmp_path / "ref.scp").read_text().replace("ref.ark", "ours.ark")
    for entry in read_kv(tmp_path / "ours.scp").values():
        np.testing.assert_array_equal(kaldiio.load_mat(entry), kaldiio.load_mat(f"{tmp_path}/ref.ark:{entry.split(':')[-1]}"))


def test_bad_audio_is_reported_by_utterance_id(tmp_path):
    good = write_tone(tmp_path / "good.wav")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    rate8k = write_tone(tmp_path / "r8k.wav", rate=8000)
    (tmp_path / "junk.wav").write_bytes(b"not audio")
    result = make_fbank_job(
        {"s-good": str(good), "s-empty": str(empty), "s-8k": str(rate8k), "s-junk": str(tmp_path / "junk.wav")},
        tmp_path / "out.ark",
    )
    assert result.done == 1
    assert set(result.failed) == {"s-empty", "s-8k", "s-junk"}
    assert "sample rate 8000 Hz, expected 16000 Hz" in result.failed["s-8k"]
    assert "too short: 0.000 s gives 0 frames" in result.failed["s-empty"]
    assert "cannot read" in result.failed["s-junk"]
    assert "s-8k" in (tmp_path / "out.failed").read_text()


def prepared(tmp_path, corpus):
    prepare_folder_corpus(corpus, tmp_path / "data" / "train")
    return tmp_path / "data" / "train"


def make_fbank(tmp_path, data, *options):
    return run_script(ROOT / "steps" / "make_fbank.sh", "--nj", "2", *options, data, data / "log", tmp_path / "fbank",
                      cwd=tmp_path, check=False)


def test_make_fbank_writes_valid_features_and_skips_on_rerun(tmp_path, tiny_corpus):
    data = prepared(tmp_path, tiny_corpus)
    proc = make_fbank(tmp_path, data)
    assert proc.returncode == 0, proc.stderr
    validate_data_dir(data, require=["feats.scp", "utt2num_frames"])
    assert len(read_kv(data / "feats.scp")) == 9
    assert (data / "log" / "make_fbank.1.log").read_text().startswith("# ")
    rerun = make_fbank(tmp_path, data)
    assert rerun.returncode == 0 and "skipping" in rerun.stdout


def test_make_fbank_fails_naming_the_log_and_reruns_only_failed_job(tmp_path, tiny_corpus):
    data = prepared(tmp_path, tiny_corpus)
    run_script(ROOT / "utils" / "split_data_dir.py", data, 2)
    # Job 2 cannot even read its wav.scp: the job fails, not just an utterance.
    job2_wav_scp = data / "split2" / "2" / "wav.scp"
    good = job2_wav_scp.read_text()
    job2_wav_scp.write_text("broken\n")
    proc = make_fbank(tmp_path, data)
    assert proc.returncode == 1
    assert "1 of 2 jobs failed" in proc.stderr and "make_fbank.2.log" in proc.stderr
    assert "broken" in (data / "log" / "make_fbank.2.log").read_text()
    assert not (data / "feats.scp").exists()
    [ark_dir] = (tmp_path / "fbank").glob("train_*")
    assert (ark_dir / "raw_fbank.1.scp").exists()
    # Repair job 2's input; a rerun redoes only job 2.
    job1 = (ark_dir / "raw_fbank.1.ark").stat().st_mtime_ns
    job2_wav_scp.write_text(good)
    rerun = make_fbank(tmp_path, data)
    assert rerun.returncode == 0 and "(1 to run)" in rerun.stdout
    assert (ark_dir / "raw_fbank.1.ark").stat().st_mtime_ns == job1
    assert len(read_kv(data / "feats.scp")) == 9


def test_make_fbank_fails_when_too_many_utterances_are_unreadable(tmp_path, tiny_corpus):
    # Preparation reads headers for utt2dur, so break the file after it.
    data = prepared(tmp_path, tiny_corpus)
    (tiny_corpus / "spk1" / "u0.wav").write_bytes(b"garbage")
    proc = make_fbank(tmp_path, data)
    assert proc.returncode == 1
    assert "1 of 9 utterances" in proc.stderr and "spk1-u0" in proc.stderr
    assert not (data / "feats.scp").exists()
    proc = make_fbank(tmp_path, data, "--max-fail-frac", "0.2")
    assert proc.returncode == 0
    assert "spk1-u0" not in read_kv(data / "utt2spk") and len(read_kv(data / "feats.scp")) == 8
    validate_data_dir(data, require=["feats.scp"])


def test_save_embeddings_writes_the_bytes_of_kaldiio_through_the_one_ark_writer(tmp_path):
    from purl.kaldi_io import load_embeddings, save_embeddings

    emb = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    scp = save_embeddings(tmp_path / "ours.ark", ["a", "b", "c"], emb)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'ref.ark'},{tmp_path / 'ref.scp'}") as writer:
        for utt, vector in zip("abc", emb):
            writer(utt, vector)
    assert (tmp_path / "ours.ark").read_bytes() == (tmp_path / "ref.ark").read_bytes()
    assert scp.read_text() == (tmp_path / "ref.scp").read_text().replace("ref.ark", "ours.ark")
    utts, loaded = load_embeddings(scp)
    assert utts == ["a", "b", "c"] and np.array_equal(loaded, emb)
