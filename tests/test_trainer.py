"""The training loop: exact resume, checkpoints, config errors, torchrun on CPU."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from purl.config import ConfigError, load_config
from purl.data.dataset import SpeakerBatchSampler, TrainingSet
from purl.stages.exp_layout import TrainingOutputs
from purl.training.checkpoint import load_checkpoint
from purl.training.loop import Trainer
from tests.conftest import ROOT, recipe_env, write_feature_dir


def train(config, data, exp, **kwargs):
    trainer = Trainer(config, data, TrainingOutputs(exp), show_progress=False, **kwargs)
    try:
        return trainer.train()
    finally:
        trainer.close()


@pytest.mark.parametrize("stop_at_step, save_every_steps", [(4, 0), (6, 1)])
def test_resume_gives_the_same_weights_as_training_straight(tmp_path, tiny_config, stop_at_step, save_every_steps):
    """2 epochs straight == interrupted (at the epoch end, or mid-epoch) + resumed."""
    data = write_feature_dir(tmp_path / "data")
    config = [f"train.save_every_steps={save_every_steps}"]
    straight = train(load_config(tiny_config, config), data, tmp_path / "straight")
    trainer = Trainer(load_config(tiny_config, config), data, TrainingOutputs(tmp_path / "resumed"), show_progress=False)
    assert trainer.train(stop_at_step=stop_at_step) is None
    trainer.close()
    resumed = train(load_config(tiny_config, config), data, tmp_path / "resumed")
    a, b = load_checkpoint(straight)["model"], load_checkpoint(resumed)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "resumed" / "train.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(n) for n in range(1, 9)]
    # The interrupted epoch's mean loss covers its steps before the interruption too.
    assert (tmp_path / "resumed" / "epochs.csv").read_text() == (tmp_path / "straight" / "epochs.csv").read_text()


def test_training_writes_checkpoints_curves_and_config(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data")
    exp = tmp_path / "exp"
    final = train(load_config(tiny_config), data, exp)
    assert sorted(p.name for p in (exp / "models").iterdir()) == ["epoch_1.pt", "epoch_2.pt", "final.pt", "last.pt"]
    ckpt = load_checkpoint(exp / "models" / "epoch_2.pt")
    assert {"model", "loss", "optimizer", "scheduler", "rng", "sampler", "config"} <= set(ckpt)
    assert load_checkpoint(final)["averaged"] == ["epoch_1.pt", "epoch_2.pt"]
    assert (exp / "train.png").stat().st_size > 0 and (exp / "config.yaml").is_file()
    assert (exp / "environment.json").is_file()


def test_sampler_draws_p_speakers_by_k_utterances_and_splits_over_ranks(tmp_path):
    data = TrainingSet.from_data_dir(write_feature_dir(tmp_path / "data"))
    full = list(SpeakerBatchSampler(data.labels, 4, 2, 64, seed=1))
    assert len(full) == 8
    for batch in full:
        labels = data.labels[[u for u, _ in batch]]
        assert len(set(labels.tolist())) == 4 and all((labels == s).sum() == 2 for s in set(labels.tolist()))
    halves = [list(SpeakerBatchSampler(data.labels, 4, 2, 64, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves)] == full
    resumed = SpeakerBatchSampler(data.labels, 4, 2, 64, seed=1)
    resumed.set_epoch(0, start_step=5)
    assert list(resumed) == full[5:]


def test_unknown_config_key_names_the_closest(tmp_path, tiny_config):
    with pytest.raises(ConfigError, match=r"unknown key 'optim.learning_rate' \(did you mean optim.lr"):
        load_config(tiny_config, ["optim.learning_rate=0.1"])
    with pytest.raises(ConfigError, match="unknown section 'optimizer'"):
        load_config(tiny_config, ["optimizer.lr=0.1"])


def test_resuming_with_another_model_is_an_error(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data")
    train(load_config(tiny_config, ["optim.epochs=1"]), data, tmp_path / "exp")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "steps" / "train.py"), "--set", "model.args.embed_dim=32",
         str(tiny_config), str(data), str(tmp_path / "exp")],
        capture_output=True, text=True, env=recipe_env())
    assert proc.returncode == 1
    assert "was made with another config" in proc.stderr and "model.args" in proc.stderr


def test_two_cpu_processes_under_torchrun_keep_the_same_weights(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data")
    out = tmp_path / "diff.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(ROOT / "tests" / "ddp_weights_agree.py"), str(tiny_config), str(data), str(tmp_path / "exp"), str(out)],
        capture_output=True, text=True, env=recipe_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    max_diff, processes = out.read_text().split()
    assert int(processes) == 2 and float(max_diff) == 0.0


def test_train_sh_runs_two_cpu_processes(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data")
    exp = tmp_path / "exp"
    proc = subprocess.run(
        [str(ROOT / "steps" / "train.sh"), "--cpu-procs", "2", "--overrides", "optim.epochs=1",
         str(tiny_config), str(data), str(exp)],
        capture_output=True, text=True, env=recipe_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 process(es) on cpu" in proc.stdout and (exp / "models" / "final.pt").is_file()
    assert "2 process(es) on cpu" in (exp / "log" / "train.log").read_text()


def purl_setup(tmp_path, tiny_config):
    """A feature dir, and a stage 4 reliability dir fitted on random embeddings of it."""
    from purl.data.datadir import read_kv
    from purl.pair_weights import UTTS_FILE
    from purl.reliability import Reliability

    data = write_feature_dir(tmp_path / "data", utts_per_speaker=5)
    utt2spk = read_kv(data / "utt2spk")
    labels = [int(s[3:]) for s in utt2spk.values()]
    rel_dir = tmp_path / "reliability"
    Reliability.fit(np.random.default_rng(0).normal(size=(len(labels), 8)), np.array(labels)).save(rel_dir)
    (rel_dir / UTTS_FILE).write_text("".join(f"{u}\n" for u in utt2spk))
    overrides = ["loss.type=soft", f"purl.reliability={rel_dir}", "purl.reestimate_every=1"]
    return data, rel_dir, load_config(tiny_config, overrides)


def test_purl_with_reestimation_resumes_exactly(tmp_path, tiny_config):
    from purl.pair_weights import pair_weights_from_dir
    from purl.training.refit import PurlPairWeights

    data, rel_dir, config = purl_setup(tmp_path, tiny_config)

    def run(exp, stop_at_step=None):
        outputs = TrainingOutputs(exp)
        weights = PurlPairWeights(pair_weights_from_dir(rel_dir, data), reestimate_every=1,
                                  refit_dir=outputs.reestimated_weights_dir)
        trainer = Trainer(config, data, outputs, callbacks=[weights], show_progress=False)
        try:
            return trainer.train(stop_at_step=stop_at_step)
        finally:
            trainer.close()

    straight = run(tmp_path / "straight")
    assert (tmp_path / "straight" / "reliability" / "epoch_1" / "reliability.json").is_file()
    run(tmp_path / "resumed", stop_at_step=6)
    resumed = run(tmp_path / "resumed")
    a, b = load_checkpoint(straight)["model"], load_checkpoint(resumed)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    header, *rows = (tmp_path / "straight" / "train.csv").read_text().splitlines()
    assert "n_clean" in header and rows


def _loss_at_step(monkeypatch, step: int, replace):
    """The model's loss at the given (1-based) step becomes ``replace(loss)``."""
    from purl.training.distributed import SpeakerNet

    forward, calls = SpeakerNet.forward, []

    def patched(self, *args, **kwargs):
        loss, metrics = forward(self, *args, **kwargs)
        calls.append(1)
        return (replace(loss), metrics) if len(calls) == step else (loss, metrics)

    monkeypatch.setattr(SpeakerNet, "forward", patched)


