"""Sets of embeddings on disk: an xvector.scp index (Kaldi float vectors in
arks), the set's mean vector (a Kaldi text vector) and the settings record of
what the set was made from. Kept free of torch so that the steps that plan and
merge extraction jobs start in a tenth of a second."""

from __future__ import annotations

import os
from pathlib import Path

import kaldiio
import numpy as np

from purl.data.datadir import DataDirError, read_kv
from purl.settings import scp_digest

XVECTOR_SETTINGS = "xvector.settings"  # beside xvector.scp: what the embeddings were made from


def embedding_settings(checkpoint_digest: str, feats_scp, *, num_crops: int, crop_frames: int,
                       random_crop_seed: int | None = None) -> dict:
    """The record of an embedding job (or set): model bytes, crops, features."""
    return {"checkpoint": checkpoint_digest, "num_crops": num_crops, "crop_frames": crop_frames,
            "random_crop_seed": random_crop_seed, "feats": scp_digest(feats_scp)}


def load_embeddings(scp: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    scp = Path(scp)
    if not scp.is_file():
        raise DataDirError(f"{scp}: no such embedding index (run steps/extract_embeddings.sh first)")
    entries = read_kv(scp, check_sorted=False)
    if not entries:
        raise DataDirError(f"{scp}: no embeddings")
    command = next((u for u, e in entries.items() if e.endswith("|")), None)
    if command is not None:
        # kaldiio would run it: an embedding index names ark offsets only.
        raise DataDirError(f"{scp}: the entry of '{command}' is a command ({entries[command]}); "
                           "xvector.scp takes ark:offset entries only (rerun steps/extract_embeddings.sh)")
    table = kaldiio.load_scp(str(scp))
    utts = list(table)
    emb = np.stack([np.asarray(table[u], dtype=np.float32) for u in utts])
    bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
    if len(bad):
        raise DataDirError(f"{scp}: the embedding of '{utts[bad[0]]}' is not finite ({len(bad)} such); "
                           "delete the embedding dir and rerun steps/extract_embeddings.sh")
    return utts, emb


def save_embeddings(ark: str | os.PathLike, utts: list[str], emb: np.ndarray) -> Path:
    """Writes Kaldi float vectors to ``ark`` and its index ``ark`` minus .ark plus
    .scp (what kaldiio and Kaldi's copy-vector read), both under temporary
    names until complete. Returns the scp path."""
    ark = Path(ark)
    scp = ark.with_suffix(".scp")
    tmp_ark, tmp_scp = ark.with_name(ark.name + ".tmp"), scp.with_name(scp.name + ".tmp")
    with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
        for utt, vector in zip(utts, emb):
            writer(utt, vector)
    tmp_scp.write_text(tmp_scp.read_text().replace(f"{tmp_ark}:", f"{ark}:"))
    os.replace(tmp_ark, ark)
    os.replace(tmp_scp, scp)
    return scp


def read_vector(path: str | os.PathLike) -> np.ndarray:
    """A Kaldi text vector "[ 0.1 0.2 ]"; DataDirError naming the file when it is not one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise DataDirError(f"{path}: cannot be read as a Kaldi text vector ({e}); rerun steps/extract_embeddings.sh") from e
    if not (text.startswith("[") and text.endswith("]")):
        raise DataDirError(f"{path}: not a Kaldi text vector '[ v1 v2 ... ]'; rerun steps/extract_embeddings.sh")
    try:
        vector = np.array(text[1:-1].split(), dtype=np.float32)
    except ValueError as e:
        raise DataDirError(f"{path}: not a vector of numbers ({e}); rerun steps/extract_embeddings.sh") from e
    if vector.size == 0 or not np.isfinite(vector).all():
        raise DataDirError(f"{path}: {'empty' if vector.size == 0 else 'holds NaN or inf'}; "
                           "rerun steps/extract_embeddings.sh")
    return vector
