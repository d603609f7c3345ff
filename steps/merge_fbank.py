#!/usr/bin/env python3
"""Usage: merge_fbank.py [options] <data-dir> <fbank-dir> <nj>

Last step of stage 1 (called by steps/make_fbank.sh): merges the nj jobs' scp,
utt2num_frames and utt2dur into <data-dir>, then feats.settings (the options
and audio the features were made from) and feats.scp last. Fails, merging
nothing, when more than F of the utterances could not be read, or when a trial
list of the dir names one that could not.

e.g.: steps/merge_fbank.py data/train fbank/train 4
"""

import argparse
import sys

from purl.data.datadir import DataDirError
from purl.features import MIN_FRAMES, FeatureError, merge_fbank_jobs


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("fbank_dir")
    parser.add_argument("nj", type=int)
    parser.add_argument("--max-fail-frac", type=float, default=0.01)
    # The options the jobs ran with, for the record (steps/fbank_jobs.py compares it).
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--num-mel-bins", type=int, default=80)
    parser.add_argument("--compress", choices=("true", "false"), default="true")
    parser.add_argument("--min-frames", type=int, default=MIN_FRAMES)
    return parser


def main() -> int:
    args = get_parser().parse_args()
    try:
        settings = {"sample_rate": args.sample_rate, "num_mel_bins": args.num_mel_bins,
                    "compress": args.compress == "true", "min_frames": args.min_frames}
        failed = merge_fbank_jobs(args.data_dir, args.fbank_dir, args.nj, max_fail_frac=args.max_fail_frac,
                                  settings=settings)
    except (FeatureError, DataDirError, FileNotFoundError) as e:
        print(f"merge_fbank.py: {e}", file=sys.stderr)
        return 1
    if failed:
        print(f"merge_fbank.py: dropped {len(failed)} unreadable utterance(s) from {args.data_dir} "
              f"(listed in {args.data_dir}/log/fbank_failed)")
    print(f"merge_fbank.py: wrote {args.data_dir}/feats.scp")
    return 0


if __name__ == "__main__":
    sys.exit(main())
