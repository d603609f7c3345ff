"""One training loop for SupCon pretraining (stage 3), the PURL update and its
control run (stage 5): they differ only in the loss and the starting weights.

Run under torchrun for several processes (DDP: NCCL on GPU, gloo on CPU) or as
a plain process. Process 0 writes everything under exp/<name>/:
    config.yaml              the merged config
    models/epoch_<N>.pt      model, loss, optimizer, scheduler, RNG, sampler state, config
    models/last.pt           the newest of those (also written every save_every_steps)
    models/final.pt          the average of the last average_last epochs: what stage 6 scores
    train.csv                a row per log_every steps (and TensorBoard event files beside it)
    epochs.csv, valid.csv    per-epoch means; held-out target/non-target cosine and EER
    train.png                the curves, redrawn at every epoch end
    log/                     (the recipe's logs)
"""

from __future__ import annotations

import csv
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from purl.errors import PurlError
from purl.config import save_config
from purl.data.augment import Augmenter, WaveChunkDataset
from purl.data.chns import chns_sampler_or_plain
from purl.data.dataset import ChunkDataset, TrainingSet, collate
from purl.evaluate import check_feature_dim
from purl.losses import build_loss
from purl.models import build_model
from purl.plots import plot_training_curves
from purl.train_monitor import TrainingMonitor, progress


class TrainError(PurlError, RuntimeError):
    """Training cannot start or go on (bad checkpoint, config or data)."""


