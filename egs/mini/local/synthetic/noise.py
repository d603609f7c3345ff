"""Generated stand-ins for MUSAN (noise, music, babble talkers) and RIRS_NOISES
(simulated room impulse responses), written in their real layouts
(local/make_noise_sources.py): sources for the augmentation of the small recipes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from purl.fileio import atomic_path
from synthetic.corpus import DONE, STARTED, check_out_dir, synthesize_utterance
from synthetic.voice import draw_speaker, speaker_rng, utterance_rng

RATE = 16000
FORMAT_VERSION = 1  # bumped when a change here changes the audio


def spectral_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= f[1:] ** (exponent / 2)
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def noise_clip(rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    kind = rng.integers(6)
    if kind < 3:  # white, pink, brown
        x = spectral_noise(rng, n, float(kind))
    elif kind == 3:  # a band of noise (fans, engines, hiss)
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / RATE)
        centre, width = rng.uniform(150, 5000), rng.uniform(0.2, 1.0)
        spectrum *= np.exp(-0.5 * (np.log2(np.maximum(f, 1) / centre) / width) ** 2)
        x = np.fft.irfft(spectrum, n)
    elif kind == 4:  # noise with a slow level change (traffic, wind)
        x = spectral_noise(rng, n, rng.uniform(0, 2)) * (1 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.3, 6) * t))
    else:  # mains hum and its harmonics under some noise
        f0 = rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
        x = x + 0.1 * spectral_noise(rng, n, 1.0) / (np.std(spectral_noise(rng, n, 1.0)) + 1e-9)
    return x


def music_clip(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Notes of a random scale, 1-3 voices, harmonics at 1/k, decaying; sometimes clicks on the beat."""
    n = int(seconds * RATE)
    x = np.zeros(n)
    root = rng.uniform(110, 330)
    scale = root * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16]) / 12)
    beat = rng.uniform(0.15, 0.6)
    for _voice in range(int(rng.integers(1, 4))):
        start = 0.0
        while start < seconds:
            length = beat * rng.choice([1, 2, 4])
            m = min(int(length * RATE), n - int(start * RATE))
            t = np.arange(m) / RATE
            f = rng.choice(scale) * rng.choice([0.5, 1, 2])
            note = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 7) if k * f < RATE / 2)
            envelope = np.minimum(t / 0.01, 1) * np.exp(-t / rng.uniform(0.1, 0.8))
            s = int(start * RATE)
            x[s:s + m] += note * envelope
            start += length
    if rng.random() < 0.5:
        for s in np.arange(0, seconds, beat):
            m = min(int(0.03 * RATE), n - int(s * RATE))
            x[int(s * RATE):int(s * RATE) + m] += rng.standard_normal(m) * np.exp(-np.arange(m) / 80) * 0.5
    return x


def room_response(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """Direct sound after 1-10 ms, a few early reflections, then Gaussian noise decaying 60 dB in rt60."""
    n = int(1.2 * rt60 * RATE)
    t = np.arange(n) / RATE
    h = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    direct = int(rng.uniform(0.001, 0.01) * RATE)
    h[:direct] = 0
    h[direct] = 4 * np.abs(h[direct:]).max()
    for delay in rng.uniform(0.002, 0.03, size=int(rng.integers(3, 8))):
        h[direct + int(delay * RATE)] += rng.uniform(-1, 1) * h[direct] * 0.5
    return h


def write(path: Path, x: np.ndarray, peak: float = 0.5) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sf.write(tmp, (peak * x / (np.abs(x).max() + 1e-12)).astype(np.float32), RATE, subtype="PCM_16", format="WAV")


def make_sources(out: Path, seed: int, num_noise: int, num_music: int, num_talkers: int, num_rooms: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(num_noise):
        write(out / "musan/noise/generated" / f"noise-{i:04d}.wav", noise_clip(rng, rng.uniform(4, 10)))
    for i in range(num_music):
        write(out / "musan/music/generated" / f"music-{i:04d}.wav", music_clip(rng, rng.uniform(6, 12)))
    for i in range(num_talkers):  # speakers of seed + 1000: none of any corpus made with a small seed
        profile = draw_speaker(speaker_rng(seed + 1000, i))
        x = synthesize_utterance(profile, utterance_rng(seed + 1000, i, 0), float(rng.uniform(4, 8)), RATE)
        write(out / "musan/speech/synthetic" / f"speech-{i:04d}.wav", x)
    for room, (lo, hi) in (("smallroom", (0.2, 0.5)), ("mediumroom", (0.4, 0.9))):
        for i in range(num_rooms):
            write(out / "RIRS_NOISES/simulated_rirs" / room / f"Room{i + 1:03d}" / f"Room{i + 1:03d}-00001.wav",
                  room_response(rng, float(rng.uniform(lo, hi))), peak=0.9)


def generate_sources(out: Path, seed: int, num_noise: int, num_music: int, num_talkers: int,
                     num_rooms: int) -> tuple[float, bool]:
    """make_sources into ``out`` unless it holds them already: (seconds of audio,
    whether they were there). Another generator's or other options' output is
    an error (sources are never mixed); an interrupted run is made again."""
    params = {"format_version": FORMAT_VERSION, "seed": seed, "num_noise": num_noise, "num_music": num_music,
              "num_talkers": num_talkers, "num_rooms": num_rooms}
    total_seconds = check_out_dir(out, params, what="set of noise sources")
    if total_seconds is not None:
        return total_seconds, True
    out.mkdir(parents=True, exist_ok=True)
    (out / STARTED).write_text(json.dumps(params, indent=1, sort_keys=True) + "\n")
    make_sources(out, seed, num_noise, num_music, num_talkers, num_rooms)
    total_seconds = sum(sf.info(str(p)).duration for p in out.rglob("*.wav"))
    with atomic_path(out / DONE) as tmp:
        tmp.write_text(json.dumps({**params, "total_seconds": round(total_seconds, 3)}, indent=1, sort_keys=True) + "\n")
    (out / STARTED).unlink()
    return total_seconds, False
