"""Embedding a data dir and scoring its trials: shared by training (held-out
metrics each epoch), stage 4 (training-set embeddings) and stage 6 (scoring)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from purl.data.datadir import DataDir, DataDirError, read_trials
from purl.data.dataset import feature_dim
from purl.embed import embed_utterances
from purl.features import TOP_DB, feature_type_of
from purl.metrics import eer_and_min_dcf
from purl.scoring import score_trials


def embed_data_dir(model: torch.nn.Module, data_dir: str | os.PathLike, *, device="cpu",
                   num_crops: int = 0, crop_frames: int = 300, on_batch=None,
                   random_crop_seed: int | None = None, normalise: str = "utterance") -> tuple[list[str], np.ndarray]:
    """(utterance ids, (N, D) embeddings) of every utterance with features; with
    ``random_crop_seed``, of one random crop of crop_frames each (num_crops=1).
    ``normalise``: crops normalised over their utterance or over themselves
    (purl.embed.embed_utterances), with the top_db of the dir's feature type."""
    data = DataDir(data_dir)
    for name in ("feats.scp", "utt2num_frames"):
        if not data.has(name):
            raise DataDirError(f"{data.path}/{name}: missing (run stage 1 for this dir)")
    feats, frames = data.table("feats.scp"), data.table("utt2num_frames")
    utts = list(feats)
    if not utts:
        raise DataDirError(f"{data.path}/feats.scp: no utterances")
    check_feature_dim(model, data.path, utts[0], feats[utts[0]])
    emb = embed_utterances(model, [feats[u] for u in utts], [int(frames[u]) for u in utts],
                           device=device, num_crops=num_crops, crop_frames=crop_frames, on_batch=on_batch,
                           utts=utts, random_crop_seed=random_crop_seed, normalise_crops=normalise,
                           top_db=TOP_DB[feature_type_of(data.path)])
    return utts, emb


def check_feature_dim(model: torch.nn.Module, data_dir, utt: str, entry: str) -> None:
    """Stops with the two dimensions when a data dir's features are not what the
    model reads (e.g. Kaldi's 30-dim MFCC for an 80-bin fbank model)."""
    expected = getattr(model, "input_dim", None)
    found = feature_dim(entry, utt)
    if expected is not None and found != expected:
        raise DataDirError(f"{data_dir}/feats.scp: '{utt}' has {found}-dim features, the model reads {expected} "
                           "(recompute them with steps/make_fbank.sh --num-mel-bins "
                           f"{expected}, or set model.args.input_dim: {found})")


def trial_indices(trials_path: str | os.PathLike, utt_index: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(idx1, idx2, is_target) arrays; an utterance without an embedding is an error."""
    trials = read_trials(trials_path)
    idx1, idx2, target = np.empty(len(trials), np.int64), np.empty(len(trials), np.int64), np.empty(len(trials), bool)
    for n, (u1, u2, t) in enumerate(trials):
        for u in (u1, u2):
            if u not in utt_index:
                raise DataDirError(
                    f"{trials_path} line {n + 1}: no embedding for '{u}' (is it in the data dir you embedded? "
                    "run utils/validate_data_dir.py on it, or regenerate the trials)")
        idx1[n], idx2[n], target[n] = utt_index[u1], utt_index[u2], t
    return idx1, idx2, target


def held_out_metrics(model: torch.nn.Module, data_dir: str | os.PathLike, *, device="cpu") -> dict[str, float]:
    """Mean target and non-target cosine and EER on the trials of a held-out dir."""
    utts, emb = embed_data_dir(model, data_dir, device=device)
    idx1, idx2, target = trial_indices(Path(data_dir) / "trials", {u: i for i, u in enumerate(utts)})
    scores = score_trials(emb, idx1, idx2)
    return {
        "valid_target_cos": float(scores[target].mean()),
        "valid_nontarget_cos": float(scores[~target].mean()),
        "valid_eer": float(eer_and_min_dcf(scores, target)["eer"]),
    }
