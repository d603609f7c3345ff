#!/usr/bin/env python3
"""Usage: python bench/bench_fbank.py [--utts 200] [--seconds 4] [--m4a-seconds 8]   (after . ./path.sh)

Stage 1 speed on one core: real-time factor of bare kaldi-native-fbank calls on
audio already in memory, and of the whole job (read wav, fbank, Kaldi-compress,
write ark + scp), on the same generated 16 kHz audio; then the whole job on
VoxCeleb2's format, AAC in m4a (encoded here with PyAV, --m4a-seconds long),
decoded in-process (target >= 100x real time), beside the one-ffmpeg-process-
per-file pipe it replaced (when ffmpeg is installed). Prints a markdown table.
"""

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from purl.allocator import keep_freed_memory
from purl.audio import write_aac
from purl.data.datadir import utt2spk_to_spk2utt, write_kv
from purl.features import compute_fbank, fbank_options
from purl.stages.fbank import make_fbank_job

M4A_TARGET = 100  # x real time, decode + fbank + write, one core
ROOT = Path(__file__).resolve().parent.parent
FEATURE_TYPES = ("kaldi", "speechbrain")


def stage1_script_seconds(wav_scp: dict[str, str], work: Path, feature_type: str, repeats: int) -> float:
    """Best of ``repeats`` runs of steps/make_fbank.sh --nj 1 on a fresh data dir of ``wav_scp``."""
    def run_once() -> None:
        data = work / f"data_{feature_type}"
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(work / f"fbank_{feature_type}", ignore_errors=True)
        data.mkdir(parents=True)
        write_kv(data / "wav.scp", wav_scp)
        utt2spk = {u: u.split("-")[0] for u in wav_scp}
        write_kv(data / "utt2spk", utt2spk)
        write_kv(data / "spk2utt", utt2spk_to_spk2utt(utt2spk))
        subprocess.run(["bash", str(ROOT / "steps" / "make_fbank.sh"), "--nj", "1", "--feature-type", feature_type,
                        str(data), str(data / "log"), str(work / f"fbank_{feature_type}")],
                       check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PURL_ROOT": str(ROOT)})
    return best_of(repeats, run_once)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utts", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each utterance")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--m4a-seconds", type=float, default=8.0, help="length of each m4a utterance")
    parser.add_argument("--m4a-utts", type=int, default=100)
    return parser


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    args = get_parser().parse_args()
    keep_freed_memory()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    rng = np.random.default_rng(0)
    n = int(args.seconds * 16000)
    with tempfile.TemporaryDirectory() as tmp:
        wav_scp, audio = {}, []
        for i in range(args.utts):
            x = (rng.standard_normal(n) * 2000).clip(-32768, 32767).astype(np.int16)
            path = Path(tmp) / f"u{i:04d}.wav"
            sf.write(path, x, 16000, subtype="PCM_16")
            wav_scp[f"spk-u{i:04d}"] = str(path)
            audio.append(x.astype(np.float32))
        opts = fbank_options()
        total = args.utts * args.seconds
        bare = best_of(args.repeats, lambda: [compute_fbank(x, opts) for x in audio])
        whole = best_of(args.repeats, lambda: make_fbank_job(wav_scp, Path(tmp) / "out.ark"))
        per_type = {t: (best_of(args.repeats, lambda t=t: make_fbank_job(wav_scp, Path(tmp) / f"{t}.ark",
                                                                         feature_type=t)),
                        stage1_script_seconds(wav_scp, Path(tmp), t, args.repeats)) for t in FEATURE_TYPES}

        m4a_scp, pipe_scp = {}, {}
        m = int(args.m4a_seconds * 16000)
        for i in range(args.m4a_utts):
            path = Path(tmp) / f"v{i:04d}.m4a"
            write_aac(path, (rng.standard_normal(m) * 2000).clip(-32768, 32767).astype(np.int16), 16000)
            m4a_scp[f"spk-v{i:04d}"] = str(path)
            pipe_scp[f"spk-v{i:04d}"] = f"ffmpeg -nostdin -loglevel error -i {path} -ac 1 -ar 16000 -f wav - |"
        m4a_total = args.m4a_utts * args.m4a_seconds
        m4a = best_of(args.repeats, lambda: make_fbank_job(m4a_scp, Path(tmp) / "m4a.ark"))
        pipe = best_of(1, lambda: make_fbank_job(pipe_scp, Path(tmp) / "pipe.ark")) if shutil.which("ffmpeg") else None
    print(f"{args.utts} utterances x {args.seconds:g} s (wav), {args.m4a_utts} x {args.m4a_seconds:g} s (m4a), one core\n")
    print("| step | seconds | x real time | target |")
    print("|---|---:|---:|---|")
    print(f"| bare kaldi-native-fbank | {bare:.2f} | {total / bare:.0f} | |")
    print(f"| whole job, wav (read, fbank, compress, write) | {whole:.2f} | {total / whole:.0f} | |")
    print(f"| whole job, m4a decoded in-process (PyAV) | {m4a:.2f} | {m4a_total / m4a:.0f} | >= {M4A_TARGET}x: "
          f"{'met' if m4a_total / m4a >= M4A_TARGET else 'NOT met'} |")
    if pipe is not None:
        print(f"| whole job, m4a through an ffmpeg pipe per file (before) | {pipe:.2f} | {m4a_total / pipe:.0f} | |")
    print(f"\nwhole job / bare fbank: {whole / bare:.2f}x")
    print(f"\nFeature types, the same {args.utts} wav utterances x {args.seconds:g} s, one core:\n")
    print("| --feature-type | whole job (s) | ms per utterance | steps/make_fbank.sh --nj 1 (s) | ms per utterance |")
    print("|---|---:|---:|---:|---:|")
    for t, (job, script) in per_type.items():
        print(f"| {t} | {job:.2f} | {1000 * job / args.utts:.1f} | {script:.2f} | {1000 * script / args.utts:.1f} |")


if __name__ == "__main__":
    main()
