"""Checkpoint files: the one module that reads and writes them. Scripts that only
use a trained model (extraction, export, the API) import this, not the loop."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from purl.fileio import atomic_path
from purl.models import build_model
from purl.training.errors import TrainError


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
