"""The synthetic corpus: utterances of synthetic voices through random
channels, written as the folder-per-speaker tree that
purl.data.prepare.prepare_folder_corpus reads (utterance ids spk0001-u0001, ...):

    <out>/spk0001/u0001.wav ...      16-bit PCM mono
    <out>/.done                      generation parameters as JSON, written last

A corpus does not depend on --nj or on the order in which workers finish.
"""

from __future__ import annotations

import io
import json
import logging
import math
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile

from purl.fileio import atomic_path
from synthetic.channel import SynthConfig, SynthError, apply_channel
from synthetic.voice import SpeakerProfile, draw_speaker, speaker_rng, synthesize_voice, utterance_rng

logger = logging.getLogger(__name__)

# Bumped when a change to the synthesis changes the audio, so that a corpus made
# by an older version is not silently mixed with or mistaken for a new one.
FORMAT_VERSION = 1


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
        raise SynthError(f"synthesize_utterance: duration {duration} s gives no samples")
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
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


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


def check_out_dir(out: Path, params: dict, what: str = "synthetic corpus") -> float | None:
    """Decide what to do with an existing out_dir of generated audio (``what``).

    Returns its total duration if one made with ``params`` is complete, None if
    generation should (re)start; raises if the directory holds anything else.
    """
    done, started = out / DONE, out / STARTED
    for marker in (done, started):
        if not marker.exists():
            continue
        previous = json.loads(marker.read_text())
        total_seconds = float(previous.pop("total_seconds", 0.0))  # a result, not a parameter
        if previous != params:
            differ = sorted(k for k in set(previous) | set(params) if previous.get(k) != params.get(k))
            raise SynthError(
                f"{out} holds a {what} made with other parameters (differ: {', '.join(differ)}; "
                f"see {marker}); remove the directory or choose another output directory"
            )
        # Same parameters: complete, or interrupted (its finished files are kept).
        return total_seconds if marker == done else None
    if out.exists() and any(out.iterdir()):
        raise SynthError(
            f"{out} exists, is not empty and holds no {what} (no {DONE}); "
            "remove the directory or choose another output directory"
        )
    return None


DONE = ".done"  # parameters and total duration, written last
STARTED = ".started"  # parameters, while generation runs


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
        raise SynthError(f"need at least 1 speaker and 1 utterance, got {num_speakers} x {utts_per_speaker}")
    if not 0.0 < min_dur <= max_dur:
        raise SynthError(f"need 0 < min_dur <= max_dur, got {min_dur}, {max_dur}")
    if sample_rate < 8000:
        raise SynthError(f"sample_rate {sample_rate} is below 8000")
    if nj < 1:
        raise SynthError(f"nj must be >= 1, got {nj}")
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
    total_seconds = check_out_dir(out, params)
    if total_seconds is not None:
        logger.info("%s already holds this corpus (%s); nothing to do", out, out / DONE)
        return CorpusSummary(str(out), num_speakers, num_speakers * utts_per_speaker, total_seconds, 0.0, True)
    out.mkdir(parents=True, exist_ok=True)
    (out / STARTED).write_text(json.dumps(params, indent=1, sort_keys=True) + "\n")

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

    with atomic_path(out / DONE) as tmp:
        tmp.write_text(json.dumps({**params, "total_seconds": round(total_seconds, 3)}, indent=1, sort_keys=True) + "\n")
    (out / STARTED).unlink()
    elapsed = time.time() - t0
    logger.info("wrote %d utterances (%.2f h) of %d speakers to %s in %.1f s",
                num_utts, total_seconds / 3600, num_speakers, out, elapsed)
    return CorpusSummary(str(out), num_speakers, num_utts, total_seconds, elapsed, False)
