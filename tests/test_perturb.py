"""Speed perturbation: new speakers, audio of the right length, the samples of
the ffmpeg pipe it replaced, clear errors."""

from __future__ import annotations

import io
import shlex
import subprocess

import numpy as np
import pytest
import soundfile as sf

from purl.audio import parse_speed_entry, read_audio, speed_entry
from purl.data.datadir import DataDirError, read_kv, validate_data_dir
from purl.data.perturb import perturb_speed
from purl.data.prepare import prepare_folder_corpus
from tests.conftest import ROOT, copy_recipe, recipe_env, run_script, write_tone

REFERENCES = ROOT / "tests" / "data" / "ffmpeg"  # made by its make_references.sh with ffmpeg 5.1.9
# In-process (PyAV 18, FFmpeg 8's resampler) against Debian's ffmpeg 5.1 program:
# the same length, samples within 3 LSB of 16 bits and 0.6 LSB RMS. Measured on
# 100 speechocean762 utterances, m4a and stereo wav at 0.8 to 1.2 by
# bench/bench_speed_perturb.py: at most 3 LSB, RMS 0.22-0.57.
MAX_LSB, MAX_RMS_LSB = 3, 0.6


@pytest.mark.parametrize("source, factor", [("tone", 0.9), ("tone", 1.1), ("stereo", 0.9)])
def test_speed_copy_equals_the_ffmpeg_pipe_it_replaced_within_3_lsb(source, factor):
    ours, rate = read_audio(speed_entry(str(REFERENCES / f"{source}.flac"), factor))
    reference, _ = sf.read(REFERENCES / f"{source}_sp{factor:g}.flac", dtype="int16")
    assert rate == 16000 and len(ours) == len(reference)
    diff = ours - reference
    assert np.abs(diff).max() <= MAX_LSB and np.sqrt(np.mean(diff ** 2)) <= MAX_RMS_LSB


def test_speed_is_relative_to_the_audio_s_own_rate(tmp_path):
    """An 8 kHz file and an opus file (decoded at 48 kHz) play 0.8 times as fast
    too, not 16000 x 0.8 / their rate (what the ffmpeg pipe did)."""
    write_tone(tmp_path / "a.wav", seconds=1.0, rate=8000)
    x, _ = sf.read(write_tone(tmp_path / "b.wav", seconds=1.0), dtype="float32")
    sf.write(tmp_path / "b.opus", x, 16000, format="OGG", subtype="OPUS")
    for name in ("a.wav", "b.opus"):
        samples, rate = read_audio(speed_entry(str(tmp_path / name), 0.8))
        assert rate == 16000 and abs(len(samples) - 16000 / 0.8) <= 400  # opus pads up to 20 ms


def test_speed_entry_is_a_command_that_gives_the_same_samples(tmp_path):
    """wav.scp stays runnable by other tools: utils/speed_audio.py, on a file or a
    pipe, writes the samples that purl reads in-process."""
    path = write_tone(tmp_path / "it's here.wav")
    for source in (str(path), f"cat {shlex.quote(str(path))} |"):
        entry = speed_entry(source, 1.1)
        assert parse_speed_entry(entry) == (source, 1.1, 16000)
        ours, _ = read_audio(entry)
        out = subprocess.run(entry[:-1], shell=True, env=recipe_env(), capture_output=True, check=True).stdout
        np.testing.assert_array_equal(ours, sf.read(io.BytesIO(out), dtype="int16")[0])


