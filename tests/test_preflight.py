"""The preflight: each problem that would fail a recipe hours in is found in
seconds, with a message that says what and how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest

from purl.audio import speed_entry
from purl.preflight import check_audio_tools, check_batch, check_devices, check_disk, check_files
from tests.conftest import ROOT, TINY_CONFIG, run_script


@pytest.mark.parametrize("gpus, count, message", [
    ("[0,1]", 8, "gpus='[0,1]' is not a comma-separated list of GPU numbers"),
    ("0,0", 8, "names a GPU twice"),
    ("0,1", 0, "torch sees no CUDA device"),
    ("0,2", 2, "names GPU 2, but torch sees 2 CUDA device(s) (numbers 0..1)"),
])
def test_gpus_that_torch_cannot_see_are_an_error(gpus, count, message):
    problems = check_devices(gpus, device_count=lambda: count)
    assert len(problems) == 1 and message in problems[0]


def test_gpus_it_can_see_and_the_cpu_pass():
    assert check_devices("0,1,7", device_count=lambda: 8) == []
    assert check_devices("", device_count=lambda: 1 / 0) == []  # the CPU: torch is not even asked


def test_batch_must_cover_the_processes_and_fit_the_speakers(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)  # 4 speakers per batch
    assert check_batch([str(config)], [], 3) == []
    [problem] = check_batch([str(config)], [], 8)
    assert "data.speakers_per_batch=4 is fewer than the 8 training processes" in problem
    data = tmp_path / "data"
    data.mkdir()
    (data / "spk2utt").write_text("a a-1 a-2\nb b-1 b-2\n")
    [problem] = check_batch([str(config)], [], 1, [str(data)])
    assert f"exceeds the 2 speakers of {data}" in problem
    [problem] = check_batch([str(config)], ["optim.learning_rate=0.1"], 1)
    assert "unknown key 'optim.learning_rate'" in problem


def write_data_dir(path: Path, wav_entries: list[str], utt2dur: list[float] | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "wav.scp").write_text("".join(f"spk-u{n} {e}\n" for n, e in enumerate(wav_entries)))
    if utt2dur is not None:
        (path / "utt2dur").write_text("".join(f"spk-u{n} {d}\n" for n, d in enumerate(utt2dur)))
    return path


def test_missing_ffmpeg_is_an_error_only_where_wav_scp_pipes_through_it(tmp_path):
    m4a = write_data_dir(tmp_path / "vox2", ["/c/a.wav", "ffmpeg -nostdin -i /c/b.m4a -f wav - |"])
    wav = write_data_dir(tmp_path / "vox1", ["/c/a.wav", "/c/b.wav"])
    [problem] = check_audio_tools([str(m4a), str(wav)], which=lambda program: None)
    assert f"{m4a}/wav.scp line 2: reads audio through 'ffmpeg', which is not installed" in problem
    assert check_audio_tools([str(m4a)], which=lambda program: f"/usr/bin/{program}") == []
    assert check_audio_tools([str(wav)], which=lambda program: None) == []


def test_speed_copies_need_no_program_but_their_source_pipe_does(tmp_path):
    entries = [speed_entry("/c/a.wav", 0.9), speed_entry("sox /c/b.sph -t wav - |", 1.1)]
    data = write_data_dir(tmp_path / "sp", entries)
    [problem] = check_audio_tools([str(data)], which=lambda program: None)
    assert f"{data}/wav.scp line 2: reads audio through 'sox', which is not installed" in problem


def test_too_little_disk_for_the_features_is_an_error(tmp_path):
    data = write_data_dir(tmp_path / "train", ["/c/a.wav"] * 3, utt2dur=[10.0, 10.0, 10.0])
    needed = 3 * (1000 * 80 + 20 + 8 * 80 + 40)  # 3,000 frames of 80 compressed values, headers
    assert check_disk([str(data)], str(tmp_path / "fbank"), free_bytes=lambda path: needed) == []
    [problem] = check_disk([str(data)], str(tmp_path / "fbank"), free_bytes=lambda path: needed - 1)
    assert "the features need about 0.0 GB" in problem and "0 h in its utt2dur" in problem
    no_durations = write_data_dir(tmp_path / "vox2", ["/c/a.wav"] * 1000)
    [problem] = check_disk([str(no_durations)], str(tmp_path / "fbank"), free_bytes=lambda path: 10**6)
    assert "1000 utterances x 8.0 s (no utt2dur; --mean-duration)" in problem
    (no_durations / "feats.scp").write_text("")  # stage 1 done: nothing more to write
    assert check_disk([str(no_durations)], str(tmp_path / "fbank"), free_bytes=lambda path: 0) == []


def test_missing_or_empty_trial_lists_and_corpus_folders_are_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    problems = check_files([str(tmp_path / "veri_test2.txt"), str(tmp_path / "empty.txt")], [str(tmp_path / "wav")])
    assert problems == [f"{tmp_path}/veri_test2.txt: trial list missing (download it, or fix the path)",
                        f"{tmp_path}/empty.txt: trial list is empty (download it again)",
                        f"{tmp_path}/wav: no such directory (set the corpus path)"]


def test_voxceleb_recipe_stops_before_stage_0_listing_every_problem(tmp_path):
    proc = run_script("bash", "run.sh", "--gpus", "[0,1]", "--vox1-root", tmp_path / "vox1",
                      "--vox1-trials-dir", tmp_path / "meta", "--train-overrides", "optim.learning_rate=1",
                      cwd=ROOT / "egs" / "voxceleb", check=False)
    assert proc.returncode != 0
    for message in ("gpus='[0,1]' is not a comma-separated list", "unknown key 'optim.learning_rate'",
                    f"{tmp_path}/meta/veri_test2.txt: trial list missing", f"{tmp_path}/vox1: no such directory"):
        assert message in proc.stderr, proc.stderr
    assert "Stage 0" not in proc.stdout + proc.stderr
    assert not (ROOT / "egs" / "voxceleb" / "data").exists()


def test_train_sh_refuses_gpus_torch_cannot_use(tmp_path):
    proc = run_script(ROOT / "steps" / "train.sh", "--gpus", "[0,1]", tmp_path / "c.yaml", tmp_path / "data",
                      tmp_path / "exp", check=False)
    assert proc.returncode != 0 and "gpus='[0,1]' is not a comma-separated list" in proc.stderr
