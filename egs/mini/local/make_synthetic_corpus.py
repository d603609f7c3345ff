#!/usr/bin/env python3
"""Usage: make_synthetic_corpus.py [options] <out-dir>

Writes a synthetic speaker corpus as <out-dir>/spkNNNN/uNNNN.wav (16-bit PCM,
mono) and <out-dir>/.done. Source-filter voices with per-speaker vocal-tract
length, formants, pitch, voice quality and speaking rate, each utterance heard
through a random channel (EQ, reverberation, noise, level). The same options
give the same files; rerunning with them does nothing; other options on an
existing <out-dir> are an error.

e.g. (the mini recipe's corpus):
  python local/make_synthetic_corpus.py --num-speakers 200 --utts-per-speaker 12 \\
      --min-dur 2 --max-dur 4 --seed 0 --nj 2 corpus/synthetic
"""

import argparse
import logging
import sys

from purl.entry import run_main
from synthetic.channel import SynthConfig
from synthetic.corpus import generate_corpus


def _bool(value: str) -> bool:
    if value not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got '{value}'")
    return value == "true"


def _range(value: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX (e.g. 5,30), got '{value}'") from None
    return lo, hi


def get_parser() -> argparse.ArgumentParser:
    default = SynthConfig()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", help="output directory (created)")
    parser.add_argument("--num-speakers", type=int, default=200)
    parser.add_argument("--utts-per-speaker", type=int, default=12)
    parser.add_argument("--min-dur", type=float, default=2.0, help="shortest utterance, seconds")
    parser.add_argument("--max-dur", type=float, default=4.0, help="longest utterance, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--nj", type=int, default=2, help="parallel processes (does not change the output)")
    group = parser.add_argument_group("difficulty")
    group.add_argument("--within-speaker-var", type=float, default=default.within_speaker_var,
                       help="scale of each speaker's per-utterance variation (pitch, vocal tract, rate, "
                            "voice quality): 0 = identical every time")
    group.add_argument("--channel", type=_bool, default=default.channel,
                       help="true|false: random EQ, reverberation, noise and level per utterance")
    group.add_argument("--snr-range", type=_range, default=default.snr_range, metavar="MIN,MAX",
                       help="additive noise SNR in dB, uniform")
    group.add_argument("--reverb-prob", type=float, default=default.reverb_prob,
                       help="share of utterances with reverberation")
    group.add_argument("--rt60-range", type=_range, default=default.rt60_range, metavar="MIN,MAX",
                       help="reverberation time in seconds, uniform")
    group.add_argument("--wet-range", type=_range, default=default.wet_range, metavar="MIN,MAX",
                       help="reverberant share of the energy, uniform in [0, 1)")
    group.add_argument("--eq-strength", type=float, default=default.eq_strength,
                       help="scale of the random microphone EQ (1: tilt up to +-1.5 dB/octave, peak +-6 dB)")
    group.add_argument("--level-range", type=_range, default=default.level_range, metavar="MIN,MAX",
                       help="RMS level in dBFS, uniform")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    logging.info("%s", " ".join(sys.argv))
    config = SynthConfig(
        within_speaker_var=args.within_speaker_var,
        channel=args.channel,
        snr_range=args.snr_range,
        reverb_prob=args.reverb_prob,
        rt60_range=args.rt60_range,
        wet_range=args.wet_range,
        eq_strength=args.eq_strength,
        level_range=args.level_range,
    )
    summary = generate_corpus(
        args.out_dir,
        num_speakers=args.num_speakers,
        utts_per_speaker=args.utts_per_speaker,
        seed=args.seed,
        min_dur=args.min_dur,
        max_dur=args.max_dur,
        sample_rate=args.sample_rate,
        config=config,
        nj=args.nj,
    )
    if summary.skipped:
        logging.info("%s already holds this corpus; nothing to do", summary.out_dir)
    return 0


if __name__ == "__main__":
    run_main(main)
