"""The original work's front end (stage 1 --feature-type speechbrain) and the
normalisation of each crop (data.normalise, stage 4's --normalise crop).

The reference is a transcription, in torch, of what the original's
``SBFbank`` (src/data/feature_extractors.py) runs in SpeechBrain 1.0
(lobes/features.py Fbank -> processing/features.py STFT, spectral_magnitude,
Filterbank._amplitude_to_DB) followed by its ``SpecNormalization``
(src/data/augmentations.py), on a (1, samples) float waveform as
torchaudio.load gives it.
"""

from __future__ import annotations

import math

import kaldiio
import numpy as np
import pytest
import torch

from purl.data.dataset import ChunkDataset, TrainingSet, load_features, normalise, random_chunk, read_features
from purl.embed import embed_utterances, random_crop_start
from purl.features import (
    TOP_DB,
    compute_speechbrain_fbank,
    feature_type_of,
    speechbrain_num_frames,
    top_db_floor,
)
from purl.records import read_record
from purl.stages.fbank import fbank_job_settings, feats_status, make_fbank_job, record_derived_features
from tests.conftest import write_feature_dir, write_tone

# float32 (torch, as SpeechBrain) against float64 (here): 2.4e-4 dB at most on
# this audio, whose values span -46 to +34 dB
TOLERANCE_DB = 1e-3


