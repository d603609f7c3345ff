"""Synthetic speaker corpus: source-filter voices heard through random channels.

The mini recipe needs a corpus that ships with the code, costs seconds to make and
still poses a real speaker-verification problem. Each speaker gets the traits in
which real voices differ (vocal-tract length, individual formant and vowel
realisations, F0 level and intonation, glottal pulse shape and spectral tilt,
breathiness, jitter/shimmer, speaking rate); each utterance says random
phone-like content with that voice, varies the voice a little (as a person does
from day to day) and passes through a random channel (EQ, reverberation, noise,
level). An embedding network must therefore learn the voice, not the recording.

Synthesis is vectorised numpy, so the default corpus takes seconds, not minutes:
  * the glottal source is a Rosenberg pulse evaluated on a per-sample phase
    (cumulative F0), with jitter, shimmer and pulsed aspiration noise; noise
    bursts at 1 kHz and above stand in for frication;
  * the vocal tract is a lossy uniform tube of the speaker's length whose first
    five resonances are moved to the phone's formants (Klatt-style resonators,
    retargeted every 16 ms hop). It is applied as a time-varying filter by
    overlap-add in the frequency domain (each windowed frame is multiplied by
    its own response), so there is no per-sample Python loop.

Every random draw comes from a generator seeded by (seed, speaker, utterance)
through np.random.SeedSequence, so a corpus does not depend on --nj or on the
order in which workers finish.

Layout written by generate_corpus, the folder-per-speaker tree that
purl.data.prepare.prepare_folder_corpus reads (utterance ids spk0001-u0001, ...):
    <out>/spk0001/u0001.wav ...      16-bit PCM mono
    <out>/.done                      generation parameters as JSON, written last
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.fft
import soundfile
from scipy import ndimage, signal

logger = logging.getLogger(__name__)

# Bumped when a change to the synthesis changes the audio, so that a corpus made
# by an older version is not silently mixed with or mistaken for a new one.
FORMAT_VERSION = 1

# ---------------------------------------------------------------------------
# Phone inventory. Formant frequencies are adult-male averages (Peterson and
# Barney 1952 for F1-F3; F4/F5 typical values); speakers scale them.
# Each entry: (F1..F5 in Hz, B1..B5 in Hz).
# ---------------------------------------------------------------------------
_VOWEL_BW = (70.0, 100.0, 140.0, 250.0, 350.0)
VOWELS = {
    "iy": ((270, 2290, 3010, 3500, 4500), _VOWEL_BW),
    "ih": ((390, 1990, 2550, 3500, 4500), _VOWEL_BW),
    "eh": ((530, 1840, 2480, 3500, 4500), _VOWEL_BW),
    "ae": ((660, 1720, 2410, 3500, 4500), _VOWEL_BW),
    "ah": ((520, 1190, 2390, 3500, 4500), _VOWEL_BW),
    "aa": ((730, 1090, 2440, 3500, 4500), _VOWEL_BW),
    "ao": ((570, 840, 2410, 3500, 4500), _VOWEL_BW),
    "uh": ((440, 1020, 2240, 3500, 4500), _VOWEL_BW),
    "uw": ((300, 870, 2240, 3500, 4500), _VOWEL_BW),
    "er": ((490, 1350, 1690, 3500, 4500), _VOWEL_BW),
}
# Rest position: the resonances of a uniform 17.5 cm tube, (2k - 1) * 500 Hz.
_NEUTRAL = ((500, 1500, 2500, 3500, 4500), _VOWEL_BW)
# Nasal murmurs: low F1, damped upper formants, weak.
NASALS = {
    "m": ((250, 1000, 2200, 3300, 4500), (100, 250, 300, 400, 500)),
    "n": ((250, 1500, 2500, 3300, 4500), (100, 250, 300, 400, 500)),
}
# Fricatives and stop bursts: noise through broad front-cavity resonances; the
# frication noise is high-passed, so F1 matters little here.
FRICATIVES = {
    "s": ((400, 1700, 2700, 4300, 5300), (300, 400, 400, 500, 600)),
    "sh": ((400, 1800, 2400, 3000, 4200), (300, 300, 300, 400, 500)),
    "f": ((400, 1400, 2500, 3600, 4800), (400, 600, 700, 800, 900)),
    "h": ((500, 1500, 2500, 3500, 4500), (200, 200, 300, 400, 500)),
}
BURSTS = {  # labial (flat), alveolar (high), velar (compact mid)
    "p": ((400, 1000, 2200, 3500, 4500), (400, 600, 700, 800, 900)),
    "t": ((400, 1800, 2800, 4000, 5000), (300, 400, 400, 500, 600)),
    "k": ((400, 1900, 2300, 3300, 4500), (300, 200, 300, 400, 500)),
}

# Noise-source amplitudes relative to a fully voiced vowel (1.0): fricatives
# are 10-20 dB weaker than vowels in real speech.
_FRICATION_AMP = 0.12
_BURST_AMP = 0.4


@dataclass(frozen=True)
class SpeakerProfile:
    """The fixed traits of one synthetic voice (drawn by draw_speaker)."""

    female: bool
    f0_mean: float  # Hz, long-term pitch level
    intonation_st: float  # std of the pitch targets around f0_mean, semitones
    declination_st: float  # pitch drift per second, semitones (downwards)
    formant_scale: float  # vocal-tract length: factor on the whole formant table
    formant_dev: tuple[float, ...]  # individual factor per formant F1..F5
    vowel_dev: tuple[tuple[float, float], ...]  # per vowel: factors on (F1, F2), an "accent"
    bandwidth_scale: float  # damping of the tract (wall losses, glottal leakage)
    open_quotient: float  # fraction of the glottal period the folds are open
    tilt: float  # one-pole low-pass coefficient on the source: larger = darker voice
    breathiness: float  # aspiration-noise share of the voiced source
    jitter: float  # relative std of F0 from one period to the next
    shimmer: float  # relative std of amplitude from one period to the next
    rate: float  # speaking rate factor: >1 speaks faster


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
                raise ValueError(f"SynthConfig: {name}=({lo}, {hi}) has min > max")
        if self.within_speaker_var < 0 or self.eq_strength < 0:
            raise ValueError("SynthConfig: within_speaker_var and eq_strength must be >= 0")
        if not 0.0 <= self.reverb_prob <= 1.0:
            raise ValueError(f"SynthConfig: reverb_prob={self.reverb_prob} is not in [0, 1]")
        if not (0.0 <= self.wet_range[0] and self.wet_range[1] < 1.0):
            raise ValueError(f"SynthConfig: wet_range={self.wet_range} must lie in [0, 1)")
        if self.rt60_range[0] <= 0:
            raise ValueError(f"SynthConfig: rt60_range={self.rt60_range} must be > 0")


# ---------------------------------------------------------------------------
# Random generators
# ---------------------------------------------------------------------------
def speaker_rng(seed: int, speaker: int) -> np.random.Generator:
    """Generator for a speaker's profile; the leading 0 separates it from utterances."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, speaker)))


