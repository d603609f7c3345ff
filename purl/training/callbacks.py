"""What the training loop tells the code that rides along with it.

The loop emits these events, in this order, on every process:

    on_train_start(state)             once the starting point is loaded
    on_epoch_start(state)             before each epoch's first step (also a resumed one's)
    pair_weights(utts, labels)        at each step, when the loss needs pair weights
    on_epoch_end(state) -> metrics    after each epoch's last step; the metrics join the epoch's
                                      row (epochs.csv's columns), TensorBoard and the log
    on_train_end(state)               after final.pt is written

A callback subclasses TrainingCallback and overrides the events it needs. It
sees the run only through the read-only TrainingState it is given; what it
computes goes back through return values (pair weights, metrics), never by
changing the trainer. Processes that must agree (e.g. re-estimated weights)
agree through ``state.dist``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from purl.data.dataset import TrainingSet
from purl.training.distributed import Distributed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingState:
    """A snapshot of the run when an event is emitted.

    ``epoch`` counts the epochs done (0 at the first epoch's start), ``global_step``
    the optimiser steps done. ``encoder`` is the model being trained: a callback
    that runs it in eval mode puts it back in train mode. ``exp_dir`` is the
    run's directory, where a callback may keep files of its own.
    """

    epoch: int
    global_step: int
    epochs: int
    encoder: torch.nn.Module
    dist: Distributed
    data: TrainingSet
    exp_dir: Path

    def print(self, message: str) -> None:
        """A line in the run's log, from process 0 only."""
        if self.dist.main:
            log.info(message, stacklevel=2)  # file:line of the caller


class TrainingCallback:
    """The events of the training loop (see the module docstring); each does nothing here.

    A callback that gives pair weights sets ``provides_pair_weights``: a loss that
    needs them refuses to start without one.
    """

    provides_pair_weights = False

    def on_train_start(self, state: TrainingState) -> None:
        pass

    def on_epoch_start(self, state: TrainingState) -> None:
        pass

    def pair_weights(self, utts: np.ndarray, labels: np.ndarray) -> torch.Tensor | None:
        """(B,) training-set indices of the batch's utterances (all processes' when
        the batch is gathered), (B,) labels -> (B, B) w_ij, or None."""
        return None

    def on_epoch_end(self, state: TrainingState) -> dict | None:
        """Metrics for the epoch's row (e.g. held-out EER), or None."""
        return None

    def on_train_end(self, state: TrainingState) -> None:
        pass
