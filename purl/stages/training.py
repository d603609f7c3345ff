"""Stages 3 and 5: training (SupCon pretraining, the PURL update, the control run)
into an exp dir, laid out as purl.stages.exp_layout says.

A rerun resumes exactly from models/last.pt; a finished run (final.pt with the
same config) is skipped; a run on other data or with another config stops,
naming what differs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from purl.config import DEFAULTS, ConfigError, load_config, load_yaml
from purl.data.datadir import validate_data_dir
from purl.evaluate import held_out_metrics
from purl.features import FeatureError, check_model_features, feature_type_of
from purl.locks import LOCK_NAME, locked_dir
from purl.pair_weights import pair_weights_from_dir, utterance_mask_from_file
from purl.records import differences, read_record, scp_digest, stat_digest, text_digest, write_record
from purl.stages.exp_layout import TrainingOutputs
from purl.stages.fbank import check_features
from purl.stages.reliability import check_reliability_dir
from purl.training.callbacks import TrainingCallback, TrainingState
from purl.training.checkpoint import checkpoint_feature_type, load_checkpoint
from purl.training.errors import TrainError
from purl.training.loop import Trainer
from purl.training.refit import PurlPairWeights

log = logging.getLogger(__name__)

# Keys that set how a run uses the machine (and its disk), not what it computes:
# a resumed run may change them (e.g. fewer CPU threads on a busy machine, or
# more epoch checkpoints kept for steps/score_epochs.sh).
RESOURCE_KEYS = {("train", "threads"), ("data", "num_workers"), ("train", "keep_last"), ("train", "keep_epochs")}


class HeldOutValidation(TrainingCallback):
    """Held-out target/non-target cosine and EER at each epoch end, on process 0,
    from a data dir with features and trials."""

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = data_dir

    def on_epoch_end(self, state: TrainingState) -> dict | None:
        if not state.dist.main:
            return None
        metrics = held_out_metrics(state.encoder, self.data_dir, device=next(state.encoder.parameters()).device)
        state.encoder.train()
        return metrics


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


def training_data_settings(config: dict, data_dir: str) -> dict:
    """What a run's weights depend on beside its config: the data dir's labels
    and features, and the files the config names (by content, not by path)."""
    check_features(data_dir, "train")
    data = validate_data_dir(data_dir, require=("utt2spk", "spk2utt", "feats.scp", "utt2num_frames"))
    record = {"utt2spk": text_digest(data.path / "utt2spk"), "feats": scp_digest(data.path / "feats.scp")}
    if config["purl"]["init_checkpoint"]:
        record["init_checkpoint"] = text_digest(config["purl"]["init_checkpoint"])
    if config["purl"]["reliability"]:
        check_reliability_dir(config["purl"]["reliability"], "train (purl.reliability)")
        rel = Path(config["purl"]["reliability"])
        # Not stage 4's lock file, which each run of stage 4 (a skip too) rewrites.
        record["reliability"] = stat_digest(sorted(p for p in rel.glob("*") if p.is_file() and p.name != LOCK_NAME))
    if config["purl"]["unreliable_utts"]:
        if config["purl"]["reliability"] or config["purl"]["reestimate_every"]:
            raise ConfigError("purl.unreliable_utts gives the pair weights instead of purl.reliability: set one, "
                              "and no purl.reestimate_every (there is no fit to re-estimate)")
        if not Path(config["purl"]["unreliable_utts"]).is_file():
            raise ConfigError(f"purl.unreliable_utts={config['purl']['unreliable_utts']}: no such file "
                              "(steps/relabel_data_dir.py --keep-dropped writes one)")
        record["unreliable_utts"] = text_digest(config["purl"]["unreliable_utts"])
    return record


def check_training_data(exp_dir: Path, record: dict, data_dir: str) -> None:
    """Stops when exp_dir holds a run (finished or not) on other data."""
    old = read_record(TrainingOutputs(exp_dir).data_settings)
    diff = differences(old, record) if old is not None else []
    if diff:
        raise ConfigError(
            f"{exp_dir} was trained on other data than {data_dir} ({'; '.join(diff)}); "
            f"use a new exp dir, or delete {exp_dir} to start over")


def record_training_data(exp_dir: Path, record: dict) -> None:
    """Written once training can start (a run refused for bad input binds the
    exp dir to nothing); a run from before records gets its record here."""
    path = TrainingOutputs(exp_dir).data_settings
    if int(os.environ.get("RANK", "0")) == 0 and read_record(path) is None:
        exp_dir.mkdir(parents=True, exist_ok=True)
        write_record(path, record)


def config_differences(saved: Path, config: dict) -> list[str]:
    """The keys (but the resource keys) whose values differ from the config saved in ``saved``.
    A key the saved config lacks (it came later) counts as its default."""
    with open(saved, encoding="utf-8") as f:
        previous = load_yaml(f, str(saved))
    was = {(s, k): previous.get(s, {}).get(k, DEFAULTS.get(s, {}).get(k)) for s, keys in config.items() for k in keys}
    return [f"{s}.{k}: {was[s, k]!r} -> {v!r}" for s, keys in config.items()
            for k, v in keys.items() if was[s, k] != v and (s, k) not in RESOURCE_KEYS]


def train_stage(config_path: str, overrides: list[str], data_dir: str, exp_dir: str | os.PathLike, *,
                valid_data: str | None = None, gpus: str = "") -> None:
    """Trains the model of ``config_path`` (with ``overrides``) on ``data_dir`` into ``exp_dir``;
    with purl.init_checkpoint the model section comes from that checkpoint.
    One run per exp dir: process 0 holds its lock (the others of a torchrun
    launch are that run's)."""
    with locked_dir(exp_dir) if int(os.environ.get("RANK", "0")) == 0 else contextlib.nullcontext():
        _train_stage(config_path, overrides, data_dir, exp_dir, valid_data=valid_data, gpus=gpus)


def _train_stage(config_path: str, overrides: list[str], data_dir: str, exp_dir: str | os.PathLike, *,
                 valid_data: str | None, gpus: str) -> None:
    check_gpus(gpus)
    config = load_config(config_path, overrides)
    init = config["purl"]["init_checkpoint"]
    if init:
        # A post-hoc update continues the pretrained model: same architecture, same features.
        pretrained = load_checkpoint(init)
        config["model"] = pretrained["config"]["model"]
        check_model_features(checkpoint_feature_type(pretrained), init, data_dir)
    if valid_data:
        # Checked now, not at the end of the first (unsaved) epoch: every
        # utterance its trials name must have features.
        check_features(valid_data, "train (--valid-data)")
        validate_data_dir(valid_data, require=("utt2spk", "feats.scp", "utt2num_frames", "trials"))
        valid_features, train_features = feature_type_of(valid_data), feature_type_of(data_dir)
        if valid_features != train_features:
            raise FeatureError(f"--valid-data {valid_data}: {valid_features} features, but the training data "
                               f"{data_dir} has {train_features} features, and the held-out metrics would read "
                               f"features the model never saw; give a valid dir of {train_features} features")
    outputs = TrainingOutputs(exp_dir)
    data_record = training_data_settings(config, data_dir)
    check_training_data(outputs.exp_dir, data_record, data_dir)
    if outputs.config_yaml.is_file():
        diff = config_differences(outputs.config_yaml, config)
        if diff:
            raise ConfigError(f"{outputs.config_yaml} was made with another config ({'; '.join(diff)}); "
                              f"use a new exp dir, or delete {outputs.exp_dir} to start over")
        if outputs.final_checkpoint.is_file():
            log.info(f"{outputs.final_checkpoint} is complete; skipping (delete it to retrain)")
            return
    callbacks: list[TrainingCallback] = []
    if config["purl"]["reliability"]:
        callbacks.append(PurlPairWeights(
            pair_weights_from_dir(config["purl"]["reliability"], data_dir),
            reestimate_every=config["purl"]["reestimate_every"], refit_dir=outputs.reestimated_weights_dir))
    elif config["purl"]["unreliable_utts"]:
        callbacks.append(PurlPairWeights(utterance_mask_from_file(config["purl"]["unreliable_utts"], data_dir)))
    if valid_data:
        callbacks.append(HeldOutValidation(valid_data))
    trainer = Trainer(config, data_dir, outputs, callbacks=callbacks)
    record_training_data(outputs.exp_dir, data_record)
    try:
        trainer.train()
    finally:
        trainer.close()