def utterance_rng(seed: int, speaker: int, utt: int) -> np.random.Generator:
    """Generator for one utterance: the same (seed, speaker, utt) gives the same audio."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, speaker, utt)))


def draw_speaker(rng: np.random.Generator) -> SpeakerProfile:
    """Draw the traits of one voice. Male and female voices are equally likely."""
    female = bool(rng.random() < 0.5)
    # Vocal-tract length: female tracts are ~15% shorter, hence higher formants.
    scale = rng.normal(1.15 if female else 1.0, 0.045)
    scale = float(np.clip(scale, 0.88, 1.3))
    # Pitch is bimodal by sex; within a sex, a longer tract goes with a lower
    # voice only loosely (larynx and tract size are weakly correlated).
    f0 = math.exp(rng.normal(math.log(205.0 if female else 115.0), 0.13))
    f0 *= ((1.15 if female else 1.0) / scale) ** 0.5
    f0 = float(np.clip(f0, 85.0, 250.0))
    return SpeakerProfile(
        female=female,
        f0_mean=f0,
        intonation_st=float(rng.uniform(1.0, 4.0)),
        declination_st=float(rng.uniform(0.2, 1.2)),
        formant_scale=scale,
        # F4/F5 depend on the speaker's anatomy more than on the vowel, so they
        # vary more between speakers (a known speaker cue in real speech).
        formant_dev=tuple(float(x) for x in np.exp(rng.normal(0.0, [0.04, 0.04, 0.04, 0.06, 0.06]))),
        vowel_dev=tuple(
            (float(a), float(b)) for a, b in np.exp(rng.normal(0.0, 0.04, size=(len(VOWELS), 2)))
        ),
        bandwidth_scale=float(rng.uniform(0.7, 1.6)),
        open_quotient=float(rng.uniform(0.4, 0.75)),
        tilt=float(rng.uniform(0.0, 0.65)),
        breathiness=float(np.clip(rng.uniform(0.02, 0.3) + (0.05 if female else 0.0), 0.0, 0.4)),
        jitter=float(rng.uniform(0.002, 0.015)),
        shimmer=float(rng.uniform(0.02, 0.12)),
        rate=float(rng.uniform(0.8, 1.25)),
    )


# ---------------------------------------------------------------------------
# Content: a random phone sequence
# ---------------------------------------------------------------------------
@dataclass
class _Phones:
    """Phone table of one utterance (one row per phone, times in seconds)."""

    start: list[float] = field(default_factory=list)
    dur: list[float] = field(default_factory=list)
    formants: list[tuple[float, ...]] = field(default_factory=list)
    bandwidths: list[tuple[float, ...]] = field(default_factory=list)
    voice_amp: list[float] = field(default_factory=list)
    noise_amp: list[float] = field(default_factory=list)

    def add(self, dur, formants, bandwidths, voice_amp, noise_amp) -> None:
        self.start.append(self.start[-1] + self.dur[-1] if self.start else 0.0)
        self.dur.append(dur)
        self.formants.append(tuple(formants))
        self.bandwidths.append(tuple(bandwidths))
        self.voice_amp.append(voice_amp)
        self.noise_amp.append(noise_amp)

    @property
    def end(self) -> float:
        return self.start[-1] + self.dur[-1] if self.start else 0.0


_VOWEL_NAMES = list(VOWELS)


def _draw_phones(rng: np.random.Generator, duration: float, rate: float, profile: SpeakerProfile) -> _Phones:
    """Random syllables (C)V(C) grouped into words separated by occasional pauses."""
    ph = _Phones()
    ph.add(rng.uniform(0.05, 0.25), *_NEUTRAL, 0.0, 0.0)
    syllables_left = 0
    while ph.end < duration:
        if syllables_left == 0:  # word boundary
            if len(ph.dur) > 1 and rng.random() < 0.3:
                ph.add(rng.uniform(0.08, 0.3) / rate, *_NEUTRAL, 0.0, 0.0)
            syllables_left = int(rng.integers(1, 4))
        syllables_left -= 1
        if rng.random() < 0.7:
            _add_consonant(ph, rng, rate)
        v = int(rng.integers(len(VOWELS)))
        (f1, f2, f3, f4, f5), bw = VOWELS[_VOWEL_NAMES[v]]
        a, b = profile.vowel_dev[v]
        stress = rng.uniform(0.55, 1.0)
        ph.add(rng.uniform(0.07, 0.18) / rate, (f1 * a, f2 * b, f3, f4, f5), bw, stress, 0.0)
        if rng.random() < 0.3:
            _add_consonant(ph, rng, rate)
    return ph


def _add_consonant(ph: _Phones, rng: np.random.Generator, rate: float) -> None:
    u = rng.random()
    if u < 0.4:  # fricative, voiced in 40% of cases (z, v, zh)
        name = list(FRICATIVES)[int(rng.integers(len(FRICATIVES)))]
        voiced = name != "h" and rng.random() < 0.4
        ph.add(rng.uniform(0.06, 0.14) / rate, *FRICATIVES[name], 0.2 if voiced else 0.0, _FRICATION_AMP)
    elif u < 0.65:  # nasal murmur
        name = list(NASALS)[int(rng.integers(len(NASALS)))]
        ph.add(rng.uniform(0.04, 0.09) / rate, *NASALS[name], 0.3, 0.0)
    else:  # stop: closure (a weak voice bar if voiced) then a short burst
        name = list(BURSTS)[int(rng.integers(len(BURSTS)))]
        voice_bar = 0.04 if rng.random() < 0.4 else 0.0
        ph.add(rng.uniform(0.03, 0.08) / rate, *BURSTS[name], voice_bar, 0.0)
        ph.add(rng.uniform(0.01, 0.03), *BURSTS[name], 0.0, _BURST_AMP)


# ---------------------------------------------------------------------------
# Synthesis
# ---------------------------------------------------------------------------
def _stft_sizes(sample_rate: int) -> tuple[int, int, int]:
    """Frame (~32 ms, power of two), hop (half a frame) and FFT size (two frames).

    The FFT is twice the frame so that a frame convolved with the vocal-tract
    response (which decays within ~20 ms for bandwidths >= 50 Hz) does not wrap.
    """
    frame = 2 ** round(math.log2(0.032 * sample_rate))
    return frame, frame // 2, 2 * frame


def _formant_response(freqs: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Complex response of a cascade of second-order resonators, unit gain at DC.

    formants, bandwidths: (frames, F) in Hz -> (frames, bins). Each section is
    the analog prototype (poles at -pi*B +- 2j*pi*F) evaluated at the bins, as
    in Klatt's cascade: unit DC gain keeps the level steady while formants move,
    and unlike a digital resonator its skirts do not collapse near Nyquist.
    """
    w = (2.0 * np.pi * freqs).astype(np.float32)  # s = jw
    sigma = np.pi * bandwidths
    omega = 2.0 * np.pi * formants
    # Each denominator (s + sigma)^2 + omega^2 = (sigma^2 + omega^2 - w^2) + 2j*sigma*w,
    # divided by its DC value so that the running product stays of order one
    # (single precision is then ample, and twice as fast).
    inv_dc = 1.0 / (sigma**2 + omega**2)
    real_coef = (-inv_dc).astype(np.float32)
    imag_coef = (2.0 * sigma * inv_dc).astype(np.float32)
    den = np.ones((formants.shape[0], len(freqs)), dtype=np.complex64)
    section = np.empty_like(den)
    for k in range(formants.shape[1]):
        np.multiply(real_coef[:, k : k + 1], w * w, out=section.real)
        section.real += 1.0
        np.multiply(imag_coef[:, k : k + 1], w, out=section.imag)
        den *= section
    return 1.0 / den


