"""Stage 1 decodes m4a/aac/mp3 in-process with PyAV: the samples of the ffmpeg
pipe it replaces (within 1 LSB), for any rate and channel count."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from purl.audio import AudioError, audio_duration, read_audio, write_aac
from purl.stages.features import make_fbank_job


def noisy_tone(seconds: float, rate: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 4000 * np.sin(2 * np.pi * 220 * t)[:, None] + rng.normal(0, 800, (t.size, channels))
    return x.clip(-32768, 32767).astype(np.int16).squeeze()


FORMATS = [(16000, 1), (44100, 1), (48000, 2), (8000, 2)]


@pytest.mark.parametrize("rate,channels", FORMATS)
def test_m4a_is_decoded_in_process_to_16k_mono(tmp_path, rate, channels):
    path = tmp_path / "u.m4a"
    write_aac(path, noisy_tone(1.5, rate, channels), rate)
    samples, out_rate = read_audio(str(path))
    assert out_rate == 16000 and samples.dtype == np.float32
    # AAC adds up to two 1024-sample frames (encoder delay, last frame's padding).
    assert 1.5 * 16000 <= len(samples) <= 1.5 * 16000 + 2048 * 16000 / rate + 1
    assert 1000 < np.abs(samples).max() <= 32768 and np.all(samples == np.round(samples))
    assert audio_duration(str(path)) == len(samples) / 16000


@pytest.mark.parametrize("rate,channels", FORMATS)
def test_m4a_samples_equal_the_ffmpeg_pipe_within_one_lsb(tmp_path, rate, channels):
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed: no reference pipe to compare with (apt-get install ffmpeg)")
    path = tmp_path / "u.m4a"
    write_aac(path, noisy_tone(1.5, rate, channels, seed=1), rate)
    ours, _ = read_audio(str(path))
    pipe = f"{ffmpeg} -nostdin -loglevel error -i {path} -ac 1 -ar 16000 -f wav - |"
    reference, ref_rate = read_audio(pipe)  # wav.scp pipes still work
    direct, _ = sf.read(io.BytesIO(subprocess.run(pipe[:-1], shell=True, capture_output=True, check=True).stdout),
                        dtype="int16")
    assert ref_rate == 16000 and np.array_equal(reference, direct.astype(np.float32))
    assert len(ours) == len(reference)
    assert np.abs(ours - reference).max() <= 1


def test_a_format_soundfile_lacks_is_decoded_whatever_its_extension(tmp_path):
    path = tmp_path / "u.audio"  # AAC in MP4 under a name that does not say so
    write_aac(path, noisy_tone(1.0, 16000, 1), 16000)
    samples, rate = read_audio(str(path))
    assert rate == 16000 and len(samples) >= 16000


def test_unreadable_m4a_is_an_audio_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.m4a"
    path.write_bytes(b"not an mp4 file at all")
    with pytest.raises(AudioError, match="cannot read .*broken.m4a"):
        read_audio(str(path))
    with pytest.raises(AudioError, match="missing.m4a does not exist"):
        read_audio(str(tmp_path / "missing.m4a"))


def test_fbank_job_reads_m4a_paths_and_records_a_broken_one(tmp_path):
    good = tmp_path / "a.m4a"
    write_aac(good, noisy_tone(1.0, 16000, 1), 16000)
    (tmp_path / "b.m4a").write_bytes(b"\0" * 100)
    result = make_fbank_job({"s-a": str(good), "s-b": str(tmp_path / "b.m4a")}, tmp_path / "raw.ark")
    assert result.done == 1 and list(result.failed) == ["s-b"]
    frames = (tmp_path / "raw.utt2num_frames").read_text().split()
    assert frames[0] == "s-a" and int(frames[1]) >= 98
