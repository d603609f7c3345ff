#!/usr/bin/env python3
"""Usage: preflight.py [options]

Checks in seconds what would otherwise fail hours into a recipe, and lists
every problem found (exit 1) or nothing (exit 0):
  --config/--overrides   each config loads with the overrides (no unknown keys),
                         its batch splits over the training processes
  --gpus/--cpu-procs     gpus is a list of GPU numbers that torch can see
  --trials, --require-dir  trial lists and corpus folders exist
  --data-dir             wav.scp pipes name installed programs (ffmpeg for m4a),
                         the batch fits its speakers
  --fbank-dir            its disk has room for the features of the data dirs
                         that have none yet

e.g.: python steps/preflight.py --gpus 0,1,2 --config conf/paper/ecapa_supcon.yaml \\
        --trials /data/voxceleb1/meta/veri_test2.txt --data-dir data/vox2_dev --fbank-dir fbank
"""

import argparse
import sys
from pathlib import Path

from purl.entry import run_main
from purl.preflight import check_audio_tools, check_batch, check_devices, check_disk, check_files, parse_gpus


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", default="", help="the recipe's gpus ('' : the CPU)")
    parser.add_argument("--cpu-procs", type=int, default=1, help="training processes on the CPU")
    parser.add_argument("--config", action="append", default=[], help="a training config (repeatable)")
    parser.add_argument("--overrides", default="", help="space-separated section.key=value, as steps/train.sh takes")
    parser.add_argument("--trials", action="append", default=[], help="a trial list that must exist (repeatable)")
    parser.add_argument("--require-dir", action="append", default=[], help="a folder that must exist (repeatable)")
    parser.add_argument("--data-dir", action="append", default=[], help="a data dir to check (repeatable)")
    parser.add_argument("--fbank-dir", help="where stage 1 writes features: check the free space")
    parser.add_argument("--mean-duration", type=float, default=8.0,
                        help="seconds per utterance when a data dir has no utt2dur (VoxCeleb2: about 7.8)")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    name = Path(sys.argv[0]).name
    problems = check_devices(args.gpus)
    try:
        processes = len(parse_gpus(args.gpus)) or args.cpu_procs
    except ValueError:
        processes = 1  # already reported
    problems += check_batch(args.config, args.overrides.split(), processes, args.data_dir)
    problems += check_files(args.trials, args.require_dir)
    problems += check_audio_tools(args.data_dir)
    if args.fbank_dir:
        problems += check_disk(args.data_dir, args.fbank_dir, args.mean_duration)
    for problem in problems:
        print(f"{name}: {problem}", file=sys.stderr)
    if problems:
        print(f"{name}: {len(problems)} problem(s); nothing was started", file=sys.stderr)
        return 1
    print(f"{name}: ok ({processes} training process(es))")
    return 0


if __name__ == "__main__":
    run_main(main)
