"""Watching a training run: the CSV rows, TensorBoard event files beside them,
the curves redrawn at every epoch end, progress that suits where stdout goes,
and the environment a reader needs to reproduce the run.

``tensorboard --logdir exp`` shows every run under exp/ by name: the scalars of
the per-step rows under ``train/`` (x: the global step) and the per-epoch metrics
(mean loss, held-out cosines and EER) under ``epoch/`` (x: the global step at the
epoch's end).
"""

from __future__ import annotations

import csv
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

# The columns of the per-step CSV (a row every train.log_every steps);
# wall_time: unix seconds when the row was written.
STEP_FIELDS = ("step", "epoch", "lr", "loss", "supcon", "unlearn", "temperature",
               "grad_norm", "n_clean", "n_noisy", "clean_ratio", "utt_per_s", "wall_time")
# orgate_*: the utterances OR-Gate selected for the epoch, and how many of them are mislabelled (utt2truespk)
EPOCH_FIELDS = ("epoch", "loss", "valid_target_cos", "valid_nontarget_cos", "valid_eer",
                "orgate_selected", "orgate_mislabelled")


class CsvLog:
    """A CSV file opened for appending rows, keeping the earlier rows whose first
    column is at most ``keep_until`` and dropping the rest (what a resumed run
    will write again). ``float_format`` formats float values (None: as they are)."""

    def __init__(self, path: str | os.PathLike, fields: tuple[str, ...], keep_until: int,
                 float_format: str | None = None):
        path = Path(path)
        rows = []
        if path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r[fields[0]]) <= keep_until]
        self.float_format = float_format
        self.file = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=fields, extrasaction="ignore")
        self.writer.writeheader()
        self.writer.writerows(rows)

    def write(self, row: dict) -> None:
        if self.float_format is not None:
            row = {k: (format(v, self.float_format) if isinstance(v, float) else v) for k, v in row.items()}
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TrainingMonitor:
    """Process 0's live outputs of a run in ``exp_dir``. A run resumed at
    ``global_step`` drops the events an interrupted run logged after it, as
    train.csv drops its rows."""

    def __init__(self, exp_dir: str | os.PathLike, global_step: int = 0, plot: Callable[[], object] | None = None):
        """``plot``: redraws the run's curves (the stage's TrainingOutputs.plot_curves), at each epoch end."""
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.exp_dir = Path(exp_dir)
        self.plot = plot
        # TensorBoard reads a run's event files in name order, and a name starts
        # with the second it was made (then host, pid and a counter, compared as
        # text): a file made in the same second as an earlier one can sort before
        # it, and the resumed steps' purge then applies to the wrong file. So a
        # new file waits for a second after the newest one's.
        seconds = [int(p.name.split(".")[3]) for p in self.exp_dir.glob("events.out.tfevents.*")
                   if p.name.split(".")[3].isdigit()]
        while seconds and time.time() < max(seconds) + 1:
            time.sleep(0.05)
        self.writer = SummaryWriter(log_dir=str(self.exp_dir), purge_step=global_step + 1 if global_step else None)

    def step(self, row: dict) -> None:
        """One train.csv row: every finite number but the step and epoch counters."""
        for key, value in row.items():
            if key not in ("step", "epoch", "wall_time") and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"train/{key}", value, row["step"])

    def epoch_end(self, global_step: int, metrics: dict) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"epoch/{key}", value, global_step)
        self.writer.flush()
        if self.plot is not None:
            self.plot()

    def close(self) -> None:
        self.writer.close()


class LineProgress:
    """tqdm's interface for a log file: a plain line every ``every`` steps and
    at the end, never a carriage-return frame."""

    def __init__(self, total: int, initial: int, desc: str, every: int, file=None):
        self.total, self.n, self.desc, self.every = total, initial, desc, max(1, every)
        self.file = file if file is not None else sys.stdout
        self.postfix: dict[str, str] = {}
        self.start, self.start_n = time.perf_counter(), initial

    def set_postfix(self, postfix: dict) -> None:
        self.postfix = {k: str(v) for k, v in postfix.items()}

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n % self.every == 0 or self.n == self.total:
            self.print_line()

    def print_line(self) -> None:
        elapsed = time.perf_counter() - self.start
        rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0
        left = f", {(self.total - self.n) / rate:.0f} s left" if rate > 0 and self.n < self.total else ""
        metrics = "".join(f", {k} {v}" for k, v in self.postfix.items())
        print(f"{self.desc}: step {self.n}/{self.total} ({rate:.2f} step/s{left}){metrics}", file=self.file, flush=True)

    def close(self) -> None:
        pass


def progress(total: int, initial: int, desc: str, *, enabled: bool, every: int, file=None):
    """A tqdm bar on a terminal; LineProgress when stdout is a file or pipe."""
    file = file if file is not None else sys.stdout
    if enabled and not file.isatty():
        return LineProgress(total, initial, desc, every, file)
    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="step", dynamic_ncols=True,
                file=file)


def environment_summary() -> dict:
    """What a reader needs to reproduce a run: commit, versions, machine."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    import numpy  # for their versions only
    import sklearn
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