def test_a_nonfinite_loss_stops_training_by_default(tmp_path, tiny_config, monkeypatch):
    _loss_at_step(monkeypatch, 3, lambda loss: loss * float("nan"))
    with pytest.raises(RuntimeError, match=r"loss is nan at epoch 1 step 2 .*train.nonfinite_loss=zero"):
        train(load_config(tiny_config), write_feature_dir(tmp_path / "data"), tmp_path / "exp")


def test_nonfinite_loss_zero_is_the_originals_zero_loss(tmp_path, tiny_config, monkeypatch):
    """The original replaces the loss by torch.zeros((), requires_grad=True) and
    steps on (src/trainers.py:434-436): no parameter moves, the schedule does."""
    data = write_feature_dir(tmp_path / "data")
    config = load_config(tiny_config, ["train.nonfinite_loss=zero"])
    _loss_at_step(monkeypatch, 3, lambda loss: loss * float("nan"))
    ours = load_checkpoint(train(config, data, tmp_path / "ours"))["model"]
    monkeypatch.undo()
    _loss_at_step(monkeypatch, 3, lambda loss: torch.zeros((), requires_grad=True))
    original = load_checkpoint(train(load_config(tiny_config), data, tmp_path / "original"))["model"]
    monkeypatch.undo()
    plain = load_checkpoint(train(load_config(tiny_config), data, tmp_path / "plain"))["model"]
    assert all(torch.equal(ours[k], original[k]) for k in ours)
    assert not all(torch.equal(ours[k], plain[k]) for k in ours)
    rows = (tmp_path / "ours" / "train.csv").read_text().splitlines()
    assert rows[3].split(",")[3] == "0" and len(rows) == 9  # step 3 logged a zero loss; all 8 steps ran


def test_a_run_saved_before_a_config_key_existed_counts_it_at_its_default(tmp_path, tiny_config):
    import yaml

    from purl.config import save_config
    from purl.stages.training import config_differences

    config = load_config(tiny_config)
    saved = {section: dict(keys) for section, keys in config.items()}
    del saved["train"]["nonfinite_loss"]
    save_config(saved, tmp_path / "config.yaml")
    assert "nonfinite_loss" not in yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]
    assert config_differences(tmp_path / "config.yaml", config) == []
    assert config_differences(tmp_path / "config.yaml", load_config(tiny_config, ["train.nonfinite_loss=zero"])) == [
        "train.nonfinite_loss: 'stop' -> 'zero'"]
