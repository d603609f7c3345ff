"""One training loop for SupCon pretraining (stage 3), the PURL update and its
control run (stage 5): they differ only in the loss, the starting weights and
the callbacks (purl.training.callbacks) that ride along.

Run under torchrun for several processes (DDP: NCCL on GPU, gloo on CPU) or as
a plain process. Process 0 writes the run's files, at the paths of ``outputs``
(purl.stages.exp_layout.TrainingOutputs says where they are): the merged config,
the environment, a checkpoint per epoch (model, loss, optimizer, scheduler, RNG,
sampler state, config) and last.pt, final.pt (the average of the last
train.average_last epochs), the per-step and per-epoch CSVs, TensorBoard events
and the curves.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from purl.config import ConfigError, save_config
from purl.data.chns import ClusterBatchSampler
from purl.data.dataset import TrainingSet
from purl.training.callbacks import TrainingCallback, TrainingState
from purl.training.checkpoint import (
    Progress,
    continue_from,
    init_from_weights,
    prune_epoch_checkpoints,
    restore_training_state,
    save_average,
    save_training_state,
)
from purl.training.distributed import Distributed
from purl.training.errors import TrainError
from purl.training.monitor import EPOCH_FIELDS, STEP_FIELDS, CsvLog, TrainingMonitor, environment_summary, progress
from purl.training.refit import ChnsClusters, OrGateSelection
from purl.training.schedule import build_optimizer, build_scheduler, warmup_cosine
from purl.training.setup import build_loader, build_net, build_sampler

log = logging.getLogger(__name__)


class Trainer:
    """Trains the model of ``config`` on a data dir, writing to ``outputs``.

    ``callbacks`` receive the loop's events (purl.training.callbacks); one of them
    gives the pair weights of a PURL loss.
    """

    def __init__(self, config: dict, data_dir, outputs, *, callbacks: Sequence[TrainingCallback] = (),
                 show_progress: bool = True):
        self.config, self.outputs = config, outputs
        self.dist = Distributed()
        self.callbacks = list(callbacks)
        self.show_progress = show_progress and self.dist.main
        o, t = config["optim"], config["train"]
        if t["threads"] > 0:
            torch.set_num_threads(t["threads"])
        torch.manual_seed(t["seed"])

        self.data = TrainingSet.from_data_dir(data_dir)
        self.net = build_net(config, self.data, data_dir, self.dist,
                             has_pair_weights=any(c.provides_pair_weights for c in self.callbacks))
        self.sampler = build_sampler(config, self.data, self.dist)
        if isinstance(self.sampler, ClusterBatchSampler):  # CHNS: new clusters at epoch starts, after the others
            chns = config["chns"]
            self.callbacks.append(ChnsClusters(self.sampler, num_clusters=chns["num_clusters"],
                                               refresh_every=chns["refresh_every"], cluster_file=outputs.chns_clusters))
        orgate = config["orgate"]
        if orgate["top_k"] > 0:  # OR-Gate: the utterances drawn, selected again at epoch starts
            if isinstance(self.sampler, ClusterBatchSampler):
                raise ConfigError(f"orgate.top_k={orgate['top_k']} does not go with chns.hard_ratio > 0: CHNS "
                                  "draws its speakers from clusters of all of them; turn one off")
            self.callbacks.append(OrGateSelection(self.sampler, top_k=orgate["top_k"],
                                                  refit_every=orgate["refit_every"], rank_file=outputs.orgate_ranks))
        self.net.gather_sizes = self.sampler.utts_per_rank()
        self.loader = build_loader(config, self.data, data_dir, self.dist, self.sampler)
        self.optimizer = build_optimizer(self.net.parameters(), o)
        self.total_steps = o["epochs"] * self.sampler.steps_per_epoch
        self.lr_factor = warmup_cosine(self.total_steps, o["warmup_frac"], o["final_lr_frac"])
        self.scheduler = build_scheduler(self.optimizer, self.lr_factor)
        self.model = self.net
        if self.dist.world_size > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.dist.device.index] if self.dist.device.type == "cuda" else None)
        if t["nonfinite_loss"] not in ("stop", "zero"):
            raise TrainError(f"train.nonfinite_loss={t['nonfinite_loss']!r}: use 'stop' (an error) or 'zero' "
                             "(the original work's: no update at that step)")
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.epoch_losses: list[float] = []  # this epoch's step losses: a resumed epoch's mean covers them all

    def training_state(self) -> TrainingState:
        return TrainingState(epoch=self.epoch, global_step=self.global_step, epochs=self.config["optim"]["epochs"],
                             encoder=self.net.encoder, dist=self.dist, data=self.data, exp_dir=self.outputs.exp_dir)

    def progress(self) -> Progress:
        return Progress(self.epoch, self.step_in_epoch, self.global_step, list(self.epoch_losses))

    def set_progress(self, progress: Progress) -> None:
        self.epoch, self.step_in_epoch = progress.epoch, progress.step_in_epoch
        self.global_step, self.epoch_losses = progress.global_step, list(progress.epoch_losses)

    def save(self, path: Path) -> None:
        if self.dist.main:
            save_training_state(path, encoder=self.net.encoder, loss=self.net.loss, optimizer=self.optimizer,
                                scheduler=self.scheduler, progress=self.progress(), config=self.config,
                                device=self.dist.device, feature_type=self.data.feature_type)

    def resume_or_init(self) -> str:
        """Sets the run's starting point (see purl.training.checkpoint); says which."""
        last, net = self.outputs.last_checkpoint, self.net
        if last.is_file():
            self.set_progress(restore_training_state(
                last, encoder=net.encoder, loss=net.loss, optimizer=self.optimizer, scheduler=self.scheduler,
                config=self.config, device=self.dist.device))
            return f"resumed from {last} at epoch {self.epoch + 1}, step {self.step_in_epoch}"
        init, mode = self.config["purl"]["init_checkpoint"], self.config["purl"]["init_mode"]
        if mode not in ("weights", "continue"):
            raise TrainError(f"purl.init_mode={mode!r}: use 'weights' (fresh optimizer) or 'continue' (whole state)")
        if init and mode == "continue":
            self.set_progress(continue_from(init, encoder=net.encoder, loss=net.loss, optimizer=self.optimizer,
                                            config=self.config, steps_per_epoch=self.sampler.steps_per_epoch))
            self.scheduler = build_scheduler(self.optimizer, self.lr_factor, self.global_step)
            return (f"continuing {init} from epoch {self.epoch + 1}, step {self.global_step + 1} "
                    f"(lr {self.scheduler.get_last_lr()[0]:.4g})")
        if init:
            init_from_weights(init, encoder=net.encoder, loss=net.loss, config=self.config)
            return f"initialised from {init}"
        return "started from random weights"

    def train(self, stop_at_step: int | None = None) -> Path | None:
        """Trains to the end (returns final.pt) or, for tests, until the global step
        ``stop_at_step`` as if killed there (returns None; last.pt is what was saved)."""
        o, out = self.config["optim"], self.outputs
        if self.dist.main:
            out.models_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, out.config_yaml)
            out.environment_json.write_text(json.dumps(environment_summary(), indent=1) + "\n")
        how = self.resume_or_init()
        self.print(f"{how}; {len(self.data)} utterances of {len(self.data.speakers)} speakers, "
                   f"{self.sampler.steps_per_epoch} steps per epoch, {o['epochs']} epochs, "
                   f"{self.dist.world_size} process(es) on {self.dist.device.type}, "
                   f"{sum(p.numel() for p in self.net.encoder.parameters()) / 1e6:.2f}M parameters")
        steps_csv = epochs_csv = monitor = None
        if self.dist.main:
            steps_csv = CsvLog(out.steps_csv, STEP_FIELDS, self.global_step, float_format=".6g")
            epochs_csv = CsvLog(out.epochs_csv, EPOCH_FIELDS, self.epoch)
            monitor = TrainingMonitor(out.exp_dir, self.global_step, plot=out.plot_curves)
        try:
            for callback in self.callbacks:
                callback.on_train_start(self.training_state())
            while self.epoch < o["epochs"]:
                for callback in self.callbacks:
                    callback.on_epoch_start(self.training_state())
                summary = self.train_epoch(steps_csv, monitor, stop_at_step)
                if stop_at_step is not None and self.global_step >= stop_at_step:
                    return None
                self.epoch += 1
                self.step_in_epoch = 0
                self.epoch_losses = []
                for callback in self.callbacks:
                    summary.update(callback.on_epoch_end(self.training_state()) or {})
                self.net.encoder.train()
                if self.dist.main:
                    epochs_csv.write({"epoch": self.epoch, **summary})
                    monitor.epoch_end(self.global_step, summary)
                    self.print("epoch {}/{}: {}".format(self.epoch, o["epochs"], ", ".join(
                        f"{k} {v}" if isinstance(v, int) else f"{k} {v:.4f}" for k, v in summary.items())))
                self.save(out.epoch_checkpoint(self.epoch))
                self.save(out.last_checkpoint)
                if self.dist.main:
                    t = self.config["train"]
                    prune_epoch_checkpoints(out.epoch_checkpoint, self.epoch, keep_last=t["keep_last"],
                                            average_last=t["average_last"], keep_epochs=t["keep_epochs"])
                self.dist.barrier()
        finally:
            for handle in (steps_csv, epochs_csv, monitor):
                if handle is not None:
                    handle.close()
        if self.dist.main:
            n = max(1, self.config["train"]["average_last"])
            averaged = save_average(out.final_checkpoint,
                                    [out.epoch_checkpoint(e) for e in range(self.epoch - n + 1, self.epoch + 1)],
                                    self.config, feature_type=self.data.feature_type)
            self.print(f"wrote {out.final_checkpoint} (average of {', '.join(p.name for p in averaged)})")
            out.plot_curves()
        self.dist.barrier()
        for callback in self.callbacks:
            callback.on_train_end(self.training_state())
        return out.final_checkpoint

    def pair_weights(self, utts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The first callback's weights for the batch (the loss needs them)."""
        for callback in self.callbacks:
            weights = callback.pair_weights(utts.cpu().numpy(), labels.cpu().numpy())
            if weights is not None:
                return weights.to(self.dist.device)
        raise TrainError(f"loss.type={self.config['loss']['type']} needs pair weights, and no callback gave them")

    def train_epoch(self, steps_csv: CsvLog | None, monitor: TrainingMonitor | None,
                    stop_at_step: int | None = None) -> dict:
        o, t = self.config["optim"], self.config["train"]
        device = self.dist.device
        self.sampler.set_epoch(self.epoch, self.step_in_epoch)
        self.model.train()
        amp = t["amp"] and device.type == "cuda"
        bar = progress(self.sampler.steps_per_epoch, self.step_in_epoch, f"epoch {self.epoch + 1}/{o['epochs']}",
                       enabled=self.show_progress, every=t["log_every"])
        losses = self.epoch_losses
        tic, utts_since = time.perf_counter(), 0
        for feats, utts in self.loader:
            feats = feats.to(device, non_blocking=True)
            utts = utts.to(device)
            self.net.gather_sizes = self.sampler.utts_per_rank(self.step_in_epoch)  # the last batch may be smaller
            all_utts = self.dist.all_gather(utts, sizes=self.net.gather_sizes) if self.net.gather else utts
            labels = torch.as_tensor(self.data.labels, device=device)[all_utts]
            pair_weights = self.pair_weights(all_utts, labels) if self.net.loss.needs_pair_weights else None
            # with_replacement: a speaker may fill several rows, so the loss needs to know which samples
            # were drawn together (row r: items r*K..r*K+K-1 of the gathered batch)
            groups = torch.arange(len(all_utts), device=device) // self.sampler.K if self.sampler.replacement \
                else None
            with torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext():
                loss, metrics = self.model(feats, labels, pair_weights, groups)
            self.optimizer.zero_grad(set_to_none=True)
            if self.loss_is_finite(loss):
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(self.net.parameters(),
                                                     o["grad_clip"] if o["grad_clip"] > 0 else float("inf"))
                self.optimizer.step()
            else:
                # train.nonfinite_loss=zero, as the original (src/trainers.py:434-436): a zero
                # loss has no gradient, so Adam leaves every parameter and moment as it is.
                grad_norm = torch.zeros(())
                metrics = {**metrics, "loss": 0.0}
            self.scheduler.step()
            self.step_in_epoch += 1
            self.global_step += 1
            losses.append(metrics["loss"])
            utts_since += len(feats) * self.dist.world_size
            if self.global_step % t["log_every"] == 0 or self.step_in_epoch == self.sampler.steps_per_epoch:
                elapsed = time.perf_counter() - tic
                row = {**metrics, "step": self.global_step,
                       "epoch": self.epoch + self.step_in_epoch / self.sampler.steps_per_epoch,
                       "lr": self.scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                       "utt_per_s": utts_since / max(elapsed, 1e-9)}
                tic, utts_since = time.perf_counter(), 0
                if steps_csv is not None:
                    steps_csv.write({**row, "wall_time": f"{time.time():.3f}"})
                    monitor.step(row)
                bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss", "temperature", "lr", "utt_per_s") if k in row}
                                | ({"clean": f"{row['clean_ratio']:.2f}"} if "clean_ratio" in row else {}))
            bar.update(1)
            if t["save_every_steps"] and self.step_in_epoch % t["save_every_steps"] == 0 \
                    and self.step_in_epoch < self.sampler.steps_per_epoch:
                self.save(self.outputs.last_checkpoint)
            if stop_at_step is not None and self.global_step >= stop_at_step:
                break
        bar.close()
        return {"loss": float(np.mean(losses)) if losses else float("nan")}

    def loss_is_finite(self, loss: torch.Tensor) -> bool:
        """False for a non-finite loss under train.nonfinite_loss=zero (on every
        process when any has one, so that all skip the step); under "stop" a
        TrainError."""
        finite = bool(torch.isfinite(loss))
        if self.config["train"]["nonfinite_loss"] == "stop":
            if not finite:
                raise TrainError(f"loss is {loss.item()} at epoch {self.epoch + 1} step {self.step_in_epoch} "
                                 "(lower optim.lr or raise loss.temperature; train.nonfinite_loss=zero "
                                 "goes on as the original work: no update at such a step)")
            return True
        finite = not self.dist.any_process(not finite)
        if not finite:
            self.print(f"loss is {loss.item()} at epoch {self.epoch + 1} step {self.step_in_epoch}: "
                       "a zero loss instead (train.nonfinite_loss=zero): no update, the schedule goes on")
        return finite

    def print(self, message: str) -> None:
        """A line in the run's log, from process 0 only."""
        if self.dist.main:
            log.info(message, stacklevel=2)  # file:line of the caller

    def close(self) -> None:
        self.model = self.net  # drops the DDP wrapper and its reducer before the process group goes
        self.dist.close()
