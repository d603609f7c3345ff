#!/usr/bin/env python3
"""Usage: prepare_voxceleb.py [options] <vox1-root> <trials-dir> <data-root>

Stage 0 of egs/voxceleb: <data-root>/vox1 from the VoxCeleb1 wav tree, in
either layout: one wav/ folder with dev and test extracted into it
(id10001/<video>/00001.wav ...), or WeSpeaker's voxceleb1/ with dev/wav/ and
test/wav/ (test/wav/ alone for Vox1-O only). Its trial lists come from the
official cleaned lists in <trials-dir>: trials_vox1_O from veri_test2.txt
(required), trials_vox1_E and trials_vox1_H from list_test_all2.txt and
list_test_hard2.txt where those are there.

With --vox2-dev-root, <data-root>/vox2_dev from the VoxCeleb2 dev tree
(dev/aac/id00012/<video>/00001.m4a, decoded in-process by PyAV in stage 1; or
the same tree converted to wav). With --vox2-valid-pairs also <data-root>/vox2_valid with
the trials of that list, whose speakers leave vox2_dev (as the original work
does) unless --keep-valid-speakers.

e.g.: local/prepare_voxceleb.py --vox2-dev-root /data/voxceleb2/dev/aac \\
        --vox2-valid-pairs local/purl_original/vox2_valid_pairs.txt \\
        /data/voxceleb1/wav /data/voxceleb1/meta data
"""

import argparse
from pathlib import Path

from purl.data.prepare import VOXCELEB_TRIALS, prepare_voxceleb
from purl.entry import run_main
from purl.errors import UsageError


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vox1_root")
    parser.add_argument("trials_dir")
    parser.add_argument("data_root")
    parser.add_argument("--vox2-dev-root")
    parser.add_argument("--vox2-valid-pairs", help="validation pairs on VoxCeleb2 dev (the official list format)")
    parser.add_argument("--keep-valid-speakers", action="store_true",
                        help="keep the validation pairs' speakers in vox2_dev")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    if args.vox2_valid_pairs and not args.vox2_dev_root:
        raise UsageError("--vox2-valid-pairs needs --vox2-dev-root")
    summary = prepare_voxceleb(args.vox1_root, args.vox2_dev_root, args.trials_dir, args.data_root,
                               vox2_valid_pairs=args.vox2_valid_pairs or None,
                               keep_valid_speakers=args.keep_valid_speakers)
    for name, n in summary.items():
        print(f"prepare_voxceleb.py: wrote {args.data_root}/{name} ({n} utterances)")
    absent = [f"{VOXCELEB_TRIALS[name]} ({name})" for name in VOXCELEB_TRIALS
              if not (Path(args.trials_dir) / VOXCELEB_TRIALS[name]).is_file()]
    if absent:
        print(f"prepare_voxceleb.py: not in {args.trials_dir}, so not prepared: {', '.join(absent)}")
    return 0


if __name__ == "__main__":
    run_main(main)
