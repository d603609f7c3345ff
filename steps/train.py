#!/usr/bin/env python3
"""Usage: train.py [options] <config.yaml> <train-data-dir> <exp-dir>

Stages 3 and 5: trains the model of <config.yaml> (SupCon pretraining; with
loss.type soft|hard|ascent and purl.* set, the PURL update; with loss.type
supcon and purl.init_checkpoint, the control run) on <train-data-dir> into
<exp-dir>. With purl.init_checkpoint the model section comes from that
checkpoint: the update continues the pretrained architecture. Run it with
torchrun for several processes (steps/train.sh does).
A rerun resumes exactly from <exp-dir>/models/last.pt; a finished run (final.pt
with the same config) is skipped. Both only on the same data: <exp-dir>/data.settings
records what the run trains on (utt2spk, the features, the initial checkpoint,
the pair weights), and a rerun on anything else stops naming what differs.

e.g.: python steps/train.py --set optim.epochs=10 --valid-data data/test \\
        conf/paper/ecapa_supcon.yaml data/train exp/ecapa_supcon
"""

import argparse

from purl.allocator import keep_freed_memory
from purl.entry import run_main
from purl.stages.training import train_stage


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("data_dir")
    parser.add_argument("exp_dir")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config key (repeatable), e.g. --set optim.lr=0.001")
    parser.add_argument("--valid-data",
                        help="a data dir with features and a 'trials' file: held-out metrics each epoch")
    parser.add_argument("--gpus", default="", help="the GPUs steps/train.sh was given: stop unless torch sees them")
    return parser


def main() -> None:
    args = get_parser().parse_args()
    keep_freed_memory()
    train_stage(args.config, args.set, args.data_dir, args.exp_dir, valid_data=args.valid_data, gpus=args.gpus)


if __name__ == "__main__":
    run_main(main)
