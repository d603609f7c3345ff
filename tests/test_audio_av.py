"""Stage 1 decodes m4a/aac/mp3 in-process with PyAV: the samples of the ffmpeg
pipe it replaces (within 1 LSB), for any rate and channel count; several
channels are averaged in every container."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from purl.audio import AudioError, audio_duration, read_audio, write_aac
from purl.data.augment import read_segment
from purl.stages.fbank import make_fbank_job
from tests.conftest import ROOT

REFERENCES = ROOT / "tests" / "data" / "ffmpeg"


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
def test_m4a_samples_equal_the_ffmpeg_pipe_within_one_lsb(rate, channels):
    """Against what the pipe 'ffmpeg -i f.m4a -ac 1 -ar 16000 -f wav - |' of
    Debian's ffmpeg 5.1.9 made of the same m4a (tests/data/ffmpeg, its
    make_references.sh), so no ffmpeg is needed here."""
    ours, _ = read_audio(str(REFERENCES / f"aac_{rate}_{channels}.m4a"))
    reference, _ = sf.read(REFERENCES / f"aac_{rate}_{channels}.flac", dtype="int16")
    assert len(ours) == len(reference)
    assert np.abs(ours - reference).max() <= 1


def test_a_wav_scp_pipe_still_works(tmp_path):
    path = tmp_path / "u.wav"
    sf.write(path, noisy_tone(0.5, 16000, 1), 16000)
    samples, rate = read_audio(f"cat {path} |")
    direct, _ = sf.read(path, dtype="int16")
    assert rate == 16000 and np.array_equal(samples, direct.astype(np.float32))


def test_several_channels_are_averaged_whatever_the_container(tmp_path):
    x = noisy_tone(0.5, 16000, 2)
    sf.write(tmp_path / "st.wav", x, 16000)  # read by soundfile
    write_aac(tmp_path / "st.m4a", x, 16000, codec="alac")  # lossless, decoded by PyAV
    mean = x.astype(np.float32).mean(axis=1)
    np.testing.assert_array_equal(read_audio(str(tmp_path / "st.wav"))[0], mean)
    np.testing.assert_array_equal(read_audio(f"cat {tmp_path / 'st.wav'} |")[0], mean)
    m4a, _ = read_audio(str(tmp_path / "st.m4a"))
    assert len(m4a) == len(mean) and np.abs(m4a - mean).max() <= 0.5  # FFmpeg rounds the mean to 16 bits
    noise = read_segment(str(tmp_path / "st.wav"), len(x), np.random.default_rng(0))  # augmentation's reader
    np.testing.assert_array_equal(noise, mean)


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
