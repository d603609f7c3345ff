"""A run can be watched: TensorBoard events, train.png per epoch, plain log lines."""

from __future__ import annotations

import io

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from purl.config import load_config
from purl.stages.exp_layout import TrainingOutputs
from purl.training.loop import Trainer
from purl.training.monitor import LineProgress, progress
from tests.conftest import write_feature_dir


def scalars(exp_dir, tag):
    events = EventAccumulator(str(exp_dir)).Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_training_writes_tensorboard_events_and_train_png_each_epoch_and_plain_lines(tmp_path, tiny_config, capsys):
    data = write_feature_dir(tmp_path / "data")
    config = load_config(tiny_config)  # 4 steps per epoch, a CSV row every step
    exp = tmp_path / "exp"
    trainer = Trainer(config, data, TrainingOutputs(exp))
    assert trainer.train(stop_at_step=5) is None  # killed in epoch 2: no final.pt, so no end-of-run plot
    trainer.close()
    assert (exp / "train.png").is_file()  # drawn at the end of epoch 1
    assert [s for s, _ in scalars(exp, "train/loss")] == [1, 2, 3, 4, 5]
    assert [s for s, _ in scalars(exp, "epoch/loss")] == [4]
    out = capsys.readouterr().out
    assert "\r" not in out
    assert "epoch 1/2: step 4/4" in out and "loss" in out

    trainer = Trainer(config, data, TrainingOutputs(exp))  # resumed from last.pt at step 4: step 5 is logged again, once
    trainer.train()
    trainer.close()
    assert [s for s, _ in scalars(exp, "train/loss")] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [s for s, _ in scalars(exp, "epoch/loss")] == [4, 8]


def test_progress_is_a_line_every_n_steps_off_a_terminal():
    out = io.StringIO()
    bar = progress(10, 0, "epoch 1/3", enabled=True, every=4, file=out)
    assert isinstance(bar, LineProgress)
    for _ in range(10):
        bar.set_postfix({"loss": "1.5"})
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["epoch 1/3: step 4/10", "epoch 1/3: step 8/10", "epoch 1/3: step 10/10"]
    assert all(line.endswith(", loss 1.5") for line in lines)