def _time_varying_filter(x: np.ndarray, response: np.ndarray, sample_rate: int) -> np.ndarray:
    """Filter x with response[k] (nfft // 2 + 1 complex bins) around sample k * hop.

    Overlap-add of Hann-windowed frames, each convolved with its own filter; since
    the windows sum to one, this crossfades between the per-frame filters with
    no per-sample loop. The FFT is twice the frame, so responses whose impulse
    response fits in one frame (~32 ms) do not wrap.
    """
    frame, hop, nfft = _stft_sizes(sample_rate)
    n = len(x)
    num_frames = response.shape[0]
    if num_frames != -(-n // hop) + 1:
        raise ValueError(f"_time_varying_filter: {num_frames} responses for {n} samples, need one per hop plus one")
    padded = np.zeros((num_frames + 1) * hop)
    padded[hop : hop + n] = x
    window = np.hanning(frame + 1)[:-1]  # periodic Hann: sums to 1 at 50% overlap
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop][:num_frames] * window
    # Single precision: ample for 16-bit output, and half the memory traffic.
    spectra = scipy.fft.rfft(frames.astype(np.float32), nfft)
    out_frames = scipy.fft.irfft(spectra * response.astype(np.complex64, copy=False), nfft)
    blocks = out_frames.reshape(num_frames, nfft // hop, hop)
    out = np.zeros((num_frames + nfft // hop - 1, hop))
    for j in range(nfft // hop):
        out[j : j + num_frames] += blocks[:, j]
    return out.ravel()[hop : hop + n]


@functools.lru_cache(maxsize=None)
def _frication_highpass(sample_rate: int) -> np.ndarray:
    return signal.butter(2, 1000.0 / (sample_rate / 2), "highpass", output="sos")


def _rosenberg_flow(phase_frac: np.ndarray, open_quotient: float) -> np.ndarray:
    """Glottal flow of a Rosenberg pulse at phase in [0, 1).

    Opening takes 2/3 of the open phase, closing 1/3; the closure is abrupt,
    which is what excites the vocal tract. Differentiating the flow (done by
    the caller) adds the +6 dB/octave of lip radiation.
    """
    tp = open_quotient * 2.0 / 3.0
    tn = open_quotient / 3.0
    flow = np.zeros_like(phase_frac)
    opening = phase_frac < tp
    flow[opening] = 0.5 * (1.0 - np.cos(np.pi * phase_frac[opening] / tp))
    closing = (phase_frac >= tp) & (phase_frac < tp + tn)
    flow[closing] = np.cos(0.5 * np.pi * (phase_frac[closing] - tp) / tn)
    return flow


def _interp_columns(times: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation of each column of values (keypoints at times)."""
    return np.stack([np.interp(at, times, values[:, k]) for k in range(values.shape[1])], axis=1)


def synthesize_voice(
    profile: SpeakerProfile,
    rng: np.random.Generator,
    num_samples: int,
    sample_rate: int = 16000,
    within_speaker_var: float = 1.0,
) -> np.ndarray:
    """Clean speech of num_samples samples in this voice (float64, arbitrary level)."""
    sr = sample_rate
    v = within_speaker_var
    duration = num_samples / sr
    # Today's voice: the profile plus a small per-utterance deviation.
    f0_mean = profile.f0_mean * math.exp(rng.normal(0.0, 0.06 * v))
    formant_scale = profile.formant_scale * math.exp(rng.normal(0.0, 0.015 * v))
    rate = profile.rate * math.exp(rng.normal(0.0, 0.08 * v))
    tilt = float(np.clip(profile.tilt + rng.normal(0.0, 0.08 * v), 0.0, 0.9))
    breathiness = float(np.clip(profile.breathiness * math.exp(rng.normal(0.0, 0.2 * v)), 0.0, 0.6))

    ph = _draw_phones(rng, duration, rate, profile)
    start = np.asarray(ph.start)
    dur = np.asarray(ph.dur)

    # Vocal-tract tracks at frame centres. Keypoints at 25% and 75% of each phone
    # give a steady state in the middle and smooth transitions (coarticulation)
    # between neighbours.
    _, hop, _ = _stft_sizes(sr)
    num_frames = -(-num_samples // hop) + 1
    frame_t = np.arange(num_frames) * hop / sr
    key_t = np.stack([start + 0.25 * dur, start + 0.75 * dur], axis=1).ravel()
    key_f = np.repeat(np.asarray(ph.formants), 2, axis=0)
    key_b = np.repeat(np.asarray(ph.bandwidths), 2, axis=0)
    speaker_f = formant_scale * np.asarray(profile.formant_dev)
    formants = _interp_columns(key_t, key_f, frame_t) * speaker_f
    bandwidths = _interp_columns(key_t, key_b, frame_t) * profile.bandwidth_scale
    # The vocal tract is a lossy uniform tube of this speaker's length (all its
    # resonances, up to and beyond Nyquist) whose first five resonances are
    # moved to the phone's formants. A cascade of five resonators alone would
    # fall far too steeply above F5 (what Klatt's "higher-pole correction"
    # makes up for); this keeps the 5-8 kHz band that real speech has.
    freqs = np.fft.rfftfreq(_stft_sizes(sr)[2], 1.0 / sr)
    tube_f1 = _NEUTRAL[0][0] * formant_scale

    def losses(f):  # tube bandwidth in Hz: wall losses, plus radiation growing with f
        return profile.bandwidth_scale * (40.0 + 0.06 * f)

    tube = 1.0 / np.cosh((np.pi * losses(freqs) + 2j * np.pi * freqs) / (4.0 * tube_f1))
    neutral = tube_f1 * np.arange(1, 2 * formants.shape[1], 2)[None, :]
    tube = (tube / _formant_response(freqs, neutral, losses(neutral))[0]).astype(np.complex64)
    response = tube * _formant_response(freqs, formants, bandwidths)

    # Source gains per sample: piecewise constant per phone, with ~12 ms ramps.
    bounds = np.minimum(np.round(np.append(start, ph.end) * sr).astype(int), num_samples)
    lengths = np.diff(bounds)
    voice_gain = np.repeat(np.asarray(ph.voice_amp), lengths)
    noise_gain = np.repeat(np.asarray(ph.noise_amp), lengths)
    ramp = max(1, int(0.012 * sr))
    voice_gain = ndimage.uniform_filter1d(voice_gain, ramp, mode="nearest")
    noise_gain = ndimage.uniform_filter1d(noise_gain, ramp // 2 + 1, mode="nearest")

    # F0 contour: random pitch targets every ~250 ms (intonation) plus declination,
    # in semitones around today's mean.
    n_targets = int(duration / 0.25) + 2
    target_t = np.linspace(0.0, duration, n_targets)
    target_st = rng.normal(0.0, profile.intonation_st, n_targets) - profile.declination_st * (target_t - duration / 2)
    t = np.arange(num_samples) / sr
    f0 = f0_mean * 2.0 ** (np.interp(t, target_t, target_st) / 12.0)
    # Jitter: one random F0 factor per glottal period (periods counted on the
    # phase without jitter, which is close enough); shimmer: one random
    # amplitude per period of the final phase.
    period = (np.cumsum(f0) / sr).astype(np.int64)
    f0 = f0 * (1.0 + profile.jitter * rng.standard_normal(period[-1] + 1))[period]
    phase = np.cumsum(f0) / sr
    period = phase.astype(np.int64)
    flow = _rosenberg_flow(phase - period, profile.open_quotient)
    flow *= (1.0 + profile.shimmer * rng.standard_normal(period[-1] + 1))[period]
    # Differentiate (lip radiation), dividing by F0 so the level does not rise with pitch.
    pulses = np.diff(flow, prepend=0.0) * (sr / f0)
    pulses = signal.lfilter([1.0 - tilt], [1.0, -tilt], pulses)  # glottal spectral tilt
    # Aspiration: turbulence at the glottis, louder while the folds are open.
    # Its spectrum falls gently (one-pole low-pass), as turbulence noise does.
    aspiration = signal.lfilter([0.5], [1.0, -0.5], rng.standard_normal(num_samples)) * (0.3 + flow)
    voiced = (1.0 - breathiness) * pulses / (pulses.std() + 1e-9)
    voiced += breathiness * aspiration / (aspiration.std() + 1e-9)
    # Frication: turbulence at a constriction, no energy below ~1 kHz.
    frication = signal.sosfilt(_frication_highpass(sr), rng.standard_normal(num_samples))
    frication /= frication.std() + 1e-9

    excitation = voice_gain * voiced + noise_gain * frication
    return _time_varying_filter(excitation, response, sr)


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


def synthesize_utterance(
    profile: SpeakerProfile,
    rng: np.random.Generator,
    duration: float,
    sample_rate: int = 16000,
    config: SynthConfig | None = None,
) -> np.ndarray:
    """One recording of `duration` seconds by this speaker: float32 mono in [-1, 1]."""
    config = config or SynthConfig()
    num_samples = int(round(duration * sample_rate))
    if num_samples < 1:
        raise ValueError(f"synthesize_utterance: duration {duration} s gives no samples")
    x = synthesize_voice(profile, rng, num_samples, sample_rate, config.within_speaker_var)
    if config.channel:
        x = apply_channel(x, rng, sample_rate, config)
    else:
        x = x * (0.1 / (math.sqrt(np.mean(x**2)) + 1e-12))
        x = x * min(1.0, 0.99 / (np.max(np.abs(x)) + 1e-12))
    return x.astype(np.float32)


# ---------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusSummary:
    out_dir: str
    num_speakers: int
    num_utts: int
    total_seconds: float
    elapsed_seconds: float
    skipped: bool  # True: an identical corpus was already there


def speaker_name(index: int, num_speakers: int) -> str:
    """spk0001, ...: zero-padded so that names sort like indices (at least 4 digits)."""
    return f"spk{index + 1:0{max(4, len(str(num_speakers)))}d}"


def utt_name(index: int, utts_per_speaker: int) -> str:
    return f"u{index + 1:0{max(4, len(str(utts_per_speaker)))}d}"


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM, written under a temporary name that no *.wav glob can pick up."""
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
    # Encoded in memory: libsndfile fsyncs a file it closes, which costs more
    # than making the audio (the .done marker already tells complete from not).
    buffer = io.BytesIO()
    soundfile.write(buffer, pcm, sample_rate, subtype="PCM_16", format="WAV")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getbuffer())
    os.replace(tmp, path)


def _generate_speaker(job: tuple[str, int, dict]) -> tuple[int, float]:
    """Worker: all utterances of one speaker. Returns (utterances, seconds)."""
    out_dir, spk, params = job
    config = SynthConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in params["config"].items()})
    sr = params["sample_rate"]
    profile = draw_speaker(speaker_rng(params["seed"], spk))
    spk_dir = Path(out_dir) / speaker_name(spk, params["num_speakers"])
    spk_dir.mkdir(parents=True, exist_ok=True)
    seconds = 0.0
    for u in range(params["utts_per_speaker"]):
        rng = utterance_rng(params["seed"], spk, u)
        # The duration comes from the utterance's own generator, first, so it
        # does not depend on anything else.
        duration = round(rng.uniform(params["min_dur"], params["max_dur"]) * sr) / sr
        path = spk_dir / f"{utt_name(u, params['utts_per_speaker'])}.wav"
        if not path.exists():  # a finished file from an interrupted run is complete
            _write_wav(path, synthesize_utterance(profile, rng, duration, sr, config), sr)
        seconds += duration
    return params["utts_per_speaker"], seconds


def _check_out_dir(out: Path, params: dict) -> float | None:
    """Decide what to do with an existing out_dir.

    Returns the corpus's total duration if an identical corpus is complete, None
    if generation should (re)start; raises if the directory holds anything else.
    """
    done, started = out / _DONE, out / _STARTED
    for marker in (done, started):
        if not marker.exists():
            continue
        previous = json.loads(marker.read_text())
        total_seconds = float(previous.pop("total_seconds", 0.0))  # a result, not a parameter
        if previous != params:
            differ = sorted(k for k in set(previous) | set(params) if previous.get(k) != params.get(k))
            raise ValueError(
                f"{out} holds a synthetic corpus made with other parameters (differ: {', '.join(differ)}; "
                f"see {marker}); remove the directory or choose another output directory"
            )
        # Same parameters: complete, or interrupted (its finished files are kept).
        return total_seconds if marker == done else None
    if out.exists() and any(out.iterdir()):
        raise ValueError(
            f"{out} exists, is not empty and holds no synthetic corpus (no {_DONE}); "
            "remove the directory or choose another output directory"
        )
    return None


_DONE = ".done"  # parameters and total duration, written last
_STARTED = ".started"  # parameters, while generation runs


def generate_corpus(
    out_dir: str | os.PathLike,
    num_speakers: int = 200,
    utts_per_speaker: int = 12,
    seed: int = 0,
    min_dur: float = 2.0,
    max_dur: float = 4.0,
    sample_rate: int = 16000,
    config: SynthConfig | None = None,
    nj: int = 2,
) -> CorpusSummary:
    """Write <out_dir>/spkNNNN/uNNNN.wav and then <out_dir>/.done; skip if already done.

    The output depends on all arguments except nj. An existing directory made
    with other parameters is an error (corpora are never mixed); one left by an
    interrupted run with the same parameters is completed.
    """
    config = config or SynthConfig()
    if num_speakers < 1 or utts_per_speaker < 1:
        raise ValueError(f"need at least 1 speaker and 1 utterance, got {num_speakers} x {utts_per_speaker}")
    if not 0.0 < min_dur <= max_dur:
        raise ValueError(f"need 0 < min_dur <= max_dur, got {min_dur}, {max_dur}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate {sample_rate} is below 8000")
    if nj < 1:
        raise ValueError(f"nj must be >= 1, got {nj}")
    params = {
        "format_version": FORMAT_VERSION,
        "num_speakers": int(num_speakers),
        "utts_per_speaker": int(utts_per_speaker),
        "seed": int(seed),
        "min_dur": float(min_dur),
        "max_dur": float(max_dur),
        "sample_rate": int(sample_rate),
        "config": asdict(config),
    }
    params = json.loads(json.dumps(params))  # tuples -> lists, as read back from disk
    out = Path(out_dir)
    t0 = time.time()
    total_seconds = _check_out_dir(out, params)
    if total_seconds is not None:
        logger.info("%s already holds this corpus (%s); nothing to do", out, out / _DONE)
        return CorpusSummary(str(out), num_speakers, num_speakers * utts_per_speaker, total_seconds, 0.0, True)
    out.mkdir(parents=True, exist_ok=True)
    (out / _STARTED).write_text(json.dumps(params, indent=1, sort_keys=True) + "\n")

    jobs = [(str(out), spk, params) for spk in range(num_speakers)]
    num_utts, total_seconds = 0, 0.0
    if nj == 1:
        for n, seconds in map(_generate_speaker, jobs):
            num_utts, total_seconds = num_utts + n, total_seconds + seconds
    else:
        # spawn: workers start clean (no threads or locks inherited from the caller).
        with multiprocessing.get_context("spawn").Pool(min(nj, num_speakers)) as pool:
            for i, (n, seconds) in enumerate(pool.imap_unordered(_generate_speaker, jobs), 1):
                num_utts, total_seconds = num_utts + n, total_seconds + seconds
                if i % max(1, num_speakers // 5) == 0:
                    logger.info("%d/%d speakers written", i, num_speakers)

    tmp = out / (_DONE + ".tmp")
    tmp.write_text(json.dumps({**params, "total_seconds": round(total_seconds, 3)}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out / _DONE)
    (out / _STARTED).unlink()
    elapsed = time.time() - t0
    logger.info("wrote %d utterances (%.2f h) of %d speakers to %s in %.1f s",
                num_utts, total_seconds / 3600, num_speakers, out, elapsed)
    return CorpusSummary(str(out), num_speakers, num_utts, total_seconds, elapsed, False)
