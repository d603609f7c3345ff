"""Synthetic voices: each speaker's traits (vocal-tract length, formants, F0,
glottal pulse, breathiness, jitter/shimmer, speaking rate) and the source-filter
synthesis of phone-like content with that voice, varied a little per utterance.

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
through np.random.SeedSequence (:func:`speaker_rng`, :func:`utterance_rng`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
from scipy import ndimage, signal

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