# ---------------------------------------------------------------------------
# checkpoints

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
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def model_from_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """The encoder stored in a checkpoint, built from the config saved with it."""
    ckpt = load_checkpoint(path)
    config = ckpt["config"]
    model = build_model(config["model"]["name"], **config["model"]["args"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise TrainError(f"{path}: its weights do not fit {config['model']['name']} with {config['model']['args']} ({e})") from e
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


# ---------------------------------------------------------------------------
# processes

class Distributed:
    """This process's place among the torchrun processes (or alone)."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_gather(self, tensor: torch.Tensor, *, sizes: list[int] | None = None,
                   with_grad: bool = False) -> torch.Tensor:
        """The rows of every process's ``tensor``, concatenated in rank order.

        ``sizes`` (rows per process, in rank order) allows unequal shares: the
        collectives need equal shapes, so each share is padded to the largest
        and the padding dropped after the gather.
        """
        if self.world_size == 1:
            return tensor
        sizes = sizes or [len(tensor)] * self.world_size
        if len(sizes) != self.world_size or sizes[self.rank] != len(tensor):
            raise ValueError(f"all_gather: process {self.rank} has {len(tensor)} rows, but the shares are {sizes}")
        longest = max(sizes)
        if len(tensor) < longest:
            tensor = torch.cat([tensor, tensor.new_zeros((longest - len(tensor),) + tensor.shape[1:])])
        if with_grad:
            # The autograd-aware gather sends each process's gradient back to its owner.
            parts = torch.distributed.nn.functional.all_gather(tensor)
        else:
            parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
            dist.all_gather(parts, tensor)
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            # Gloo aborts a process ("terminate called without an active
            # exception", SIGABRT) when tensors that its collectives still
            # reference (a DDP reducer's, an autograd graph's) die after the
            # group, at interpreter exit. So: collect them now, and let every
            # process get here before any tears the group down. On a failure
            # torchrun ends the other processes, so none waits for ever.
            gc.collect()
            dist.barrier()
            dist.destroy_process_group()


class SpeakerNet(nn.Module):
    """Encoder and loss in one module, so that DDP keeps both (the loss has the
    learnable temperature) in step across processes."""

    def __init__(self, encoder: nn.Module, loss: nn.Module, dist_ctx: Distributed, gather: bool,
                 gather_sizes: list[int] | None = None):
        super().__init__()
        self.encoder, self.loss = encoder, loss
        self.dist_ctx, self.gather, self.gather_sizes = dist_ctx, gather, gather_sizes

    def forward(self, feats, labels, pair_weights=None):
        embeddings = self.encoder(feats)
        if self.gather:
            # Every process computes the loss of the whole batch; the gradient
            # reaching each process's embeddings is then that of the global loss.
            embeddings = self.dist_ctx.all_gather(embeddings, sizes=self.gather_sizes, with_grad=True)
        return self.loss(embeddings.float(), labels, pair_weights)


def warmup_cosine(total_steps: int, warmup_frac: float, final_frac: float) -> Callable[[int], float]:
    """lr multiplier: linear from 0 over the warm-up, then cosine down to final_frac."""
    warmup = max(1, int(round(total_steps * warmup_frac)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def environment_summary() -> dict:
    """What a reader needs to reproduce a run: commit, versions, machine."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    import numpy, sklearn  # noqa: E401 (versions only)
    return {
        "git_commit": commit or "unknown",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "cuda": torch.version.cuda or "none",
        "host": platform.node(),
        "command": " ".join(sys.argv),
    }


# ---------------------------------------------------------------------------
# the loop

class Trainer:
    """Trains the model of ``config`` on a data dir into ``exp_dir``.

    ``pair_weights_fn(utt_indices (B,), labels (B,)) -> (B, B) tensor`` gives the
    PURL losses their w_ij; ``validate_fn(model) -> dict`` gives held-out figures
    at each epoch end (process 0 only).
    """

    CSV_FIELDS = ("step", "epoch", "lr", "loss", "supcon", "unlearn", "temperature",
                  "grad_norm", "n_clean", "n_noisy", "clean_ratio", "utt_per_s")

    def __init__(self, config: dict, data_dir: str | os.PathLike, exp_dir: str | os.PathLike,
                 *, pair_weights_fn=None, validate_fn=None, show_progress: bool = True):
        self.config = config
        self.exp_dir = Path(exp_dir)
        self.models_dir = self.exp_dir / "models"
        self.dist = Distributed()
        self.pair_weights_fn, self.validate_fn = pair_weights_fn, validate_fn
        self.show_progress = show_progress and self.dist.main
        d, o, t = config["data"], config["optim"], config["train"]
        if t["threads"] > 0:
            torch.set_num_threads(t["threads"])
        torch.manual_seed(t["seed"])

        self.data = TrainingSet.from_data_dir(data_dir)
        encoder = build_model(config["model"]["name"], **config["model"]["args"])
        check_feature_dim(encoder, data_dir, self.data.utts[0], self.data.feats[0])
        loss_cfg = dict(config["loss"])
        loss = build_loss(loss_cfg.pop("type"), **loss_cfg)
        if loss.needs_pair_weights and pair_weights_fn is None:
            raise TrainError(f"loss.type={config['loss']['type']} needs pair weights: set purl.reliability to stage 4's output")
        self.net = SpeakerNet(encoder, loss, self.dist, gather=t["gather_batch"] and self.dist.world_size > 1)
        self.net.to(self.dist.device)
        self.sampler = chns_sampler_or_plain(
            config["chns"], self.data.labels, d["speakers_per_batch"], d["utts_per_speaker"], d["samples_per_epoch"],
            seed=t["seed"], rank=self.dist.rank, world_size=self.dist.world_size,
        )
        self.net.gather_sizes = self.sampler.utts_per_rank()
        dataset = ChunkDataset(self.data, d["chunk_frames"], d["spec_augment"], d["freq_mask"], d["time_mask"])
        if config["augment"]["prob"] > 0:  # augmented chunks are computed from the audio
            dataset = WaveChunkDataset.from_data_dir(
                self.data, data_dir, Augmenter.from_config(config["augment"]), chunk_frames=d["chunk_frames"],
                spec_augment=d["spec_augment"], freq_mask=d["freq_mask"], time_mask=d["time_mask"])
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.sampler, collate_fn=collate, num_workers=d["num_workers"],
            pin_memory=self.dist.device.type == "cuda", persistent_workers=False,
            prefetch_factor=4 if d["num_workers"] > 0 else None,
        )
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=o["lr"], weight_decay=o["weight_decay"])
        self.total_steps = o["epochs"] * self.sampler.steps_per_epoch
        self.lr_factor = warmup_cosine(self.total_steps, o["warmup_frac"], o["final_lr_frac"])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_factor)
        self.model = self.net
        if self.dist.world_size > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.dist.device.index] if self.dist.device.type == "cuda" else None)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.monitor: TrainingMonitor | None = None
        self.epoch_losses: list[float] = []  # this epoch's step losses: a resumed epoch's mean covers them all

    # -- state ----------------------------------------------------------------

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
                             f"{self.config['model']} (use another exp dir, or delete {self.models_dir})")
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

    def init_from(self, path: str | os.PathLike) -> None:
        """Starts from a pretrained model's weights (and learnt temperature); fresh optimizer."""
        ckpt = load_checkpoint(path)
        if ckpt["config"]["model"] != self.config["model"]:
            raise TrainError(f"{path}: a {ckpt['config']['model']['name']} model with {ckpt['config']['model']['args']}, "
                             f"but the config says {self.config['model']} (copy the model section of its config.yaml)")
        self.net.encoder.load_state_dict(ckpt["model"])
        if "loss" in ckpt and "temperature.log_t" in ckpt["loss"]:
            self.net.loss.temperature.log_t.data.copy_(ckpt["loss"]["temperature.log_t"])

    # The optim keys that shape the schedule a continued run carries on.
    CONTINUED_OPTIM_KEYS = ("lr", "weight_decay", "warmup_frac", "final_lr_frac")

    def continue_from(self, path: str | os.PathLike) -> None:
        """Carries on the run that wrote the epoch checkpoint ``path``, as the original
        work's PURL phase resumes its pretraining's Lightning state: weights,
        temperature, Adam moments and the scheduler's step count. The schedule is
        that of a run of this config's optim.epochs (which count the pretraining's
        epochs too), so the learning rate continues its cosine from that step, with
        no new warm-up. Training goes on from the checkpoint's epoch."""
        ckpt = load_checkpoint(path)
        if ckpt["config"]["model"] != self.config["model"]:
            raise TrainError(f"{path}: a {ckpt['config']['model']['name']} model with {ckpt['config']['model']['args']}, "
                             f"but the config says {self.config['model']} (copy the model section of its config.yaml)")
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
        # A scheduler made at the checkpoint's step: its first step() (in the
        # constructor) sets lr = initial lr * lr_factor(global_step).
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_factor,
                                                           last_epoch=self.global_step - 1)

    def resume_or_init(self) -> str:
        last = self.models_dir / "last.pt"
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

    def save(self, name: str) -> None:
        if self.dist.main:
            save_atomic(self.state(), self.models_dir / name)

    # -- logging ----------------------------------------------------------------

    def open_csv(self, name: str, fields: tuple[str, ...], keep_until: int) -> tuple:
        """Opens exp/<name>.csv for appending, dropping rows past ``keep_until``
        (what a resumed run will write again)."""
        path = self.exp_dir / name
        rows = []
        if path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r[fields[0]]) <= keep_until]
        f = open(path, "w", newline="")
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return f, writer

    # -- training ---------------------------------------------------------------

    def train(self, stop_at_step: int | None = None) -> Path | None:
        """Trains to the end (returns final.pt) or, for tests, until the global step
        ``stop_at_step`` as if killed there (returns None; last.pt is what was saved)."""
        o, t = self.config["optim"], self.config["train"]
        if self.dist.main:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.exp_dir / "config.yaml")
            (self.exp_dir / "environment.json").write_text(json.dumps(environment_summary(), indent=1) + "\n")
        how = self.resume_or_init()
        self.print(f"{how}; {len(self.data)} utterances of {len(self.data.speakers)} speakers, "
                   f"{self.sampler.steps_per_epoch} steps per epoch, {o['epochs']} epochs, "
                   f"{self.dist.world_size} process(es) on {self.dist.device.type}, "
                   f"{sum(p.numel() for p in self.net.encoder.parameters()) / 1e6:.2f}M parameters")
        steps_csv = epochs_csv = None
        if self.dist.main:
            steps_csv = self.open_csv("train.csv", self.CSV_FIELDS, self.global_step)
            epochs_csv = self.open_csv("epochs.csv", ("epoch", "loss", "valid_target_cos", "valid_nontarget_cos", "valid_eer"), self.epoch)
            self.monitor = TrainingMonitor(self.exp_dir, self.global_step)
        try:
            while self.epoch < o["epochs"]:
                if hasattr(self.pair_weights_fn, "refresh"):
                    self.pair_weights_fn.refresh(self)
                if hasattr(self.sampler, "refresh"):
                    self.sampler.refresh(self)
                summary = self.train_epoch(steps_csv, stop_at_step)
                if stop_at_step is not None and self.global_step >= stop_at_step:
                    return None
                self.epoch += 1
                self.step_in_epoch = 0
                self.epoch_losses = []
                if self.validate_fn is not None and self.dist.main:
                    summary.update(self.validate_fn(self.net.encoder))
                    self.net.encoder.train()
                if self.dist.main:
                    epochs_csv[1].writerow({"epoch": self.epoch, **summary})
                    epochs_csv[0].flush()
                    self.monitor.epoch_end(self.global_step, summary)
                    self.print("epoch {}/{}: {}".format(self.epoch, o["epochs"], ", ".join(
                        f"{k} {v:.4f}" for k, v in summary.items())))
                self.save(f"epoch_{self.epoch}.pt")
                self.save("last.pt")
                self.prune_checkpoints()
                self.dist.barrier()
        finally:
            for handle in (steps_csv, epochs_csv):
                if handle is not None:
                    handle[0].close()
            if self.monitor is not None:
                self.monitor.close()
        final = self.models_dir / "final.pt"
        if self.dist.main:
            self.write_final(final)
        self.dist.barrier()
        return final

    def train_epoch(self, steps_csv, stop_at_step: int | None = None) -> dict:
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
            all_utts = self.dist.all_gather(utts, sizes=self.net.gather_sizes) if self.net.gather else utts
            labels = torch.as_tensor(self.data.labels, device=device)[all_utts]
            pair_weights = None
            if self.net.loss.needs_pair_weights:
                pair_weights = self.pair_weights_fn(all_utts.cpu().numpy(), labels.cpu().numpy()).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext():
                loss, figures = self.model(feats, labels, pair_weights)
            if not torch.isfinite(loss):
                raise TrainError(f"loss is {loss.item()} at epoch {self.epoch + 1} step {self.step_in_epoch} "
                                 "(lower optim.lr or raise loss.temperature)")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(self.net.parameters(), o["grad_clip"] if o["grad_clip"] > 0 else float("inf"))
            self.optimizer.step()
            self.scheduler.step()
            self.step_in_epoch += 1
            self.global_step += 1
            losses.append(figures["loss"])
            utts_since += len(feats) * self.dist.world_size
            if self.global_step % t["log_every"] == 0 or self.step_in_epoch == self.sampler.steps_per_epoch:
                elapsed = time.perf_counter() - tic
                row = {**figures, "step": self.global_step, "epoch": self.epoch + self.step_in_epoch / self.sampler.steps_per_epoch,
                       "lr": self.scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                       "utt_per_s": utts_since / max(elapsed, 1e-9)}
                tic, utts_since = time.perf_counter(), 0
                if steps_csv is not None:
                    steps_csv[1].writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
                    steps_csv[0].flush()
                    self.monitor.step(row)
                bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss", "temperature", "lr", "utt_per_s") if k in row}
                                | ({"clean": f"{row['clean_ratio']:.2f}"} if "clean_ratio" in row else {}))
            bar.update(1)
            if t["save_every_steps"] and self.step_in_epoch % t["save_every_steps"] == 0 \
                    and self.step_in_epoch < self.sampler.steps_per_epoch:
                self.save("last.pt")
            if stop_at_step is not None and self.global_step >= stop_at_step:
                break
        bar.close()
        return {"loss": float(np.mean(losses)) if losses else float("nan")}

    def prune_checkpoints(self) -> None:
        keep = max(self.config["train"]["keep_last"], self.config["train"]["average_last"])
        if not self.dist.main or self.config["train"]["keep_last"] <= 0:
            return
        for n in range(1, self.epoch - keep + 1):
            if n not in self.config["train"]["keep_epochs"]:
                (self.models_dir / f"epoch_{n}.pt").unlink(missing_ok=True)

    def write_final(self, final: Path) -> None:
        n = max(1, self.config["train"]["average_last"])
        epochs = [self.models_dir / f"epoch_{e}.pt" for e in range(self.epoch - n + 1, self.epoch + 1)]
        epochs = [p for p in epochs if p.is_file()]
        state = average_checkpoints(epochs)
        save_atomic({"model": state, "config": self.config, "averaged": [p.name for p in epochs]}, final)
        self.print(f"wrote {final} (average of {', '.join(p.name for p in epochs)})")
        plot_training_curves(self.exp_dir)

    def print(self, message: str) -> None:
        if self.dist.main:
            tqdm.write(f"{Path(sys.argv[0]).name}: {message}", file=sys.stdout)

    def close(self) -> None:
        self.model = self.net  # drops the DDP wrapper and its reducer before the process group goes
        self.dist.close()
