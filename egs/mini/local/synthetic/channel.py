"""The recording channel of a synthetic utterance: microphone EQ, room
reverberation, noise at a random SNR and level; and SynthConfig, the ranges
that set how hard the corpus is."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import signal

from purl.errors import PurlError


class SynthError(PurlError, ValueError):
    """Settings or an output dir the generator cannot use."""


@dataclass(frozen=True)
class SynthConfig:
    """How hard the corpus is: within-speaker variability and channel ranges.

    within_speaker_var scales every per-utterance deviation of the voice from
    its profile (0 = the speaker sounds identical every time, 1 = default, 2 =
    twice the day-to-day variation). The channel knobs apply per utterance.
    """

    within_speaker_var: float = 1.0
    channel: bool = True  # False: clean synthetic speech (debugging, tests)
    snr_range: tuple[float, float] = (5.0, 30.0)  # dB, over the whole utterance
    reverb_prob: float = 0.7
    rt60_range: tuple[float, float] = (0.1, 0.4)  # seconds
    wet_range: tuple[float, float] = (0.1, 0.6)  # reverberant share of the energy
    eq_strength: float = 1.0  # scales the random EQ (tilt up to +-1.5 dB/octave, peak +-6 dB)
    level_range: tuple[float, float] = (-32.0, -16.0)  # RMS level, dBFS

    def __post_init__(self) -> None:
        for name in ("snr_range", "rt60_range", "wet_range", "level_range"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise SynthError(f"SynthConfig: {name}=({lo}, {hi}) has min > max")
        if self.within_speaker_var < 0 or self.eq_strength < 0:
            raise SynthError("SynthConfig: within_speaker_var and eq_strength must be >= 0")
        if not 0.0 <= self.reverb_prob <= 1.0:
            raise SynthError(f"SynthConfig: reverb_prob={self.reverb_prob} is not in [0, 1]")
        if not (0.0 <= self.wet_range[0] and self.wet_range[1] < 1.0):
            raise SynthError(f"SynthConfig: wet_range={self.wet_range} must lie in [0, 1)")
        if self.rt60_range[0] <= 0:
            raise SynthError(f"SynthConfig: rt60_range={self.rt60_range} must be > 0")


# ---------------------------------------------------------------------------
# Channel
# ---------------------------------------------------------------------------
def _spectral_shape(x: np.ndarray, gain_db_of_freq, sample_rate: int) -> np.ndarray:
    """Apply a zero-phase gain (dB as a function of Hz) to the whole signal by FFT."""
    n = x.shape[-1]
    nfft = scipy.fft.next_fast_len(n + n // 8, real=True)  # a little padding against wrap-around
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    # The shapes are smooth: evaluate them on 1025 points and interpolate.
    coarse = np.linspace(0.0, sample_rate / 2, 1025)
    gain = np.interp(freqs, coarse, 10.0 ** (gain_db_of_freq(np.maximum(coarse, 20.0)) / 20.0))
    return scipy.fft.irfft(scipy.fft.rfft(x, nfft) * gain, nfft)[..., :n]


def _colored_noise(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """White, pink, brown or babble-like noise (speech-shaped and syllable-modulated)."""
    kind = int(rng.integers(4))
    white = rng.standard_normal(n)
    if kind == 0:
        return white
    if kind == 1:
        return _spectral_shape(white, lambda f: -10.0 * np.log10(f / 1000.0), sample_rate)
    if kind == 2:
        return _spectral_shape(white, lambda f: -20.0 * np.log10(f / 200.0), sample_rate)
    # Babble-like: 3-6 talkers, each speech-shaped noise switched on and off at a
    # syllabic rate of 3-6 Hz. Independent streams add in power, so one stream
    # scaled by the root of the summed squared envelopes has the same statistics.
    shaped = _spectral_shape(white, lambda f: -9.0 * np.abs(np.log2(f / 600.0)) ** 1.5, sample_rate)
    t = np.arange(0, n + 160, 160) / sample_rate  # envelopes are slow: 10 ms steps
    power = np.zeros(len(t))
    for _ in range(int(rng.integers(3, 7))):
        power += (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3.0, 6.0) * t + rng.uniform(0, 2 * np.pi))) ** 2
    return shaped * np.interp(np.arange(n) / sample_rate, t, np.sqrt(power))


def apply_channel(x: np.ndarray, rng: np.random.Generator, sample_rate: int, config: SynthConfig) -> np.ndarray:
    """Random microphone/room/noise/level of one recording; returns float64 in [-1, 1]."""
    sr = sample_rate
    n = len(x)
    # Microphone and preamp: gentle tilt, one peak or notch, band limits.
    s = config.eq_strength
    tilt_db = rng.uniform(-1.5, 1.5) * s  # per octave around 1 kHz
    peak_db, peak_hz, peak_oct = rng.uniform(-6.0, 6.0) * s, rng.uniform(300.0, 4000.0), rng.uniform(0.3, 1.0)
    highpass_hz = rng.uniform(40.0, 200.0)
    lowpass_hz = rng.uniform(0.35, 0.5) * sr

    def eq_db(f):
        octs = np.log2(f / 1000.0)
        gain = tilt_db * octs + peak_db * np.exp(-0.5 * (np.log2(f / peak_hz) / peak_oct) ** 2)
        gain -= 10.0 * np.log10(1.0 + (highpass_hz / f) ** 4)  # 2nd-order-like skirts
        gain -= 10.0 * np.log10(1.0 + (f / lowpass_hz) ** 8)
        return gain

    y = _spectral_shape(x, eq_db, sr)

    # Room: exponentially decaying noise tail after the direct sound.
    if rng.random() < config.reverb_prob:
        rt60 = rng.uniform(*config.rt60_range)
        wet = rng.uniform(*config.wet_range)
        predelay = int(rng.uniform(0.002, 0.01) * sr)
        tail_t = np.arange(int(rt60 * sr)) / sr
        tail = rng.standard_normal(len(tail_t)) * np.exp(-6.91 * tail_t / rt60)  # -60 dB at rt60
        ir = np.zeros(predelay + len(tail))
        ir[predelay:] = tail * math.sqrt(wet / (1.0 - wet) / np.sum(tail**2))  # tail/direct energy
        ir[0] = 1.0
        y = signal.fftconvolve(y, ir)[:n]

    # Noise at a random SNR over the whole utterance.
    snr_db = rng.uniform(*config.snr_range)
    noise = _colored_noise(rng, n, sr)
    speech_power = np.mean(y**2) + 1e-12
    y = y + noise * math.sqrt(speech_power / (np.mean(noise**2) + 1e-12) / 10.0 ** (snr_db / 10.0))

    # Level: random RMS, scaled down (never clipped) if a peak would exceed full scale.
    level_db = rng.uniform(*config.level_range)
    y *= 10.0 ** (level_db / 20.0) / (math.sqrt(np.mean(y**2)) + 1e-12)
    peak = np.max(np.abs(y))
    if peak > 0.99:
        y *= 0.99 / peak
    return y
