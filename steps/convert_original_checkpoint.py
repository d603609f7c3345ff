#!/usr/bin/env python3
"""Usage: convert_original_checkpoint.py [--set SECTION.KEY=VALUE ...] <config.yaml> <original.ckpt> <exp-dir | out.pt>

Converts a checkpoint of the original PURL code (github.com/jimmy1016-coder/PURL:
a Lightning .ckpt, e.g. its epoch-199 SupCon checkpoint, or the bare model.pt
its test run saves) into this project's checkpoint for the model of
<config.yaml>: SpeechBrain ECAPA_TDNN weights for ecapa_tdnn, clova ResNetSE
weights for resnet34 (layout: original), and the learnt temperature. Unknown or
missing weights, or sizes that differ from the config's, are errors that name
them. The checkpoints record the original's front end (feature_type:
speechbrain): stages 4-6 embed the recipes' stage-1 --feature-type speechbrain
dirs with them (egs/voxceleb's paper protocol) and refuse Kaldi fbank dirs.

Given an exp dir, it writes what a pretraining there would have left:
<exp-dir>/models/epoch_<N>.pt (N = the Lightning epoch + 1: epoch=199 gives
epoch_200.pt) and models/final.pt (the same weights). A Lightning checkpoint's
optimizer_states and lr_schedulers (the Adam moments and the schedule's step)
go into epoch_<N>.pt, so that the paper protocol's stage 5 (purl.init_mode:
continue) carries on the original's run as the original's PURL phase does;
without them the script says so, and stage 5 needs purl.init_mode=weights.
Given a path ending in .pt, it writes that one file.

e.g.: steps/convert_original_checkpoint.py conf/paper/ecapa_supcon.yaml \\
        /data/purl/supcon/checkpoints/epoch=199_step=333400.ckpt exp/ecapa_supcon_paper_sbfbank_noisy0_seed0
"""

import argparse
import sys
from pathlib import Path

from purl.config import load_config
from purl.convert_original import ConversionError, convert_original_checkpoint
from purl.entry import run_main
from purl.training.checkpoint import save_atomic


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config",
                        help="the config of the architecture the original trained, e.g. conf/paper/ecapa_supcon.yaml")
    parser.add_argument("original", help="the original's Lightning .ckpt (or its model.pt)")
    parser.add_argument("out", help="the exp dir to write models/epoch_<N>.pt and models/final.pt into, "
                                    "or one checkpoint file to write (ending in .pt)")
    parser.add_argument("--epoch", type=int,
                        help="N of models/epoch_<N>.pt: the epochs the original had trained (default: the Lightning "
                             "checkpoint's epoch + 1; needed for a bare model.pt)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config key (repeatable), e.g. --set model.args.embed_dim=256")
    return parser


def main() -> None:
    args = get_parser().parse_args()
    name = Path(sys.argv[0]).name
    config = load_config(args.config, args.set)
    ckpt = convert_original_checkpoint(args.original, config)
    source = ckpt["converted_from"]
    out = Path(args.out)
    if out.suffix == ".pt":
        paths = [out]
    else:
        epoch = args.epoch if args.epoch is not None else source.get("epoch", -2) + 1
        if epoch < 1:
            raise ConversionError(f"{args.original}: records no epoch; give --epoch N (the epochs it had trained: "
                                  "200 for the original's epoch=199 checkpoint)")
        if "sampler" in ckpt and ckpt["sampler"]["epoch"] != epoch:
            raise ConversionError(f"--epoch {epoch}: {args.original} ends epoch {ckpt['sampler']['epoch']}")
        weights = {k: v for k, v in ckpt.items() if k in ("model", "loss", "config", "converted_from", "feature_type")}
        paths = [out / "models" / f"epoch_{epoch}.pt", out / "models" / "final.pt"]
    for n, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(ckpt if n == 0 else weights, path)
    epoch = f" (epoch {source['epoch']})" if "epoch" in source else ""
    temperature = "" if "loss" in ckpt else "; no temperature in it, the config's initial one applies"
    print(f"{name}: wrote {' and '.join(map(str, paths))} from {args.original}{epoch}: {config['model']['name']} "
          f"with {len(ckpt['model'])} tensors{temperature}")
    if "optimizer" in ckpt:
        print(f"{name}: {paths[0]} holds the original's Adam moments and schedule step {ckpt['global_step']}: "
              "stage 5 with purl.init_mode=continue carries on its run")
    else:
        print(f"{name}: {paths[0]} holds weights only ({source['no_training_state']}): stage 5 cannot continue the "
              "original's Adam state; run it with purl.init_mode=weights (egs/voxceleb: --train-overrides "
              "\"purl.init_mode=weights optim.epochs=30\": a fresh Adam and warm-up, as --protocol tuned)")


if __name__ == "__main__":
    run_main(main)