def test_speed_perturbation_adds_new_speakers_with_stretched_audio(tmp_path, tiny_corpus):
    prepare_folder_corpus(tiny_corpus, tmp_path / "train")
    assert perturb_speed(tmp_path / "train", tmp_path / "train_sp", (0.9, 1.1)) == 27
    data = validate_data_dir(tmp_path / "train_sp", require=["wav.scp", "utt2dur"])
    assert data.speakers == ["sp0.9-spk0", "sp0.9-spk1", "sp0.9-spk2", "sp1.1-spk0", "sp1.1-spk1", "sp1.1-spk2",
                             "spk0", "spk1", "spk2"]
    wav_scp, durations = read_kv(tmp_path / "train_sp" / "wav.scp"), read_kv(tmp_path / "train_sp" / "utt2dur")
    original = len(read_audio(wav_scp["spk0-u0"])[0])
    for factor in (0.9, 1.1):
        samples, rate = read_audio(wav_scp[f"sp{factor}-spk0-u0"])
        assert rate == 16000 and abs(len(samples) - original / factor) <= 16
        assert float(durations[f"sp{factor}-spk0-u0"]) == pytest.approx(original / factor / 16000, abs=1e-3)


def test_speed_perturbation_refuses_factor_one_and_non_numbers(tmp_path, tiny_corpus):
    prepare_folder_corpus(tiny_corpus, tmp_path / "train")
    with pytest.raises(DataDirError, match="speed factor 1.0 is not in 0.5..2"):
        perturb_speed(tmp_path / "train", tmp_path / "sp", (0.9, 1.0))
    proc = run_script(ROOT / "steps" / "perturb_speed.py", "--factors", "0.9,fast", tmp_path / "train", tmp_path / "sp",
                      check=False)
    assert proc.returncode == 1
    assert "perturb_speed.py: --factors 0.9,fast: could not convert string to float: 'fast'" in proc.stderr
    assert not (tmp_path / "sp").exists()


def test_voxceleb_recipe_prepares_speed_copies_and_augmentation_sources(tmp_path, fake_voxceleb):
    recipe = copy_recipe("voxceleb", tmp_path / "recipe")
    musan, rirs = tmp_path / "musan", tmp_path / "RIRS_NOISES"
    for part in ("noise", "music", "speech"):
        write_tone(musan / part / "src" / f"{part}-src-0000.wav", seconds=0.2)
    for room in ("smallroom", "mediumroom"):
        write_tone(rirs / "simulated_rirs" / room / "Room001" / "Room001-00001.wav", seconds=0.1)
    run_script("bash", "run.sh", "--stage", "0", "--stop-stage", "1", "--nj", "2", "--speed-perturb", "true",
               "--augment", "true", "--feature-type", "kaldi", "--musan-root", musan, "--rirs-root", rirs,
               "--vox1-root", fake_voxceleb["vox1"], "--vox2-dev-root", fake_voxceleb["vox2"],
               "--vox1-trials-dir", fake_voxceleb["meta"], "--vox2-valid-pairs", "", cwd=recipe)
    train = validate_data_dir(recipe / "data" / "vox2_dev_sp", require=["feats.scp", "utt2num_frames"])
    assert len(train) == 9 and len(train.speakers) == 6
    frames = read_kv(recipe / "data" / "vox2_dev_sp" / "utt2num_frames")
    assert int(frames["sp0.9-id00012-21Uxsk56VDQ-00001"]) > int(frames["id00012-21Uxsk56VDQ-00001"]) \
        > int(frames["sp1.1-id00012-21Uxsk56VDQ-00001"])
    for name in ("musan_noise", "musan_music", "musan_speech", "rirs"):
        assert len(validate_data_dir(recipe / "data" / name, require=["wav.scp"])) == (2 if name == "rirs" else 1)


def test_speed_perturbation_rerun_with_other_factors_rewrites_the_dir(tmp_path, tiny_corpus):
    prepare_folder_corpus(tiny_corpus, tmp_path / "train")
    step = ROOT / "steps" / "perturb_speed.py"
    run_script(step, "--factors", "0.9,1.1", tmp_path / "train", tmp_path / "sp")
    run_script(step, "--factors", "0.8", tmp_path / "train", tmp_path / "sp")
    speakers = set(read_kv(tmp_path / "sp" / "utt2spk").values())
    assert any(s.startswith("sp0.8-") for s in speakers) and not any(s.startswith("sp0.9-") for s in speakers)
