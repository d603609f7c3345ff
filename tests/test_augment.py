"""Waveform augmentation: SNRs and impulse responses as asked, the audio path of
the loader against stage 1's features, source preparation, and a training run."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from purl.audio import read_audio
from purl.config import load_config
from purl.data.augment import Augmenter, WaveChunkDataset, noise_at_snr, reverberate
from purl.data.datadir import DataDirError, read_kv, validate_data_dir, write_kv
from purl.data.dataset import TrainingSet
from purl.data.noise_corpora import prepare_musan, prepare_rirs
from purl.features import compute_fbank, fbank_options
from purl.stages.exp_layout import TrainingOutputs
from purl.training.checkpoint import load_checkpoint
from purl.training.loop import Trainer
from tests.conftest import write_feature_dir, write_tone


def snr_db(speech, noise):
    return 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))


def test_noise_is_scaled_to_the_requested_snr():
    rng = np.random.default_rng(0)
    speech = 3000 * rng.standard_normal(16000).astype(np.float32)
    noise = 50 * rng.standard_normal(16000).astype(np.float32)
    for snr in (0.0, 7.5, 20.0):
        assert snr_db(speech, noise_at_snr(speech, noise, snr)) == pytest.approx(snr, abs=1e-3)


def test_reverberation_with_a_delayed_impulse_delays_the_signal():
    speech = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    rir = np.zeros(50, dtype=np.float32)
    rir[10] = 0.3  # energy is normalised away
    out = reverberate(speech, rir)
    assert out.shape == speech.shape
    np.testing.assert_allclose(out[10:], speech[:-10], atol=1e-5)
    np.testing.assert_allclose(out[:10], 0, atol=1e-5)


def source_dir(path, rate=16000, n=3, seconds=0.3, kind="noise"):
    """A data dir of generated sources: white noise, or decaying impulse responses."""
    rng = np.random.default_rng(len(str(path)))
    wav_scp = {}
    for i in range(n):
        if kind == "rir":
            x = rng.standard_normal(int(0.05 * rate)) * np.exp(-np.arange(int(0.05 * rate)) / 200)
            x /= np.abs(x).max() * 1.1
        else:
            x = 0.1 * rng.standard_normal(int(seconds * rate))
        f = path / "audio" / f"{kind}{i}.wav"
        f.parent.mkdir(parents=True, exist_ok=True)
        sf.write(f, x.astype(np.float32), rate, subtype="PCM_16")
        wav_scp[f"{kind}{i}"] = str(f)
    write_kv(path / "wav.scp", wav_scp)
    write_kv(path / "utt2spk", {u: u for u in wav_scp})
    return path


def augment_config(tmp_path, prob=1.0, **dirs):
    cfg = load_config(None)["augment"]
    cfg.update(prob=prob, **{k: str(v) for k, v in dirs.items()})
    return cfg


def test_augmenter_draws_every_configured_kind_at_its_snr(tmp_path):
    noise = source_dir(tmp_path / "noise")
    rirs = source_dir(tmp_path / "rirs", kind="rir")
    talkers = source_dir(tmp_path / "talkers", n=8, seconds=2.0)  # long and many: talkers barely correlate
    aug = Augmenter.from_config(augment_config(tmp_path, noise=noise, music=noise, babble=talkers, rirs=rirs))
    speech = write_tone(tmp_path / "speech.wav", seconds=1.0)
    x = read_audio(str(speech))[0]
    seen = {}
    for seed in range(40):
        out, kind = aug(x, np.random.default_rng(seed))
        assert out.shape == x.shape and out.dtype == np.float32
        seen.setdefault(kind, []).append(out)
    assert set(seen) == {"reverb", "noise", "music", "babble"}
    assert all(0 - 1e-3 <= snr_db(x, o - x) <= 15 + 1e-3 for o in seen["noise"])
    assert all(5 - 1e-3 <= snr_db(x, o - x) <= 15 + 1e-3 for o in seen["music"])
    # 3 to 7 uncorrelated talkers, each at 13-20 dB: their sum between 13 - 10 log10(7) and 20 - 10 log10(3) dB.
    assert all(13 - 10 * np.log10(7) - 0.5 <= snr_db(x, o - x) <= 20 - 10 * np.log10(3) + 0.5 for o in seen["babble"])
    never, _ = Augmenter.from_config(augment_config(tmp_path, prob=0.0, noise=noise))(x, np.random.default_rng(0))
    assert never is x


def test_augment_without_sources_is_refused(tmp_path):
    with pytest.raises(DataDirError, match="augment.prob > 0 but none of augment.noise"):
        Augmenter.from_config(augment_config(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataDirError, match="augment.rirs=.*: no wav.scp there"):
        Augmenter.from_config(augment_config(tmp_path, rirs=tmp_path / "empty"))


def audio_feature_dir(tmp_path):
    """write_feature_dir's speakers and utterances, with a tone for each in wav.scp:
    12,720 samples, exactly 78 frames (no sample left over past the last frame)."""
    data = write_feature_dir(tmp_path / "data", num_speakers=4, utts_per_speaker=2)
    utts = list(read_kv(data / "utt2spk"))
    write_kv(data / "wav.scp", {u: str(write_tone(tmp_path / "wav" / f"{u}.wav", seconds=0.795, seed=i))
                                for i, u in enumerate(utts)})
    return data


def test_unaugmented_audio_chunk_is_stage_1s_fbank_of_the_crop(tmp_path):
    data = audio_feature_dir(tmp_path)
    entry = read_kv(data / "wav.scp")["spk00-u00"]
    samples = read_audio(entry)[0]
    expected = compute_fbank(samples, fbank_options())
    expected -= expected.mean(0)
    # A chunk of all 78 frames can only start at sample 0.
    assert len(expected) == 78
    dataset = WaveChunkDataset.from_data_dir(TrainingSet.from_data_dir(data), data, Augmenter(prob=0.0),
                                             chunk_frames=len(expected))
    chunk, utt = dataset[(0, 123)]
    assert utt == 0 and tuple(chunk.shape) == expected.shape
    np.testing.assert_allclose(chunk.numpy(), expected, atol=1e-4)


def test_augmented_chunks_depend_only_on_the_item_seed(tmp_path):
    data = audio_feature_dir(tmp_path)
    aug = Augmenter.from_config(augment_config(tmp_path, noise=source_dir(tmp_path / "noise"),
                                               rirs=source_dir(tmp_path / "rirs", kind="rir")))
    dataset = WaveChunkDataset.from_data_dir(TrainingSet.from_data_dir(data), data, aug, chunk_frames=50)
    a, b, c = dataset[(3, 7)][0], dataset[(3, 7)][0], dataset[(3, 8)][0]
    assert tuple(a.shape) == (50, 80) and np.array_equal(a, b) and not np.array_equal(a, c)


def test_training_with_augmentation_reads_audio_and_learns(tmp_path, tiny_config):
    data = audio_feature_dir(tmp_path)
    config = load_config(tiny_config, ["optim.epochs=1", "train.average_last=1", "augment.prob=0.6",
                                       f"augment.noise={source_dir(tmp_path / 'noise')}",
                                       f"augment.rirs={source_dir(tmp_path / 'rirs', kind='rir')}"])
    trainer = Trainer(config, data, TrainingOutputs(tmp_path / "exp"), show_progress=False)
    try:
        assert isinstance(trainer.loader.dataset, WaveChunkDataset)
        final = trainer.train()
    finally:
        trainer.close()
    assert all(np.isfinite(v.numpy()).all() for v in load_checkpoint(final)["model"].values())
    (data / "wav.scp").unlink()
    with pytest.raises(DataDirError, match="wav.scp: missing; augmentation reads the audio"):
        Trainer(config, data, TrainingOutputs(tmp_path / "exp2"), show_progress=False)


def test_musan_and_rirs_trees_become_source_dirs(tmp_path):
    musan = tmp_path / "musan"
    for part, source in (("noise", "free-sound"), ("music", "fma"), ("speech", "librivox")):
        for i in range(2):
            write_tone(musan / part / source / f"{part}-{source}-{i:04d}.wav", seconds=0.2, seed=i)
    assert prepare_musan(musan, tmp_path / "data") == {"musan_noise": 2, "musan_music": 2, "musan_speech": 2}
    music = validate_data_dir(tmp_path / "data" / "musan_music", require=["wav.scp", "utt2dur"], check_audio=True)
    assert music.utts == ["music-fma-0000", "music-fma-0001"]
    rirs = tmp_path / "RIRS_NOISES" / "simulated_rirs"
    for room in ("smallroom", "mediumroom", "largeroom"):
        write_tone(rirs / room / "Room001" / "Room001-00001.wav", seconds=0.1)
    assert prepare_rirs(tmp_path / "RIRS_NOISES", tmp_path / "data" / "rirs") == 2
    assert validate_data_dir(tmp_path / "data" / "rirs").utts == ["mediumroom-Room001-00001", "smallroom-Room001-00001"]
    (musan / "speech" / "librivox" / "speech-librivox-0000.wav").unlink()
    (musan / "speech" / "librivox" / "speech-librivox-0001.wav").unlink()
    with pytest.raises(DataDirError, match=r"no .wav files under speech/ .* https://www.openslr.org/17/"):
        prepare_musan(musan, tmp_path / "data2")
