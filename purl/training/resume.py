"""Where a run starts, and what its checkpoints hold to resume it exactly:
resumed from its own last.pt, initialised from a pretrained model's weights, or
continuing a pretraining's whole state (the original work's PURL phase)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from purl.training.checkpoint import load_checkpoint
from purl.training.errors import TrainError
from purl.training.schedule import build_scheduler


class StartingPoints:
    """The Trainer's methods for its state: they read and set its ``net``,
    ``optimizer``, ``scheduler``, ``sampler``, counters and ``outputs``."""

    # The optim keys that shape the schedule a continued run carries on.
    CONTINUED_OPTIM_KEYS = ("lr", "weight_decay", "warmup_frac", "final_lr_frac")

    def state(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state(self.dist.device)
        return {
            "model": self.net.encoder.state_dict(),
            "loss": self.net.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "sampler": {"epoch": self.epoch, "step": self.step_in_epoch},
            "global_step": self.global_step,
            "epoch_losses": list(self.epoch_losses),
            "config": self.config,
        }

    def load_state(self, ckpt: dict, path: Path) -> None:
        if ckpt["config"]["model"] != self.config["model"]:
            raise TrainError(f"{path}: made with model {ckpt['config']['model']}, but the config says "
                             f"{self.config['model']} (use another exp dir, or delete {self.outputs.models_dir})")
        self.net.encoder.load_state_dict(ckpt["model"])
        self.net.loss.load_state_dict(ckpt["loss"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if "cuda" in ckpt["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.dist.device)
        self.epoch, self.step_in_epoch = ckpt["sampler"]["epoch"], ckpt["sampler"]["step"]
        self.global_step = ckpt["global_step"]
        self.epoch_losses = list(ckpt.get("epoch_losses", []))  # absent from checkpoints made before it was kept

    def checkpoint_of_same_model(self, path: str | os.PathLike) -> dict:
        ckpt = load_checkpoint(path)
        if ckpt["config"]["model"] != self.config["model"]:
            raise TrainError(f"{path}: a {ckpt['config']['model']['name']} model "
                             f"with {ckpt['config']['model']['args']}, "
                             f"but the config says {self.config['model']} (copy the model section of its config.yaml)")
        return ckpt

    def init_from(self, path: str | os.PathLike) -> None:
        """Starts from a pretrained model's weights (and learnt temperature); fresh optimizer."""
        ckpt = self.checkpoint_of_same_model(path)
        self.net.encoder.load_state_dict(ckpt["model"])
        if "loss" in ckpt and "temperature.log_t" in ckpt["loss"]:
            self.net.loss.temperature.log_t.data.copy_(ckpt["loss"]["temperature.log_t"])

    def continue_from(self, path: str | os.PathLike) -> None:
        """Carries on the run that wrote the epoch checkpoint ``path``, as the original
        work's PURL phase resumes its pretraining's Lightning state: weights,
        temperature, Adam moments and the scheduler's step count. The schedule is
        that of a run of this config's optim.epochs (which count the pretraining's
        epochs too), so the learning rate continues its cosine from that step, with
        no new warm-up. Training goes on from the checkpoint's epoch."""
        ckpt = self.checkpoint_of_same_model(path)
        missing = [k for k in ("optimizer", "scheduler", "sampler", "global_step") if k not in ckpt]
        if missing:
            raise TrainError(f"{path}: holds no {', '.join(missing)} state (final.pt keeps only weights): "
                             "purl.init_mode=continue needs an epoch checkpoint of the pretraining, "
                             "e.g. models/epoch_200.pt, or set purl.init_mode=weights")
        start_epoch, step = ckpt["sampler"]["epoch"], ckpt["sampler"]["step"]
        if step != 0:
            raise TrainError(f"{path}: saved {step} steps into epoch {start_epoch + 1}; continue from an "
                             "epoch checkpoint (models/epoch_<N>.pt)")
        o = self.config["optim"]
        if start_epoch >= o["epochs"]:
            raise TrainError(f"{path} ends epoch {start_epoch}, but optim.epochs={o['epochs']}: with "
                             f"purl.init_mode=continue optim.epochs counts the pretraining's epochs too "
                             f"(e.g. 230 = 200 + 30 epochs of update)")
        if ckpt["global_step"] != start_epoch * self.sampler.steps_per_epoch:
            raise TrainError(f"{path}: {ckpt['global_step']} steps in {start_epoch} epochs, but this config makes "
                             f"{self.sampler.steps_per_epoch} steps per epoch: keep data.samples_per_epoch, "
                             "speakers_per_batch and utts_per_speaker of the pretraining")
        diff = [f"optim.{k}: {ckpt['config']['optim'][k]!r} there, {o[k]!r} here" for k in self.CONTINUED_OPTIM_KEYS
                if ckpt["config"]["optim"][k] != o[k]]
        if diff:
            raise TrainError(f"{path}: a continued run keeps the pretraining's schedule, but {'; '.join(diff)} "
                             "(set them as in its config.yaml, or use purl.init_mode=weights)")
        self.net.encoder.load_state_dict(ckpt["model"])
        self.net.loss.load_state_dict(ckpt["loss"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch, self.step_in_epoch, self.global_step = start_epoch, 0, ckpt["global_step"]
        self.scheduler = build_scheduler(self.optimizer, self.lr_factor, self.global_step)

    def resume_or_init(self) -> str:
        last = self.outputs.last_checkpoint
        if last.is_file():
            self.load_state(load_checkpoint(last), last)
            return f"resumed from {last} at epoch {self.epoch + 1}, step {self.step_in_epoch}"
        init, mode = self.config["purl"]["init_checkpoint"], self.config["purl"]["init_mode"]
        if mode not in ("weights", "continue"):
            raise TrainError(f"purl.init_mode={mode!r}: use 'weights' (fresh optimizer) or 'continue' (whole state)")
        if init and mode == "continue":
            self.continue_from(init)
            return (f"continuing {init} from epoch {self.epoch + 1}, step {self.global_step + 1} "
                    f"(lr {self.scheduler.get_last_lr()[0]:.4g})")
        if init:
            self.init_from(init)
            return f"initialised from {init}"
        return "started from random weights"
