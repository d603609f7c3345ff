#!/usr/bin/env python3
"""Usage: lock_dir.py <fd> <dir> <pid> <command>

Takes the lock of <dir> on descriptor <fd>, which the calling script opened on
<dir>/.purl.lock and keeps open: the lock is the script's until it exits (also
when killed). Exits 1, naming the holder, when another process has it.

e.g.: exec 9<>"$data/.purl.lock"; steps/lock_dir.py 9 "$data" $$ "$0 $*" || exit 1
"""

import argparse

from purl.entry import run_main
from purl.locks import lock_fd


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fd", type=int)
    parser.add_argument("dir")
    parser.add_argument("pid", type=int)
    parser.add_argument("command")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    lock_fd(args.fd, args.dir, args.pid, args.command)
    return 0


if __name__ == "__main__":
    run_main(main)
