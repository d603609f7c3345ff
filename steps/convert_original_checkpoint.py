#!/usr/bin/env python3
"""Usage: convert_original_checkpoint.py [--set SECTION.KEY=VALUE ...] <config.yaml> <original.ckpt> <out.pt>

Converts a checkpoint of the original PURL code (github.com/jimmy1016-coder/PURL:
a Lightning .ckpt, e.g. its epoch-199 SupCon checkpoint, or the bare model.pt
its test run saves) into this project's checkpoint for the model of
<config.yaml>: SpeechBrain ECAPA_TDNN weights for ecapa_tdnn, clova ResNetSE
weights for resnet34 (layout: original), and the learnt temperature. Stages 4-6
read the result as a pretrained final.pt; stage 5 starts from its weights and
temperature (the original's Adam state and schedule are not converted).
Unknown or missing weights, or sizes that differ from the config's, are errors
that name them.

e.g.: steps/convert_original_checkpoint.py conf/ecapa_supcon.yaml \\
        /data/purl/supcon/checkpoints/epoch=199_step=333400.ckpt \\
        exp/ecapa_supcon_noisy0_seed0/models/final.pt
"""

import argparse
import sys
from pathlib import Path

from purl.config import load_config
from purl.convert_original import convert_original_checkpoint
from purl.entry import run_main
from purl.training.checkpoint import save_atomic


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config",
                        help="the config of the architecture the original trained, e.g. conf/ecapa_supcon.yaml")
    parser.add_argument("original", help="the original's Lightning .ckpt (or its model.pt)")
    parser.add_argument("out", help="the checkpoint to write, e.g. exp/<name>/models/final.pt")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config key (repeatable), e.g. --set model.args.embed_dim=256")
    return parser


def main() -> None:
    args = get_parser().parse_args()
    name = Path(sys.argv[0]).name
    config = load_config(args.config, args.set)
    ckpt = convert_original_checkpoint(args.original, config)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(ckpt, out)
    source = ckpt["converted_from"]
    epoch = f" (epoch {source['epoch']})" if "epoch" in source else ""
    temperature = "" if "loss" in ckpt else "; no temperature in it, the config's initial one applies"
    print(f"{name}: wrote {out} from {args.original}{epoch}: {config['model']['name']} "
          f"with {len(ckpt['model'])} tensors{temperature}")


if __name__ == "__main__":
    run_main(main)
