"""Checkpoint files: what they hold, and how they are written, read, averaged
and pruned; the one module that does. Scripts that only use a trained model
(extraction, export, the API) import this, not the loop.

An epoch checkpoint (``save_training_state``) holds everything a run needs to
go on exactly: the encoder's and the loss's weights, the optimiser and
scheduler states, the RNG states, where in the epochs it stopped, the epoch's
step losses so far, and the config. final.pt (``save_average``) holds the
averaged weights and the config. A run starts from one of three points:
resumed from its own last.pt (``restore_training_state``), initialised from a
pretrained model's weights (``init_from_weights``), or continuing a
pretraining's whole state (``continue_from``, the original work's PURL phase).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from purl.fileio import atomic_path
from purl.models import build_model
from purl.training.errors import TrainError

# The optim keys that shape the schedule a continued run carries on.
CONTINUED_OPTIM_KEYS = ("lr", "weight_decay", "warmup_frac", "final_lr_frac")


@dataclass
class Progress:
    """Where a run is: ``epoch`` epochs done, ``step_in_epoch`` steps into the
    next, ``global_step`` optimiser steps in all, and the losses of the steps
    of the epoch under way (a resumed epoch's mean covers them all)."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    epoch_losses: list[float] = field(default_factory=list)


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file or one from another tool
        raise TrainError(f"{path}: cannot be read as a checkpoint ({e}); delete it to redo its stage") from e
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        what = "a bare state_dict" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
        raise TrainError(f"{path}: {what}, not a checkpoint of steps/train.py (which holds 'model' and 'config'); "
                         "give models/final.pt of a training run")
    return ckpt


def save_atomic(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def model_from_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """The encoder stored in a checkpoint, built from the config saved with it."""
    return model_of(load_checkpoint(path), path)


def model_of(ckpt: dict, path: str | os.PathLike = "checkpoint") -> tuple[nn.Module, dict]:
    """The encoder of a loaded checkpoint dict, and its config (``path`` for messages)."""
    config = ckpt["config"]
    model = build_model(config["model"]["name"], **config["model"]["args"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise TrainError(f"{path}: its weights do not fit {config['model']['name']} "
                         f"with {config['model']['args']} ({e})") from e
    return model, config


def average_checkpoints(paths: list[Path]) -> dict:
    """The element-wise mean of the models' weights (integer buffers from the last)."""
    states = [load_checkpoint(p)["model"] for p in paths]
    averaged = {}
    for key, value in states[-1].items():
        if value.is_floating_point():
            averaged[key] = sum(s[key] for s in states) / len(states)
        else:
            averaged[key] = value
    return averaged


def feature_record(feature_type: str) -> dict:
    """What a checkpoint says of the features its model was trained on: nothing
    for Kaldi fbank (every checkpoint before feature types), else the type, so
    that a model of other features is not fed Kaldi fbank by purl.load_model."""
    return {} if feature_type == "kaldi" else {"feature_type": feature_type}


def checkpoint_feature_type(ckpt: dict) -> str:
    """The features a loaded checkpoint's model was trained on (feature_record): kaldi where none is recorded."""
    return ckpt.get("feature_type", "kaldi")


def save_training_state(path: Path, *, encoder: nn.Module, loss: nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler, progress: Progress, config: dict, device: torch.device,
                        feature_type: str = "kaldi") -> None:
    """Writes the run's whole state to ``path`` (atomically): what resumes it exactly."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state(device)
    save_atomic({
        **feature_record(feature_type),
        "model": encoder.state_dict(),
        "loss": loss.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng,
        "sampler": {"epoch": progress.epoch, "step": progress.step_in_epoch},
        "global_step": progress.global_step,
        "epoch_losses": list(progress.epoch_losses),
        "config": config,
    }, path)


def restore_training_state(path: Path, *, encoder: nn.Module, loss: nn.Module, optimizer: torch.optim.Optimizer,
                           scheduler, config: dict, device: torch.device) -> Progress:
    """Loads what :func:`save_training_state` wrote into the run's parts and
    the RNGs; returns where the run was. The checkpoint's model must be the config's."""
    ckpt = load_checkpoint(path)
    if ckpt["config"]["model"] != config["model"]:
        raise TrainError(f"{path}: made with model {ckpt['config']['model']}, but the config says "
                         f"{config['model']} (use another exp dir, or delete {Path(path).parent})")
    encoder.load_state_dict(ckpt["model"])
    loss.load_state_dict(ckpt["loss"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if "cuda" in ckpt["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"], device)
    return Progress(ckpt["sampler"]["epoch"], ckpt["sampler"]["step"], ckpt["global_step"],
                    list(ckpt.get("epoch_losses", [])))  # absent from checkpoints made before it was kept


def checkpoint_of_same_model(path: str | os.PathLike, config: dict) -> dict:
    """The checkpoint at ``path``, whose model must be the one ``config`` names."""
    ckpt = load_checkpoint(path)
    if ckpt["config"]["model"] != config["model"]:
        raise TrainError(f"{path}: a {ckpt['config']['model']['name']} model "
                         f"with {ckpt['config']['model']['args']}, "
                         f"but the config says {config['model']} (copy the model section of its config.yaml)")
    return ckpt


def init_from_weights(path: str | os.PathLike, *, encoder: nn.Module, loss: nn.Module, config: dict) -> None:
    """Starts from a pretrained model's weights (and learnt temperature); the optimiser stays fresh."""
    ckpt = checkpoint_of_same_model(path, config)
    encoder.load_state_dict(ckpt["model"])
    if "loss" in ckpt and "temperature.log_t" in ckpt["loss"]:
        loss.temperature.log_t.data.copy_(ckpt["loss"]["temperature.log_t"])


def continue_from(path: str | os.PathLike, *, encoder: nn.Module, loss: nn.Module,
                  optimizer: torch.optim.Optimizer, config: dict, steps_per_epoch: int) -> Progress:
    """Carries on the run that wrote the epoch checkpoint ``path``, as the original
    work's PURL phase resumes its pretraining's Lightning state: weights,
    temperature and Adam moments. The caller builds the scheduler at the returned
    global step: the schedule is that of a run of this config's optim.epochs
    (which count the pretraining's epochs too), so the learning rate continues
    its cosine from that step, with no new warm-up. Training goes on from the
    checkpoint's epoch."""
    ckpt = checkpoint_of_same_model(path, config)
    missing = [k for k in ("optimizer", "scheduler", "sampler", "global_step") if k not in ckpt]
    if missing:
        raise TrainError(f"{path}: holds no {', '.join(missing)} state (final.pt keeps only weights): "
                         "purl.init_mode=continue needs an epoch checkpoint of the pretraining, "
                         "e.g. models/epoch_200.pt, or set purl.init_mode=weights")
    start_epoch, step = ckpt["sampler"]["epoch"], ckpt["sampler"]["step"]
    if step != 0:
        raise TrainError(f"{path}: saved {step} steps into epoch {start_epoch + 1}; continue from an "
                         "epoch checkpoint (models/epoch_<N>.pt)")
    o = config["optim"]
    if start_epoch >= o["epochs"]:
        raise TrainError(f"{path} ends epoch {start_epoch}, but optim.epochs={o['epochs']}: with "
                         f"purl.init_mode=continue optim.epochs counts the pretraining's epochs too "
                         f"(e.g. 230 = 200 + 30 epochs of update)")
    if ckpt["global_step"] != start_epoch * steps_per_epoch:
        raise TrainError(f"{path}: {ckpt['global_step']} steps in {start_epoch} epochs, but this config makes "
                         f"{steps_per_epoch} steps per epoch: keep data.samples_per_epoch, "
                         "speakers_per_batch and utts_per_speaker of the pretraining")
    diff = [f"optim.{k}: {ckpt['config']['optim'][k]!r} there, {o[k]!r} here" for k in CONTINUED_OPTIM_KEYS
            if ckpt["config"]["optim"][k] != o[k]]
    if diff:
        raise TrainError(f"{path}: a continued run keeps the pretraining's schedule, but {'; '.join(diff)} "
                         "(set them as in its config.yaml, or use purl.init_mode=weights)")
    encoder.load_state_dict(ckpt["model"])
    loss.load_state_dict(ckpt["loss"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return Progress(start_epoch, 0, ckpt["global_step"])


def save_average(path: Path, epoch_checkpoints: list[Path], config: dict, feature_type: str = "kaldi") -> list[Path]:
    """Writes the average of those of ``epoch_checkpoints`` that exist (final.pt);
    returns them."""
    averaged = [p for p in epoch_checkpoints if p.is_file()]
    save_atomic({"model": average_checkpoints(averaged), "config": config,
                 "averaged": [p.name for p in averaged], **feature_record(feature_type)}, path)
    return averaged


def prune_epoch_checkpoints(epoch_checkpoint: Callable[[int], Path], epoch: int, *, keep_last: int,
                            average_last: int, keep_epochs) -> None:
    """Deletes the epoch checkpoints before the last max(keep_last, average_last)
    of ``epoch`` epochs, but those of ``keep_epochs``; keep_last <= 0 keeps all."""
    if keep_last <= 0:
        return
    keep = max(keep_last, average_last)
    for n in range(1, epoch - keep + 1):
        if n not in keep_epochs:
            epoch_checkpoint(n).unlink(missing_ok=True)
