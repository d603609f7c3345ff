"""Speaker embeddings of whole utterances (or of averaged fixed-length crops).

Batches hold utterances of exactly the same number of frames (or crops, which
all have the same length), so a batch computes what each utterance alone would:
no padding ever reaches a convolution or a pooling layer.

An utterance longer than ``LONG_FRAMES`` (10 minutes) is embedded in windows
of that length, evenly spaced from its first frame to its last and
overlapping by at least ``WINDOW_OVERLAP`` frames (3 s); its embedding is the plain
mean of the windows' embeddings, as ``num_crops`` averages its crops. The
encoder's attentive statistics pooling sees one window at a time, so this is
not the whole-utterance embedding, but the encoder's memory stays that of a
10-minute utterance: a 2-hour file through the mini recipe's encoder in one
pass took 5.5 GB. Shorter utterances go through whole, as before.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from typing import Callable, Sequence

import numpy as np
import torch

from purl.data.dataset import check_normalise, load_features, normalise, read_features

LONG_FRAMES = 60000    # frames (10 min): longer utterances are embedded in windows of this length
WINDOW_OVERLAP = 300   # frames (3 s) that consecutive windows share at least


def crop_starts(num_frames: int, crop_frames: int, num_crops: int) -> list[int]:
    """Evenly spaced crop starts covering the utterance (deterministic)."""
    if num_frames <= crop_frames:
        return [0] * num_crops
    return np.linspace(0, num_frames - crop_frames, num_crops).round().astype(int).tolist()


def random_crop_start(key: str, num_frames: int, crop_frames: int, seed: int) -> int:
    """A uniformly random crop start, drawn from the utterance id and the seed: the
    same crop whichever job or batch embeds the utterance."""
    if num_frames <= crop_frames:
        return 0
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    return int(rng.integers(0, num_frames - crop_frames + 1))


def window_starts(num_frames: int, window_frames: int, overlap: int | None = None) -> list[int]:
    """Starts of the fewest windows of ``window_frames``, evenly spaced over
    ``num_frames``, that cover it with consecutive windows sharing at least
    ``overlap`` frames (default: WINDOW_OVERLAP, or a tenth of a shorter
    window); one window when it fits."""
    if num_frames <= window_frames:
        return [0]
    if overlap is None:
        overlap = min(WINDOW_OVERLAP, window_frames // 10)
    step = max(1, window_frames - overlap)
    return crop_starts(num_frames, window_frames, -(-(num_frames - window_frames) // step) + 1)


@torch.no_grad()
def embed_long(model: torch.nn.Module, feats: np.ndarray, *, max_frames: int = LONG_FRAMES,
               max_batch_frames: int = 60000, device: torch.device | str = "cpu", amp: bool = False) -> torch.Tensor:
    """(embed_dim,) float32 of a (frames, bins) normalised matrix longer than
    ``max_frames``: the mean of its windows' embeddings (``window_starts``),
    at most ``max_batch_frames`` frames (and one window) per pass."""
    device = torch.device(device)
    starts = window_starts(len(feats), max_frames)
    per_pass = max(1, max_batch_frames // max_frames)
    total = None
    for lo in range(0, len(starts), per_pass):
        x = torch.from_numpy(np.stack([feats[s:s + max_frames] for s in starts[lo:lo + per_pass]])).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            emb = model(x).float().sum(0)
        total = emb if total is None else total + emb
    return total / len(starts)


def _at_least(feats: np.ndarray, frames: int) -> np.ndarray:
    if len(feats) < frames:  # a short utterance is repeated to length, as in training
        feats = np.tile(feats, (frames // len(feats) + 1, 1))
    return feats


@torch.no_grad()
def embed_utterances(
    model: torch.nn.Module,
    feats_entries: Sequence[str],
    num_frames: Sequence[int],
    *,
    device: torch.device | str = "cpu",
    max_batch_frames: int = 60000,
    num_crops: int = 0,
    crop_frames: int = 300,
    amp: bool = False,
    on_batch: Callable[[int], None] | None = None,
    utts: Sequence[str] | None = None,
    random_crop_seed: int | None = None,
    max_frames: int = LONG_FRAMES,
    normalise_crops: str = "utterance",
    top_db: float | None = None,
) -> np.ndarray:
    """Embeds every utterance; returns (N, embed_dim) float32 in the input order.

    ``num_crops=0`` embeds the whole utterance; otherwise the mean of num_crops
    crops of crop_frames, evenly spaced, or with ``random_crop_seed`` one crop at
    a random start drawn from the utterance id (``utts``) and that seed: the
    original work's stage-4 input (one random 3 s crop per utterance).
    Inputs are normalised (purl.data.dataset.normalise, with the features'
    ``top_db``, purl.features.TOP_DB) over the whole utterance, and crops cut
    from it, or with ``normalise_crops="crop"`` each crop over itself (the
    original work's). ``max_batch_frames`` bounds a batch's size in frames; a whole utterance
    longer than ``max_frames`` is embedded alone, in windows (``embed_long``).
    ``on_batch(n)`` is
    called with the number of utterances finished. ``utts`` (the ids, for
    messages): a non-finite feature or embedding stops with a ValueError naming
    the utterance.
    """
    if random_crop_seed is not None and (num_crops != 1 or utts is None):
        raise ValueError(f"embed_utterances: a random crop is one crop per utterance (num_crops=1, not {num_crops}), "
                         "drawn from the utterance ids (utts)")
    check_normalise(normalise_crops, "normalise_crops")
    names = list(utts) if utts is not None else [f"utterance {i}" for i in range(len(feats_entries))]
    model.eval()
    device = torch.device(device)
    out: np.ndarray | None = None
    # Group utterances by the length of what the model sees.
    groups: dict[int, list[int]] = defaultdict(list)
    long = []
    for i, n in enumerate(num_frames):
        if not num_crops and n > max_frames:
            long.append(i)
        else:
            groups[crop_frames if num_crops else int(n)].append(i)
    for length in sorted(groups, reverse=True):
        members = groups[length]
        per_batch = max(1, max_batch_frames // (length * max(1, num_crops)))
        for lo in range(0, len(members), per_batch):
            batch = members[lo:lo + per_batch]
            chunks = []
            for i in batch:
                if num_crops and normalise_crops == "crop":
                    feats = read_features(feats_entries[i], names[i])
                else:
                    feats = load_features(feats_entries[i], names[i], top_db)
                if num_crops:
                    feats = _at_least(feats, crop_frames)
                    if random_crop_seed is not None:
                        starts = [random_crop_start(names[i], len(feats), crop_frames, random_crop_seed)]
                    else:
                        starts = crop_starts(int(num_frames[i]), crop_frames, num_crops)
                    crops = (feats[s:s + crop_frames] for s in starts)
                    chunks.extend(normalise(c, top_db) if normalise_crops == "crop" else c for c in crops)
                else:
                    chunks.append(feats)
            x = torch.from_numpy(np.stack(chunks)).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
                emb = model(x).float()
            if num_crops:
                emb = emb.view(len(batch), num_crops, -1).mean(1)
            emb = emb.cpu().numpy()
            bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
            if len(bad):
                raise ValueError(f"embedding of '{names[batch[bad[0]]]}' is not finite ({len(bad)} in its batch); "
                                 "the model's weights may hold NaN (check its training log)")
            if out is None:
                out = np.empty((len(feats_entries), emb.shape[1]), dtype=np.float32)
            out[batch] = emb
            if on_batch is not None:
                on_batch(len(batch))
    for i in long:
        emb = embed_long(model, load_features(feats_entries[i], names[i], top_db), max_frames=max_frames,
                         max_batch_frames=max_batch_frames, device=device, amp=amp).cpu().numpy()
        if not np.isfinite(emb).all():
            raise ValueError(f"embedding of '{names[i]}' is not finite; the model's weights may hold NaN "
                             "(check its training log)")
        if out is None:
            out = np.empty((len(feats_entries), len(emb)), dtype=np.float32)
        out[i] = emb
        if on_batch is not None:
            on_batch(1)
    if out is None:
        raise ValueError("embed_utterances: no utterances to embed")
    return out
