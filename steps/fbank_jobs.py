#!/usr/bin/env python3
"""Usage: fbank_jobs.py [options] <data-dir> <fbank-root> <nj>

First step of stage 1 (called by steps/make_fbank.sh): validates <data-dir>,
decides from the settings records (purl.settings) what is left to do and prints
it on stdout, one 'key value' per line:

    fbank_dir <where this dir's arks go: <fbank-root>/<name>_<hash of its path>>
    nj <jobs, at most the number of utterances>
    status complete|todo     (complete: feats.scp is stage 1's output for these
                              options and this audio; nothing to do)
    todo <job numbers whose record differs from what they would write now>

A feats.scp without a record (made by another tool, e.g. Kaldi) is kept as it
is, with a note: its dimension is checked when a model reads it.

e.g.: steps/fbank_jobs.py --num-mel-bins 80 data/train fbank 4
"""

import argparse
import sys

from purl.data.datadir import DataDirError, read_kv, split_data_dir, validate_data_dir
from purl.features import MIN_FRAMES, fbank_dir_for, fbank_job_settings, feats_status
from purl.settings import matches

OWNER_FILE = "data_dir"  # in each ark dir: the data dir whose features it holds


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("fbank_root")
    parser.add_argument("nj", type=int)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--num-mel-bins", type=int, default=80)
    parser.add_argument("--compress", choices=("true", "false"), default="true")
    parser.add_argument("--min-frames", type=int, default=MIN_FRAMES)
    return parser


def options(args) -> dict:
    return {"sample_rate": args.sample_rate, "num_mel_bins": args.num_mel_bins,
            "compress": args.compress == "true", "min_frames": args.min_frames}


def check_options(args) -> None:
    for flag, value, low in (("--sample-rate", args.sample_rate, 1000), ("--num-mel-bins", args.num_mel_bins, 1),
                             ("--min-frames", args.min_frames, 1), ("--nj", args.nj, 1)):
        if value < low:
            raise ValueError(f"{flag} {value}: must be at least {low}")


def plan(args) -> dict:
    check_options(args)
    # Also refuses an empty dir and one with segments, before anything is written.
    data = validate_data_dir(args.data_dir, require=("wav.scp", "utt2spk"))
    wav_scp = read_kv(data.path / "wav.scp")
    fbank_dir = fbank_dir_for(data.path, args.fbank_root)
    nj = min(args.nj, len(wav_scp))
    out = {"fbank_dir": str(fbank_dir.resolve()), "nj": nj}
    settings = fbank_job_settings(wav_scp, **options(args))
    status, diff = feats_status(data.path, settings)
    if status == "complete":
        return {**out, "status": "complete"}
    if status == "foreign":
        print(f"fbank_jobs.py: {data.path}/feats.scp was not made by this stage (no {data.path}/feats.settings); "
              "using it as it is (delete it to compute fbank here)", file=sys.stderr)
        return {**out, "status": "complete"}
    if status == "changed":
        print(f"fbank_jobs.py: {data.path}/feats.scp was made from other settings or audio "
              f"({'; '.join(diff)}); computing it again", file=sys.stderr)
    fbank_dir.mkdir(parents=True, exist_ok=True)
    owner = fbank_dir / OWNER_FILE
    if owner.is_file() and owner.read_text().strip() != str(data.path.resolve()):
        raise DataDirError(f"{fbank_dir} holds the features of {owner.read_text().strip()}, not of "
                           f"{data.path.resolve()}; give another <fbank-dir>")
    owner.write_text(f"{data.path.resolve()}\n")
    parts = split_data_dir(data.path, nj)
    todo = []
    for n, part in enumerate(parts, 1):
        try:
            job = fbank_job_settings(read_kv(part / "wav.scp"), **options(args))
        except DataDirError:
            todo.append(n)  # the job will fail reading it, and its log will say why
            continue
        if not matches(fbank_dir / f"raw_fbank.{n}.settings", job):
            todo.append(n)
    return {**out, "status": "todo", "todo": " ".join(map(str, todo))}


def main() -> int:
    args = get_parser().parse_args()
    try:
        result = plan(args)
    except (DataDirError, ValueError, OSError) as e:
        print(f"fbank_jobs.py: {e}", file=sys.stderr)
        return 1
    for key, value in result.items():
        print(key, value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
