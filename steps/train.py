#!/usr/bin/env python3
"""Usage: train.py [options] <config.yaml> <train-data-dir> <exp-dir>

Stages 3 and 5: trains the model of <config.yaml> (SupCon pretraining; with
loss.type soft|hard|ascent and purl.* set, the PURL update; with loss.type
supcon and purl.init_checkpoint, the control run) on <train-data-dir> into
<exp-dir>. With purl.init_checkpoint the model section comes from that
checkpoint: the update continues the pretrained architecture. Run it with torchrun for several processes (steps/train.sh does).
A rerun resumes exactly from <exp-dir>/models/last.pt; a finished run (final.pt
with the same config) is skipped. Both only on the same data: <exp-dir>/data.settings
records what the run trains on (utt2spk, the features, the initial checkpoint,
the pair weights), and a rerun on anything else stops naming what differs.

e.g.: python steps/train.py --set optim.epochs=10 --valid-data data/test \\
        conf/ecapa_supcon.yaml data/train exp/ecapa_supcon
"""

import argparse
import os
import sys
from pathlib import Path

import yaml

from purl.allocator import keep_freed_memory
from purl.config import ConfigError, load_config
from purl.data.datadir import DataDirError, validate_data_dir
from purl.evaluate import held_out_figures
from purl.pair_weights import pair_weights_from_dir
from purl.settings import differences, read_record, scp_digest, stat_digest, text_digest, write_record
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
    parser.add_argument("--gpus", default="", help="the GPUs steps/train.sh was given: stop unless torch sees them")
    return parser


def check_gpus(gpus: str) -> None:
    """A run asked for GPUs must not fall back to the CPU without a word."""
    wanted = [g for g in gpus.split(",") if g.strip()]
    if not wanted:
        return
    import torch
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found < len(wanted):
        raise TrainError(
            f"--gpus {gpus}: torch sees {found} CUDA device(s) (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda or 'none'}, CUDA_VISIBLE_DEVICES='{os.environ.get('CUDA_VISIBLE_DEVICES', '')}'); "
            "check nvidia-smi and that torch is a CUDA build, or train on the CPU with --gpus \"\"")


DATA_SETTINGS = "data.settings"  # in the exp dir: what the run trains on


def training_data_settings(config: dict, data_dir: str) -> dict:
    """What a run's weights depend on beside its config: the data dir's labels
    and features, and the files the config names (by content, not by path)."""
    data = validate_data_dir(data_dir, require=("utt2spk", "spk2utt", "feats.scp", "utt2num_frames"))
    record = {"utt2spk": text_digest(data.path / "utt2spk"), "feats": scp_digest(data.path / "feats.scp")}
    if config["purl"]["init_checkpoint"]:
        record["init_checkpoint"] = text_digest(config["purl"]["init_checkpoint"])
    if config["purl"]["reliability"]:
        rel = Path(config["purl"]["reliability"])
        record["reliability"] = stat_digest(sorted(p for p in rel.glob("*") if p.is_file()))
    return record


def check_training_data(exp_dir: Path, record: dict, data_dir: str) -> None:
    """Stops when exp_dir holds a run (finished or not) on other data."""
    old = read_record(exp_dir / DATA_SETTINGS)
    diff = differences(old, record) if old is not None else []
    if diff:
        raise ConfigError(
            f"{exp_dir} was trained on other data than {data_dir} ({'; '.join(diff)}); "
            f"use a new exp dir, or delete {exp_dir} to start over")


def record_training_data(exp_dir: Path, record: dict) -> None:
    """Written once training can start (a run refused for bad input binds the
    exp dir to nothing); a run from before records gets its record here."""
    if int(os.environ.get("RANK", "0")) == 0 and read_record(exp_dir / DATA_SETTINGS) is None:
        exp_dir.mkdir(parents=True, exist_ok=True)
        write_record(exp_dir / DATA_SETTINGS, record)


def main() -> int:
    args = get_parser().parse_args()
    name = Path(sys.argv[0]).name
    keep_freed_memory()
    try:
        check_gpus(args.gpus)
        config = load_config(args.config, args.set)
        if config["purl"]["init_checkpoint"]:
            # A post-hoc update continues the pretrained model: same architecture.
            config["model"] = load_checkpoint(config["purl"]["init_checkpoint"])["config"]["model"]
        if args.valid_data:
            # Checked now, not at the end of the first (unsaved) epoch: every
            # utterance its trials name must have features.
            validate_data_dir(args.valid_data, require=("utt2spk", "feats.scp", "utt2num_frames", "trials"))
        exp_dir = Path(args.exp_dir)
        data_record = training_data_settings(config, args.data_dir)
        check_training_data(exp_dir, data_record, args.data_dir)
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
        record_training_data(exp_dir, data_record)
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
