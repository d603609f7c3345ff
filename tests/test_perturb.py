"""Speed perturbation: new speakers, audio of the right length, clear errors."""

from __future__ import annotations

import shutil

import pytest

from purl.audio import read_audio
from purl.data.datadir import DataDirError, read_kv, validate_data_dir
from purl.data.perturb import perturb_speed
from purl.data.prepare import prepare_folder_corpus
from tests.conftest import ROOT, copy_recipe, run_script, write_tone


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="speed perturbation decodes through ffmpeg")
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


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="speed perturbation decodes through ffmpeg")
def test_voxceleb_recipe_prepares_speed_copies_and_augmentation_sources(tmp_path, fake_voxceleb):
    recipe = copy_recipe("voxceleb", tmp_path / "recipe")
    musan, rirs = tmp_path / "musan", tmp_path / "RIRS_NOISES"
    for part in ("noise", "music", "speech"):
        write_tone(musan / part / "src" / f"{part}-src-0000.wav", seconds=0.2)
    for room in ("smallroom", "mediumroom"):
        write_tone(rirs / "simulated_rirs" / room / "Room001" / "Room001-00001.wav", seconds=0.1)
    run_script("bash", "run.sh", "--stage", "0", "--stop-stage", "1", "--nj", "2", "--speed-perturb", "true",
               "--augment", "true", "--musan-root", musan, "--rirs-root", rirs,
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
