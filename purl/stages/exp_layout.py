"""The layout of a training run's directory: what stages 3 and 5 write, and
what stage 6, the calibration and purl.api read from it.

    exp/<name>/config.yaml          the merged config
    exp/<name>/environment.json     git commit, package versions, host, command
    exp/<name>/data.settings        what the run trains on (labels, features, init checkpoint, pair weights)
    exp/<name>/models/epoch_<N>.pt  the whole state after epoch N (to resume); models/last.pt, the newest
    exp/<name>/models/final.pt      the average of the last train.average_last epochs: what stage 6 scores
    exp/<name>/train.csv            a row per train.log_every steps, TensorBoard event files beside it
    exp/<name>/epochs.csv           per-epoch mean loss and held-out target/non-target cosine and EER
    exp/<name>/train.png            the curves, redrawn at every epoch end
    exp/<name>/reliability/epoch_<N>/  the pair weights re-estimated with the model of epoch N
    exp/<name>/chns/spk2cluster_epoch<N>  CHNS's speaker clusters made with the model of epoch N
    exp/<name>/orgate/utt2rank_epoch<N>   OR-Gate: each utterance's rank of its own label among the
                                    speaker centroids nearest it (1: nearest), with the model of epoch N
    exp/<name>/log/                 the recipe's logs (steps/train.sh)
"""

from __future__ import annotations

import os
from pathlib import Path

from purl.plots import plot_training_curves


class TrainingOutputs:
    """The paths of a training run's files in ``exp_dir`` (see the module docstring)."""

    def __init__(self, exp_dir: str | os.PathLike):
        self.exp_dir = Path(exp_dir)
        self.models_dir = self.exp_dir / "models"
        self.config_yaml = self.exp_dir / "config.yaml"
        self.environment_json = self.exp_dir / "environment.json"
        self.data_settings = self.exp_dir / "data.settings"
        self.last_checkpoint = self.models_dir / "last.pt"
        self.final_checkpoint = self.models_dir / "final.pt"
        # final.pt with what stage 6 scores with (purl/stages/calibrate.py); final.pt itself
        # stays as training left it, since reruns compare it
        self.scoring_checkpoint = self.models_dir / "final_scoring.pt"
        self.steps_csv = self.exp_dir / "train.csv"
        self.epochs_csv = self.exp_dir / "epochs.csv"
        self.curves_png = self.exp_dir / "train.png"
        self.reestimated_weights = self.exp_dir / "reliability"

    @classmethod
    def of_dir(cls, path: str | os.PathLike) -> "TrainingOutputs":
        """The run of an exp dir, or of its models/ dir."""
        path = Path(path)
        parent = cls(path.parent)
        return parent if parent.models_dir == path and not cls(path).models_dir.is_dir() else cls(path)

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.models_dir / f"epoch_{epoch}.pt"

    def reestimated_weights_dir(self, epoch: int) -> Path:
        """The pair weights refitted with the model of ``epoch`` (purl.reestimate_every)."""
        return self.reestimated_weights / f"epoch_{epoch}"

    def chns_clusters(self, epoch: int) -> Path:
        """CHNS's speaker clusters made with the model of ``epoch``."""
        return self.exp_dir / "chns" / f"spk2cluster_epoch{epoch}"

    def orgate_ranks(self, epoch: int) -> Path:
        """OR-Gate's ranks of the own labels with the model of ``epoch`` (orgate.refit_every)."""
        return self.exp_dir / "orgate" / f"utt2rank_epoch{epoch}"

    def plot_curves(self) -> Path:
        return plot_training_curves(self.steps_csv, self.epochs_csv, self.curves_png, title=self.exp_dir.name)

