#!/usr/bin/env python3
"""Usage: simulate_noise.py [options] <rate> <src-data-dir> <dst-data-dir>

Stage 2: copies <src-data-dir> to <dst-data-dir> with exactly round(rate * N)
utterances, drawn uniformly with --seed, filed under the wrong speaker
(utt2spk, spk2utt); the true speakers go to utt2truespk so that stage 4 can
measure how well it finds them. The features are shared, not copied. The kind
of noise (--noise-type; the first three move the same utterances):
  permute  to a uniformly drawn other speaker
  similar  to one of the --nearest-k speakers nearest to the true one, by the
           cosine of fbank statistics per speaker (or of a reference model's
           speaker means: --reference-embeddings); <dst>/nearest_speakers lists them
  open     replaced by utterances of speakers never trained on (--outsiders, a
           data dir that stage 0 held out), filed under the replaced utterance's
           speaker; <dst>/outsiders lists them
  merge    whole speakers, each filed under another speaker's label (two
           speakers under one name), until at least round(rate * N) utterances
  split    half of whole speakers' utterances filed under a new label
           <speaker>-split (one speaker under two names), until at least
           round(rate * N) utterances
noise.settings records the kind, rate, seed and the inputs: a rerun with the
same ones is skipped, with others redone.

e.g.: python steps/simulate_noise.py --seed 0 0.2 data/train data/train_noisy0.2
      python steps/simulate_noise.py --noise-type open --outsiders data/outsiders 0.2 data/train data/train_open0.2
"""

import argparse
import logging

from purl.entry import run_main
from purl.errors import UsageError
from purl.label_noise import NOISE_TYPES
from purl.stages.simulate_noise import run_noise


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rate", type=float)
    parser.add_argument("src_dir")
    parser.add_argument("dst_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-type", choices=NOISE_TYPES, default="permute", help="the kind of label noise")
    parser.add_argument("--nearest-k", type=int, default=5, help="similar: destinations per speaker")
    parser.add_argument("--outsiders", help="open: the outsider speakers' data dir")
    parser.add_argument("--reference-embeddings", help="similar: an xvector.scp whose speaker means say who is near")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    if not 0 < args.rate < 1:
        # Rate 0 would make a copy whose truth equals its labels: nothing for stage 4 to detect (AUC nan).
        raise UsageError(f"rate {args.rate} must be in (0, 1); with no noise, train on {args.src_dir} itself")
    if (args.outsiders is not None) != (args.noise_type == "open"):
        raise UsageError("--outsiders goes with --noise-type open, and open noise needs it")
    if args.reference_embeddings is not None and args.noise_type != "similar":
        raise UsageError("--reference-embeddings goes with --noise-type similar")
    summary = run_noise(args.src_dir, args.dst_dir, args.rate, args.seed, noise_type=args.noise_type,
                        nearest_k=args.nearest_k, outsiders=args.outsiders,
                        reference_embeddings=args.reference_embeddings)
    if summary is not None:
        logging.info("%s: %d of %d utterances under a wrong speaker (%s, rate %s, seed %d)", args.dst_dir,
                     summary["relabelled"], summary["utterances"], args.noise_type, args.rate, args.seed)
    return 0


if __name__ == "__main__":
    run_main(main)
