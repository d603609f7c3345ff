#!/usr/bin/env python3
"""Usage: train.py [options] <config.yaml> <train-data-dir> <exp-dir>

Stages 3 and 5: trains the model of <config.yaml> (SupCon pretraining; with
loss.type soft|hard|ascent and purl.* set, the PURL update; with loss.type
supcon and purl.init_checkpoint, the control run) on <train-data-dir> into
<exp-dir>. With purl.init_checkpoint the model section comes from that
checkpoint: the update continues the pretrained architecture. Run it with torchrun for several processes (steps/train.sh does).
A rerun resumes exactly from <exp-dir>/models/last.pt; a finished run (final.pt
with the same config) is skipped.

e.g.: python steps/train.py --set optim.epochs=10 --valid-data data/test \\
        conf/ecapa_supcon.yaml data/train exp/ecapa_supcon
"""

import argparse
import sys
from pathlib import Path

import yaml

from purl.allocator import keep_freed_memory
from purl.config import ConfigError, load_config
from purl.data.datadir import DataDirError
from purl.evaluate import held_out_figures
from purl.pair_weights import pair_weights_from_dir
from purl.trainer import Trainer, TrainError, load_checkpoint


# Keys that set how a run uses the machine, not what it computes: a resumed run
# may change them (e.g. fewer CPU threads on a busy machine).
RESOURCE_KEYS = {("train", "threads"), ("data", "num_workers")}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("data_dir")
    parser.add_argument("exp_dir")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config key (repeatable), e.g. --set optim.lr=0.001")
    parser.add_argument("--valid-data", help="a data dir with features and a 'trials' file: held-out figures each epoch")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    name = Path(sys.argv[0]).name
    keep_freed_memory()
    try:
        config = load_config(args.config, args.set)
        if config["purl"]["init_checkpoint"]:
            # A post-hoc update continues the pretrained model: same architecture.
            config["model"] = load_checkpoint(config["purl"]["init_checkpoint"])["config"]["model"]
        exp_dir = Path(args.exp_dir)
        saved = exp_dir / "config.yaml"
        if saved.is_file():
            with open(saved) as f:
                previous = yaml.safe_load(f)
            diff = [f"{s}.{k}: {previous.get(s, {}).get(k)!r} -> {v!r}" for s, keys in config.items()
                    for k, v in keys.items() if previous.get(s, {}).get(k) != v and (s, k) not in RESOURCE_KEYS]
            if diff:
                raise ConfigError(f"{saved} was made with another config ({'; '.join(diff)}); "
                                  f"use a new exp dir, or delete {exp_dir} to start over")
            if (exp_dir / "models" / "final.pt").is_file():
                print(f"{name}: {exp_dir}/models/final.pt is complete; skipping (delete it to retrain)")
                return 0
        pair_weights_fn = None
        if config["purl"]["reliability"]:
            pair_weights_fn = pair_weights_from_dir(
                config["purl"]["reliability"], args.data_dir,
                reestimate_every=config["purl"]["reestimate_every"], save_dir=exp_dir / "reliability")
        validate_fn = None
        if args.valid_data:
            validate_fn = lambda model: held_out_figures(model, args.valid_data, device=next(model.parameters()).device)
        trainer = Trainer(config, args.data_dir, exp_dir, pair_weights_fn=pair_weights_fn, validate_fn=validate_fn)
        try:
            trainer.train()
        finally:
            trainer.close()
    except (ConfigError, DataDirError, TrainError, ValueError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
