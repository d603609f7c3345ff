"""The training loop's callback protocol: the events a callback receives, in
order, with the state it needs; a loop without callbacks; the stage's log lines."""

from __future__ import annotations

import csv
import dataclasses
import re
import time

import numpy as np
import pytest
import torch

from purl.config import load_config
from purl.stages.exp_layout import TrainingOutputs
from purl.training.callbacks import TrainingCallback, TrainingState
from purl.training.checkpoint import load_checkpoint
from purl.training.errors import TrainError
from purl.training.loop import Trainer
from tests.conftest import ROOT, run_script, write_feature_dir


class Recorder(TrainingCallback):
    """Writes down every event with the counters of its state."""

    def __init__(self):
        self.events: list[tuple] = []
        self.states: list[TrainingState] = []

    def record(self, event: str, state: TrainingState) -> None:
        self.events.append((event, state.epoch, state.global_step))
        self.states.append(state)

    def on_train_start(self, state):
        self.record("train_start", state)

    def on_epoch_start(self, state):
        self.record("epoch_start", state)

    def on_epoch_end(self, state):
        self.record("epoch_end", state)
        return {"valid_eer": 0.25 * state.epoch}

    def on_train_end(self, state):
        self.record("train_end", state)


class UniformWeights(TrainingCallback):
    """w_ij = 1 for every pair, noting the batches it was asked about."""

    provides_pair_weights = True

    def __init__(self):
        self.batches: list[tuple[np.ndarray, np.ndarray]] = []

    def pair_weights(self, utts, labels):
        self.batches.append((utts, labels))
        return torch.ones(len(utts), len(utts))


def run(config, data, exp, callbacks=(), stop_at_step=None):
    trainer = Trainer(config, data, TrainingOutputs(exp), callbacks=callbacks, show_progress=False)
    try:
        return trainer, trainer.train(stop_at_step=stop_at_step)
    finally:
        trainer.close()


def test_a_callback_sees_the_events_in_order_with_the_runs_state(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data")
    recorder = Recorder()
    started = time.time()
    trainer, final = run(load_config(tiny_config), data, tmp_path / "exp", [recorder])  # 2 epochs of 4 steps
    assert recorder.events == [("train_start", 0, 0), ("epoch_start", 0, 0), ("epoch_end", 1, 4),
                               ("epoch_start", 1, 4), ("epoch_end", 2, 8), ("train_end", 2, 8)]
    state = recorder.states[-1]
    assert state.encoder is trainer.net.encoder and state.data is trainer.data and state.dist is trainer.dist
    assert state.exp_dir == tmp_path / "exp" and state.epochs == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.epoch = 5
    # The metrics of on_epoch_end land in the epoch's row.
    with open(tmp_path / "exp" / "epochs.csv") as f:
        assert [float(r["valid_eer"]) for r in csv.DictReader(f)] == [0.25, 0.5]
    with open(tmp_path / "exp" / "train.csv") as f:
        wall = [float(r["wall_time"]) for r in csv.DictReader(f)]
    assert len(wall) == 8 and started <= wall[0] <= wall[-1] <= time.time()
    assert final == tmp_path / "exp" / "models" / "final.pt"


def test_a_resumed_run_starts_its_events_where_the_interrupted_one_stopped(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data")
    config = load_config(tiny_config, ["train.save_every_steps=1"])
    first = Recorder()
    run(config, data, tmp_path / "exp", [first], stop_at_step=6)
    assert first.events == [("train_start", 0, 0), ("epoch_start", 0, 0), ("epoch_end", 1, 4), ("epoch_start", 1, 4)]
    resumed = Recorder()
    run(config, data, tmp_path / "exp", [resumed])
    assert resumed.events == [("train_start", 1, 6), ("epoch_start", 1, 6), ("epoch_end", 2, 8), ("train_end", 2, 8)]


def test_the_loop_without_callbacks_trains_the_same_weights_as_with_observers(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data")
    _, plain = run(load_config(tiny_config), data, tmp_path / "plain")
    _, observed = run(load_config(tiny_config), data, tmp_path / "observed", [Recorder()])
    a, b = load_checkpoint(plain)["model"], load_checkpoint(observed)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_purl_loss_asks_the_callback_for_each_batchs_pair_weights(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data")
    config = load_config(tiny_config, ["loss.type=soft", "optim.epochs=1"])
    with pytest.raises(TrainError, match="loss.type=soft needs pair weights"):
        Trainer(config, data, TrainingOutputs(tmp_path / "none"), callbacks=[Recorder()], show_progress=False)
    weights = UniformWeights()
    trainer, _ = run(config, data, tmp_path / "exp", [Recorder(), weights])
    assert len(weights.batches) == 4  # one per step
    for utts, labels in weights.batches:
        assert utts.shape == labels.shape == (8,)  # 4 speakers x 2 utterances
        assert np.array_equal(labels, trainer.data.labels[utts])


def test_train_py_logs_with_time_and_source_line_and_skips_a_finished_run(tmp_path, tiny_config):
    data, exp = write_feature_dir(tmp_path / "data"), tmp_path / "exp"
    args = ("--set", "optim.epochs=1", "--set", "train.average_last=1", tiny_config, data, exp)
    proc = run_script(ROOT / "steps" / "train.py", *args)
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d loop\.py:\d+ INFO started from random weights;",
                     proc.stderr, re.M), proc.stderr
    rerun = run_script(ROOT / "steps" / "train.py", *args)
    assert re.search(r"training\.py:\d+ INFO .*final\.pt is complete; skipping", rerun.stderr), rerun.stderr


def test_unreliable_utterances_give_w0_to_their_pairs_and_train_a_purl_loss(tmp_path, tiny_config):
    from purl.config import ConfigError
    from purl.data.datadir import DataDir, DataDirError
    from purl.pair_weights import UtteranceMask, utterance_mask_from_file
    from purl.stages.training import train_stage

    w = UtteranceMask(np.array([True, False, True, True])).pair_weights(np.array([0, 1, 2, 3]), np.array([5, 5, 5, 7]))
    # pairs (0,1), (1,2) involve the unreliable utterance 1: 0; (0,2) reliable: 1; other labels: 1
    assert w.tolist() == [[1, 0, 1, 1], [0, 1, 0, 1], [1, 0, 1, 1], [1, 1, 1, 1]]

    data = write_feature_dir(tmp_path / "data")
    utts = DataDir(data).utts
    listed = tmp_path / "unreliable_utts"
    listed.write_text(f"{utts[1]}\n{utts[5]}\n")
    mask = utterance_mask_from_file(listed, data)
    assert np.flatnonzero(~mask.reliable).tolist() == [1, 5]
    (tmp_path / "bad").write_text("nobody\n")
    with pytest.raises(DataDirError, match="'nobody' is no utterance of"):
        utterance_mask_from_file(tmp_path / "bad", data)

    overrides = ["loss.type=soft", "optim.epochs=1", "train.average_last=1", f"purl.unreliable_utts={listed}"]
    with pytest.raises(ConfigError, match="set one"):
        train_stage(tiny_config, overrides + ["purl.reestimate_every=1"], str(data), tmp_path / "both")
    with pytest.raises(ConfigError, match="no such file"):
        train_stage(tiny_config, overrides[:-1] + ["purl.unreliable_utts=missing"], str(data), tmp_path / "missing")
    train_stage(tiny_config, overrides, str(data), tmp_path / "exp")
    assert TrainingOutputs(tmp_path / "exp").final_checkpoint.is_file()
