#!/usr/bin/env python3
"""Usage: prepare_voxceleb.py [--vox2-dev-root DIR] <vox1-root> <trials-dir> <data-root>

Stage 0 of egs/voxceleb: <data-root>/vox1 from the VoxCeleb1 wav tree (dev and
test extracted into one wav/ folder, id10001/<video>/00001.wav ...), with
trials_vox1_O, trials_vox1_E and trials_vox1_H made from the official cleaned
lists in <trials-dir> (veri_test2.txt, list_test_all2.txt, list_test_hard2.txt);
and <data-root>/vox2_dev from the VoxCeleb2 dev tree (dev/aac/id00012/<video>/
00001.m4a, decoded in-process by PyAV in stage 1; or the same tree converted to wav).

e.g.: local/prepare_voxceleb.py --vox2-dev-root /data/voxceleb2/dev/aac \\
        /data/voxceleb1/wav /data/voxceleb1/meta data
"""

import argparse
import sys

from purl.data.datadir import DataDirError
from purl.data.prepare import prepare_voxceleb


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vox1_root")
    parser.add_argument("trials_dir")
    parser.add_argument("data_root")
    parser.add_argument("--vox2-dev-root")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    try:
        summary = prepare_voxceleb(args.vox1_root, args.vox2_dev_root, args.trials_dir, args.data_root)
    except DataDirError as e:
        print(f"prepare_voxceleb.py: {e}", file=sys.stderr)
        return 1
    for name, n in summary.items():
        print(f"prepare_voxceleb.py: wrote {args.data_root}/{name} ({n} utterances)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
