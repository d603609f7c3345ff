#!/usr/bin/env python3
"""Usage: compute_fbank.py [options] <data-dir> <ark>

One job of stage 1: 80-dim Kaldi fbank for every utterance of <data-dir>/wav.scp,
written Kaldi-compressed to <ark> with <ark>.scp, .utt2num_frames, .utt2dur and
.failed and .settings beside it (see purl.features.make_fbank_job). steps/make_fbank.sh runs
it in parallel over a split data dir and merges the outputs.

e.g.: python steps/compute_fbank.py data/train/split4/1 fbank/train/raw_fbank.1.ark
"""

import argparse
import sys

from tqdm import tqdm

from purl.data.datadir import DataDirError, read_kv
from purl.features import MIN_FRAMES, FeatureError, make_fbank_job


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("ark")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--num-mel-bins", type=int, default=80)
    parser.add_argument("--compress", choices=("true", "false"), default="true")
    parser.add_argument("--min-frames", type=int, default=MIN_FRAMES, help="shorter utterances are dropped")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    try:
        wav_scp = read_kv(f"{args.data_dir}/wav.scp")
    except DataDirError as e:
        print(f"compute_fbank.py: {e}", file=sys.stderr)
        return 1
    try:
        with tqdm(total=len(wav_scp), desc="fbank", unit="utt", mininterval=10, file=sys.stdout) as bar:
            result = make_fbank_job(
                wav_scp, args.ark,
                sample_rate=args.sample_rate,
                num_mel_bins=args.num_mel_bins,
                compress=args.compress == "true",
                min_frames=args.min_frames,
                on_utt=bar.update,
            )
    except FeatureError as e:
        print(f"compute_fbank.py: {e}", file=sys.stderr)
        return 1
    for utt, why in result.failed.items():
        print(f"compute_fbank.py: {utt}: {why}")
    print(f"compute_fbank.py: {result.done} utterances done, {len(result.failed)} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
