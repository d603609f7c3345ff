#!/usr/bin/env python3
"""Usage: speed_audio.py --speed F [--rate HZ] <audio-file|-> > out.wav

Writes <audio-file> (or the audio on standard input, '-') played F times as
fast, tempo and pitch both (sox's 'speed'), as 16-bit mono wav at --rate to
standard output. steps/perturb_speed.py writes wav.scp commands of this script;
purl reads them in-process (purl.audio.read_speed_entry, the same code) without
running it, so it is here for other tools and for listening.

e.g.: speed_audio.py --speed 0.9 corpus/spk1/a.m4a > a_sp0.9.wav
"""

import argparse
import io
import sys

import numpy as np
import soundfile as sf

from purl.audio import AV_SAMPLE_RATE, read_speed_entry
from purl.entry import run_main


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio", help="an audio file, or - for standard input")
    parser.add_argument("--speed", type=float, required=True, help="speed factor, e.g. 0.9")
    parser.add_argument("--rate", type=int, default=AV_SAMPLE_RATE, help="output sample rate")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    source = io.BytesIO(sys.stdin.buffer.read()) if args.audio == "-" else args.audio
    samples, rate = read_speed_entry(source, args.speed, args.rate)
    wav = io.BytesIO()  # a wav header needs the length: written whole, not streamed
    sf.write(wav, samples.astype(np.int16), rate, format="WAV", subtype="PCM_16")
    sys.stdout.buffer.write(wav.getvalue())
    return 0


if __name__ == "__main__":
    run_main(main)
