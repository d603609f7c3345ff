"""purl.init_mode=continue: the PURL phase (and its control) carries on the
pretraining run's whole state, with the original work's learning-rate schedule."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from purl.config import load_config
from purl.stages.exp_layout import TrainingOutputs
from purl.training.checkpoint import load_checkpoint
from purl.training.errors import TrainError
from purl.training.loop import Trainer
from purl.training.schedule import warmup_cosine
from tests.conftest import TINY_CONFIG, write_feature_dir


def original_lr_factor(step: int, total_steps: int, warmup_frac: float = 0.1) -> float:
    """transformers.get_cosine_schedule_with_warmup as the original configures it
    (src/trainers.py:117-147: warm-up int(0.1 * total), 0.5 cycles, floor 0),
    past the warm-up, which is all a continued run sees."""
    warmup = int(warmup_frac * total_steps)
    assert step >= warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))


def test_voxceleb_purl_phase_lr_goes_from_5_1e_4_to_0_over_epochs_200_to_229():
    """1,667 steps per epoch (ceil(1,000,000 / 600)), 230 epochs, peak 0.01: the
    epoch-200 checkpoint is at step 333,400."""
    steps_per_epoch, lr = math.ceil(1_000_000 / 600), 0.01
    total = 230 * steps_per_epoch
    factor = warmup_cosine(total, 0.1, 0.0)
    for step in (333_400, 333_401, 350_000, 366_700, 383_409):
        assert lr * factor(step) == pytest.approx(lr * original_lr_factor(step, total), rel=1e-12, abs=1e-15)
    assert lr * factor(333_400) == pytest.approx(5.09e-4, rel=1e-3)
    assert factor(total) == 0.0


def train(config, data, exp):
    trainer = Trainer(config, data, TrainingOutputs(exp), show_progress=False)
    try:
        return trainer.train()
    finally:
        trainer.close()


def test_continuing_an_epoch_checkpoint_carries_adam_and_schedule_and_equals_training_straight(tmp_path, tiny_config):
    """A control run continuing epoch 2 of a 3-epoch pretraining is that pretraining's
    third epoch: the same weights, bit for bit (Adam moments, temperature, scheduler
    step and the sampler's epoch all carry over)."""
    data = write_feature_dir(tmp_path / "data")
    straight = train(load_config(tiny_config, ["optim.epochs=3", "train.average_last=1"]), data, tmp_path / "pretrain")
    start = tmp_path / "pretrain" / "models" / "epoch_2.pt"
    config = load_config(tiny_config, ["optim.epochs=3", "train.average_last=1",
                                       f"purl.init_checkpoint={start}", "purl.init_mode=continue"])
    trainer = Trainer(config, data, TrainingOutputs(tmp_path / "control"), show_progress=False)
    trainer.resume_or_init()
    ckpt = load_checkpoint(start)
    assert (trainer.epoch, trainer.global_step) == (2, 8)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * original_lr_factor(8, 12), rel=1e-12)
    adam = trainer.optimizer.state_dict()["state"]
    assert all(torch.equal(adam[k]["exp_avg_sq"], v["exp_avg_sq"]) for k, v in ckpt["optimizer"]["state"].items())
    trainer.close()

    continued = train(config, data, tmp_path / "control")
    a, b = load_checkpoint(straight)["model"], load_checkpoint(continued)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (tmp_path / "control" / "models").glob("epoch_*.pt")) == ["epoch_3.pt"]
    with open(tmp_path / "control" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    # the lr logged after step n is the one step n + 1 uses
    assert [int(r["step"]) for r in rows] == [9, 10, 11, 12]
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.01 * original_lr_factor(n, 12) for n in range(9, 13)],
                                                           rel=1e-5, abs=1e-12)


def test_weights_mode_starts_a_fresh_optimizer_and_schedule(tmp_path, one_epoch):
    tiny_config, data, models = one_epoch
    config = load_config(tiny_config, [f"purl.init_checkpoint={models / 'final.pt'}"])
    trainer = Trainer(config, data, TrainingOutputs(tmp_path / "update"), show_progress=False)
    trainer.resume_or_init()
    assert (trainer.epoch, trainer.global_step) == (0, 0) and not trainer.optimizer.state_dict()["state"]
    trainer.close()


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A data dir, the tiny config and a 1-epoch pretraining of it."""
    root = tmp_path_factory.mktemp("one_epoch")
    (root / "tiny.yaml").write_text(TINY_CONFIG)
    data = write_feature_dir(root / "data")
    train(load_config(root / "tiny.yaml", ["optim.epochs=1"]), data, root / "pretrain")
    return root / "tiny.yaml", data, root / "pretrain" / "models"


@pytest.mark.parametrize("checkpoint, overrides, message", [
    ("final.pt", ["optim.epochs=3"], "holds no optimizer, scheduler, sampler, global_step state"),
    ("epoch_1.pt", ["optim.epochs=1"], "optim.epochs=1: with purl.init_mode=continue optim.epochs counts"),
    ("epoch_1.pt", ["optim.epochs=3", "optim.lr=0.02"], "optim.lr: 0.01 there, 0.02 here"),
    ("epoch_1.pt", ["optim.epochs=3", "data.samples_per_epoch=64"], "keep data.samples_per_epoch"),
    ("epoch_1.pt", ["optim.epochs=3", "purl.init_mode=resume"], "purl.init_mode='resume'"),
])
def test_continue_rejects_checkpoints_and_configs_it_cannot_carry_on(tmp_path, one_epoch, checkpoint, overrides, message):
    tiny_config, data, models = one_epoch
    mode = [] if any("init_mode" in o for o in overrides) else ["purl.init_mode=continue"]
    config = load_config(tiny_config, overrides + mode + [f"purl.init_checkpoint={models / checkpoint}"])
    trainer = Trainer(config, data, TrainingOutputs(tmp_path / "update"), show_progress=False)
    try:
        with pytest.raises(TrainError, match=message.replace("(", r"\(").replace(")", r"\)")):
            trainer.resume_or_init()
    finally:
        trainer.close()


def test_keep_epochs_survives_pruning(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data")
    train(load_config(tiny_config, ["optim.epochs=4", "train.keep_last=1", "train.average_last=1",
                                    "train.keep_epochs=[2]"]), data, tmp_path / "exp")
    assert sorted(p.name for p in (tmp_path / "exp" / "models").glob("epoch_*.pt")) == ["epoch_2.pt", "epoch_4.pt"]