def speechbrain_fbank_transcribed(wav: torch.Tensor) -> torch.Tensor:
    """(batch, samples) in [-1, 1] -> (batch, frames, 80): SBFbank(sample_rate=16000,
    f_min=0, f_max=8000, n_fft=400, n_mels=80, win_length=400, hop_length=160) as
    SpeechBrain 1.0 computes it, then SpecNormalization."""
    # STFT(sample_rate, win_length=25 ms, hop_length=10 ms, n_fft=400): hamming_window,
    # center=True, pad_mode="constant", onesided; (batch, time, freq, 2)
    window = torch.hamming_window(int(round(16000 / 1000.0 * 25)))
    stft = torch.stft(wav, 400, int(round(16000 / 1000.0 * 10)), 400, window, True, "constant", False, True,
                      return_complex=True)
    stft = torch.view_as_real(stft).transpose(2, 1)
    mag = stft.pow(2).sum(-1)  # spectral_magnitude(power=1)
    # Filterbank(n_mels=80, f_min=0, f_max=8000, n_fft=400), triangular, frozen
    to_mel = lambda hz: 2595 * math.log10(1 + hz / 700)  # noqa: E731
    mel = torch.linspace(to_mel(0), to_mel(8000), 80 + 2)
    hz = 700 * (10 ** (mel / 2595) - 1)
    band = (hz[1:] - hz[:-1])[:-1]
    f_central = hz[1:-1]
    all_freqs_mat = torch.linspace(0, 16000 // 2, 400 // 2 + 1).repeat(f_central.shape[0], 1)
    f_central_mat = f_central.repeat(all_freqs_mat.shape[1], 1).transpose(0, 1)
    band_mat = band.repeat(all_freqs_mat.shape[1], 1).transpose(0, 1)
    slope = (all_freqs_mat - f_central_mat) / band_mat
    fbank_matrix = torch.max(torch.zeros(1), torch.min(slope + 1.0, -slope + 1.0)).transpose(0, 1)
    fbanks = torch.matmul(mag, fbank_matrix)
    # _amplitude_to_DB: multiplier 10 (power_spectrogram=2), amin 1e-10, ref 1, top_db 80 per sequence
    x_db = 10 * torch.log10(torch.clamp(fbanks, min=1e-10))
    x_db -= 10 * math.log10(max(1e-10, 1.0))
    new_x_db_max = x_db.amax(dim=(-2, -1)) - 80.0
    x_db = torch.max(x_db, new_x_db_max.view(x_db.shape[0], 1, 1))
    return x_db - torch.mean(x_db, dim=-2, keepdim=True)  # SpecNormalization


def fixed_audio(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """16-bit-scale samples: a modulated harmonic tone in noise with a digital silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.1 * np.sin(2 * np.pi * 1870 * t)
    x = x + 0.01 * rng.standard_normal(len(t))
    x[len(t) // 3:len(t) // 3 + 4000] = 0.0
    return np.round(x * 32767).astype(np.float32)


def original_front_end(samples: np.ndarray) -> np.ndarray:
    wav = torch.from_numpy(samples / 32768.0).float()[None]  # torchaudio.load's scale
    return speechbrain_fbank_transcribed(wav)[0].numpy()


def test_speechbrain_features_equal_a_transcription_of_speechbrains_fbank():
    samples = fixed_audio()
    ours = normalise(compute_speechbrain_fbank(samples), TOP_DB["speechbrain"])
    ref = original_front_end(samples)
    assert ours.shape == ref.shape == (301, 80)  # 3 s: 301 frames of a centred STFT
    assert np.abs(ours - ref).max() < TOLERANCE_DB
    # the floor matters on this audio: the silence's -100 dB (amin) is raised to max - 80
    raw = compute_speechbrain_fbank(samples)
    assert raw.min() == pytest.approx(-100.0) and (top_db_floor(raw, 80.0) > raw).any()


def test_speechbrain_features_in_blocks_equal_one_pass():
    samples = fixed_audio(1.0)
    assert np.array_equal(compute_speechbrain_fbank(samples, block_frames=7), compute_speechbrain_fbank(samples))
    assert speechbrain_num_frames(48000) == 301 and speechbrain_num_frames(159) == 1


def test_a_crop_of_stored_features_is_the_original_front_end_on_the_crop_but_its_two_edge_frames():
    """The original computes each 3 s crop's features from the crop's samples
    (zeros beyond its ends); here the crop is cut from the utterance's frames.
    With the crop starting on a frame (160 samples), all but the first two and
    last two of its 301 frames see the same samples."""
    samples = fixed_audio(5.0, seed=1)
    stored = compute_speechbrain_fbank(samples)
    start = 57
    crop = samples[160 * start:160 * start + 48000]
    alone = compute_speechbrain_fbank(crop)
    assert np.abs(stored[start + 2:start + 299] - alone[2:299]).max() < 1e-4
    # Normalised over the crop, its inner frames are the original's but for one offset per
    # bin: the four edge frames' share of the crop's mean (they differ by up to 45 dB here,
    # the original's seeing zeros); 0.12 dB on this crop, 0.24 at most of three tried.
    ours = normalise(stored[start:start + 301], TOP_DB["speechbrain"])
    offset = (ours - original_front_end(crop))[2:299]
    assert np.abs(offset - offset[0]).max() < 1e-3 and np.abs(offset).max() < 0.3


def write_wav_dir(tmp_path, n=3):
    wavs = {f"spk0-u{i}": str(write_tone(tmp_path / f"u{i}.wav", seconds=1.5 + i / 3, seed=i)) for i in range(n)}
    return wavs


def test_stage1_speechbrain_job_stores_unfloored_features_and_records_the_type(tmp_path):
    wav_scp = write_wav_dir(tmp_path)
    result = make_fbank_job(wav_scp, tmp_path / "sb.ark", compress=False, feature_type="speechbrain")
    assert result.done == 3 and not result.failed
    from purl.audio import read_audio

    for utt, mat in kaldiio.load_scp(str(tmp_path / "sb.scp")).items():
        samples, _ = read_audio(wav_scp[utt])
        assert np.array_equal(mat, compute_speechbrain_fbank(samples))
        assert len(mat) == speechbrain_num_frames(len(samples))
    assert read_record(tmp_path / "sb.settings")["feature_type"] == "speechbrain"
    # Kaldi features' records stay as they were before feature types (no key), so they still hold
    kaldi = fbank_job_settings(wav_scp, sample_rate=16000, num_mel_bins=80, compress=True, min_frames=10)
    assert "feature_type" not in kaldi
    assert kaldi == fbank_job_settings(wav_scp, sample_rate=16000, num_mel_bins=80, compress=True, min_frames=10,
                                       feature_type="kaldi")


def test_make_fbank_speechbrain_is_recorded_and_a_change_of_type_recomputes(tmp_path, tiny_corpus):
    from tests.test_features import make_fbank, prepared

    data = prepared(tmp_path, tiny_corpus)
    assert make_fbank(tmp_path, data, "--feature-type", "speechbrain").returncode == 0
    assert feature_type_of(data) == "speechbrain"
    options = {"sample_rate": 16000, "num_mel_bins": 80, "compress": True, "min_frames": 10}
    from purl.data.datadir import read_kv

    wav_scp = read_kv(data / "wav.scp")
    assert feats_status(data, fbank_job_settings(wav_scp, **options, feature_type="speechbrain"))[0] == "complete"
    status, diff = feats_status(data, fbank_job_settings(wav_scp, **options))
    assert status == "changed" and any("feature_type" in d for d in diff)
    rerun = make_fbank(tmp_path, data)
    assert rerun.returncode == 0 and "computing it again" in rerun.stdout + rerun.stderr
    assert feature_type_of(data) == "kaldi"


def test_a_derived_dir_inherits_the_feature_type(tmp_path, tiny_corpus):
    import shutil

    from tests.test_features import make_fbank, prepared

    data = prepared(tmp_path, tiny_corpus)
    assert make_fbank(tmp_path, data, "--feature-type", "speechbrain").returncode == 0
    copy = tmp_path / "data" / "copy"
    shutil.copytree(data, copy)
    record_derived_features(copy, data, user="test")
    assert feature_type_of(copy) == "speechbrain"


def speechbrain_dir(tmp_path):
    """write_feature_dir's random features, recorded as speechbrain's."""
    return write_feature_dir(tmp_path / "data", num_speakers=3, utts_per_speaker=3, feature_type="speechbrain")


def test_chunks_are_normalised_over_the_utterance_by_default_or_over_the_crop(tmp_path, monkeypatch):
    data = TrainingSet.from_data_dir(speechbrain_dir(tmp_path))
    assert data.feature_type == "speechbrain"
    seed, utt = 1234, 4
    entry, name = data.feats[utt], data.utts[utt]
    raw = read_features(entry, name) * 20.0  # spread the values so that the 80 dB floor bites

    def chunk(normalise_over):
        dataset = ChunkDataset(data, chunk_frames=30, normalise=normalise_over)
        return dataset[(utt, seed)][0].numpy()

    import purl.data.dataset as dataset_module

    real = dataset_module.read_features
    monkeypatch.setattr(dataset_module, "read_features", lambda e, u="": raw if e == entry else real(e, u))
    by_utt, by_crop = chunk("utterance"), chunk("crop")
    rng = np.random.default_rng(seed)
    expect_utt = random_chunk(normalise(raw, 80.0), 30, rng)
    rng = np.random.default_rng(seed)
    expect_crop = normalise(random_chunk(raw, 30, rng), 80.0)
    assert np.array_equal(by_utt, expect_utt) and np.array_equal(by_crop, expect_crop)
    assert np.abs(by_crop.mean(0)).max() < 1e-4 and not np.allclose(by_utt, by_crop)


def test_kaldi_chunks_by_default_are_those_of_before(tmp_path):
    """The default (Kaldi features, utterance): the utterance mean, no floor."""
    data = TrainingSet.from_data_dir(write_feature_dir(tmp_path / "data", num_speakers=2, utts_per_speaker=2))
    assert data.feature_type == "kaldi"
    feats = kaldiio.load_mat(data.feats[1])
    rng = np.random.default_rng(7)
    expect = random_chunk(feats - feats.mean(axis=0, keepdims=True), 40, rng)
    assert np.array_equal(ChunkDataset(data, chunk_frames=40)[(1, 7)][0].numpy(), expect)
    assert np.array_equal(load_features(data.feats[1]), feats - feats.mean(axis=0, keepdims=True))


class FirstFrames(torch.nn.Module):
    """(batch, frames, bins) -> the first two bins of every frame, flattened."""

    def forward(self, x):
        return x[:, :, :2].reshape(len(x), -1)


def test_stage4_crops_normalised_over_themselves(tmp_path):
    data = speechbrain_dir(tmp_path)
    scp = kaldiio.load_scp(str(data / "feats.scp"))
    utts = sorted(scp)
    entries = [line.split(maxsplit=1)[1] for line in (data / "feats.scp").read_text().splitlines()]
    lengths = [len(scp[u]) for u in utts]
    emb = embed_utterances(FirstFrames(), entries, lengths, num_crops=1, crop_frames=50, utts=utts,
                           random_crop_seed=3, normalise_crops="crop", top_db=80.0)
    default = embed_utterances(FirstFrames(), entries, lengths, num_crops=1, crop_frames=50, utts=utts,
                               random_crop_seed=3, top_db=80.0)
    for e, d, u, n in zip(emb, default, utts, lengths):
        start = random_crop_start(u, n, 50, 3)
        raw = np.asarray(scp[u], dtype=np.float32)
        assert np.array_equal(e, normalise(raw[start:start + 50], 80.0)[:, :2].ravel())
        assert np.array_equal(d, normalise(raw, 80.0)[start:start + 50, :2].ravel())
    with pytest.raises(Exception, match="normalise"):
        embed_utterances(FirstFrames(), entries, lengths, normalise_crops="chunk")


def test_a_model_of_other_features_records_them_and_purl_refuses_to_feed_it_kaldi_fbank(tmp_path, tiny_config):
    """final.pt (and every epoch checkpoint) of a run on speechbrain features says so; purl.load_model,
    which computes Kaldi fbank from audio, refuses it; Kaldi-trained checkpoints carry no such key."""
    import purl
    from purl.api import ModelError
    from purl.training.checkpoint import load_checkpoint, save_average
    from tests.test_use_model import tiny_exp

    final = tiny_exp(tmp_path, tiny_config)
    epoch = final.parent / "epoch_1.pt"
    final.rename(epoch)
    config = load_checkpoint(epoch)["config"]
    save_average(final, [epoch], config)
    assert "feature_type" not in load_checkpoint(final)
    purl.load_model(final)  # a Kaldi model loads
    save_average(final, [epoch], config, feature_type="speechbrain")
    assert load_checkpoint(final)["feature_type"] == "speechbrain"
    with pytest.raises(ModelError, match="trained on speechbrain features.*Kaldi fbank"):
        purl.load_model(final)


def test_embedding_jobs_read_the_feature_type_of_the_dir_they_split(tmp_path, tiny_config):
    """Each job of steps/extract_embeddings.sh embeds a part of the dir's split: the part
    records the dir's feature type, so that the job floors speechbrain features as training did."""
    from purl.stages.embeddings import plan_embedding_jobs
    from purl.training.checkpoint import load_checkpoint, save_atomic
    from tests.test_use_model import tiny_exp

    data = speechbrain_dir(tmp_path)
    final = tiny_exp(tmp_path, tiny_config)
    save_atomic({**load_checkpoint(final), "feature_type": "speechbrain"}, final)
    options = {"num_crops": 0, "crop_frames": 300, "random_crop_seed": None, "normalise": "utterance"}
    plan = plan_embedding_jobs(final, data, tmp_path / "emb", 2, options)
    assert plan["todo"] == "1 2"
    for part in (tmp_path / "emb" / "split2").iterdir():
        assert feature_type_of(part) == "speechbrain"


@pytest.mark.parametrize("model_features, step", [("kaldi", "extract_embeddings.sh"),
                                                   ("speechbrain", "extract_embeddings.py")])
def test_extraction_refuses_a_model_of_other_features_than_the_dir_s(tmp_path, tiny_config, model_features, step):
    """steps/extract_embeddings.sh before its jobs, and each job (.py) on its own."""
    from purl.training.checkpoint import load_checkpoint, save_atomic
    from tests.conftest import ROOT, run_script
    from tests.test_use_model import tiny_exp

    data = speechbrain_dir(tmp_path) if model_features == "kaldi" else write_feature_dir(tmp_path / "data")
    final = tiny_exp(tmp_path, tiny_config)
    save_atomic({**load_checkpoint(final), **({} if model_features == "kaldi" else {"feature_type": "speechbrain"})},
                final)
    data_features = "speechbrain" if model_features == "kaldi" else "kaldi"
    out = tmp_path / "emb" / ("x.ark" if step.endswith(".py") else "")
    proc = run_script(ROOT / "steps" / step, final, data, out, check=False)
    assert proc.returncode == 1
    assert (f"{final}: a model trained on {model_features} features, but {data} holds {data_features} "
            f"features ({data}/feats.settings)") in proc.stderr, proc.stderr
    assert f"--feature-type {model_features}" in proc.stderr and "steps/make_fbank.sh" in proc.stderr
    assert not out.is_file() and not (tmp_path / "emb" / "xvector.scp").exists()


def test_an_update_refuses_to_start_from_a_model_of_other_features(tmp_path, tiny_config):
    """Stage 5 from purl.init_checkpoint: the pretrained model's features must be the data dir's."""
    from purl.features import FeatureError
    from purl.stages.training import train_stage
    from tests.test_use_model import tiny_exp

    final = tiny_exp(tmp_path, tiny_config)  # a Kaldi model
    data = speechbrain_dir(tmp_path)
    with pytest.raises(FeatureError, match=f"{final}: a model trained on kaldi features, but {data} holds "
                                           "speechbrain features"):
        train_stage(str(tiny_config), [f"purl.init_checkpoint={final}"], str(data), tmp_path / "exp" / "update")
    assert not (tmp_path / "exp" / "update" / "config.yaml").exists()


def test_training_refuses_held_out_trials_of_other_features_before_it_starts(tmp_path, tiny_config):
    from purl.features import FeatureError
    from purl.stages.training import train_stage

    train = write_feature_dir(tmp_path / "train")
    valid = speechbrain_dir(tmp_path)
    (valid / "trials").write_text("spk00-u00 spk00-u01 target\nspk00-u00 spk01-u00 nontarget\n")
    with pytest.raises(FeatureError, match=f"--valid-data {valid}: speechbrain features, but the training data "
                                           f"{train} has kaldi features"):
        train_stage(str(tiny_config), [], str(train), tmp_path / "exp", valid_data=str(valid))
    assert not (tmp_path / "exp" / "config.yaml").exists()


def test_a_copy_of_a_data_dir_leaves_its_features_out_and_a_rerun_keeps_it(tmp_path, tiny_corpus):
    from purl.data.datadir import DataDirError, read_kv
    from purl.data.prepare import prepare_folder_corpus
    from purl.stages.fbank import copy_data_dir, failed_list

    src, dst = tmp_path / "data" / "train", tmp_path / "data" / "train_sbfbank"
    prepare_folder_corpus(tiny_corpus, src)
    for name in ("feats.scp", "utt2num_frames", "feats.settings", "feats.scp.stale", ".purl.lock"):
        (src / name).write_text("x\n")
    (src / "log").mkdir()
    (src / "log" / "make_fbank.1.log").write_text("x\n")
    assert copy_data_dir(src, dst)
    assert sorted(p.name for p in dst.iterdir()) == ["spk2utt", "utt2dur", "utt2spk", "wav.scp"]
    assert (dst / "wav.scp").read_text() == (src / "wav.scp").read_text()
    assert not copy_data_dir(src, dst)  # a copy already: kept
    # stage 1 dropped an utterance that failed: still a copy
    wav = read_kv(dst / "wav.scp")
    failed = next(iter(wav))
    for name in ("wav.scp", "utt2spk", "utt2dur"):
        (dst / name).write_text("".join(line for line in (dst / name).read_text().splitlines(True)
                                        if not line.startswith(failed + " ")))
    failed_list(dst).parent.mkdir()
    failed_list(dst).write_text(f"{failed} cannot read\n")
    assert not copy_data_dir(src, dst)
    # the source has changed since: refused, not silently kept
    (src / "utt2spk").write_text((src / "utt2spk").read_text().replace(" spk2\n", " spk1\n", 1))
    with pytest.raises(DataDirError, match=f"{dst} is not a copy of {src} as it is now .*utt2spk differs.* delete "
                                           f"{dst} to copy it again"):
        copy_data_dir(src, dst)
    (src / "wav.scp").unlink()
    with pytest.raises(DataDirError, match="wav.scp missing: stage 1 computes the copy's features from the audio"):
        copy_data_dir(src, tmp_path / "data" / "other")
