"""Sets of embeddings on disk: an xvector.scp index (Kaldi float vectors in
arks), the set's mean vector (a Kaldi text vector) and the settings record of
what the set was made from. Kept free of torch so that the steps that plan and
merge extraction jobs start in a tenth of a second."""

from __future__ import annotations

import os
from pathlib import Path

import kaldiio
import numpy as np

from purl.data.datadir import DataDirError, gc_paused, read_kv
from purl.settings import scp_digest

XVECTOR_SETTINGS = "xvector.settings"  # beside xvector.scp: what the embeddings were made from


def embedding_settings(checkpoint_digest: str, feats_scp, *, num_crops: int, crop_frames: int,
                       random_crop_seed: int | None = None) -> dict:
    """The record of an embedding job (or set): model bytes, crops, features."""
    return {"checkpoint": checkpoint_digest, "num_crops": num_crops, "crop_frames": crop_frames,
            "random_crop_seed": random_crop_seed, "feats": scp_digest(feats_scp)}


def load_embeddings(scp: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """(utterance ids in scp order, (N, D) float32) of an xvector.scp; every
    entry an ark offset (never a command) and every embedding finite."""
    scp = Path(scp)
    if not scp.is_file():
        raise DataDirError(f"{scp}: no such embedding index (run steps/extract_embeddings.sh first)")
    utts, emb = _read_float_vectors(scp)
    bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
    if len(bad):
        raise DataDirError(f"{scp}: the embedding of '{utts[bad[0]]}' is not finite ({len(bad)} such); "
                           "delete the embedding dir and rerun steps/extract_embeddings.sh")
    return utts, emb


# A binary Kaldi float vector: "\0B" "FV " then the size as a 4-byte int ("\4" first).
_FLOAT_VECTOR_HEADER = b"\0BFV \4"


def _read_float_vectors(scp: Path) -> tuple[list[str], np.ndarray]:
    """(utterance ids in scp order, (N, D) float32) of an xvector.scp.

    Each ark is read once and the binary float vectors are gathered from it
    with numpy, not opened per entry (kaldiio's reader costs some 35 us per
    entry: 40 s for VoxCeleb2). Entries in any other form (double vectors,
    text arks) are read through kaldiio.
    """
    with open(scp, encoding="utf-8") as f:
        lines = f.read().splitlines()
    with gc_paused():
        rows = [line.split() for line in lines]
        locations = [(row[-1] if row else "").rpartition(":") for row in rows]
    bad = next((n for n, (row, (_, sep, offset)) in enumerate(zip(rows, locations))
                if len(row) != 2 or not sep or not offset.isdigit()), None)
    if bad is not None:
        if lines[bad].rstrip().endswith("|"):  # kaldiio would run it
            raise DataDirError(f"{scp} line {bad + 1}: the entry of '{rows[bad][0]}' is a command "
                               f"({lines[bad].split(None, 1)[1].strip()}); xvector.scp takes ark:offset entries only "
                               "(rerun steps/extract_embeddings.sh)")
        raise DataDirError(f"{scp} line {bad + 1}: expected 'utt ark-path:offset', got '{lines[bad].strip()}' "
                           "(rerun steps/extract_embeddings.sh)")
    if not rows:
        raise DataDirError(f"{scp}: no embeddings")
    utts = [row[0] for row in rows]
    ark_index: dict[str, int] = {}
    ark_of = np.array([ark_index.setdefault(ark, len(ark_index)) for ark, _, _ in locations])
    offsets = [int(offset) for _, _, offset in locations]
    offsets_arr = np.array(offsets, dtype=np.int64)
    del lines, rows, locations
    emb: np.ndarray | None = None

    def put(rows: np.ndarray, vectors: np.ndarray) -> None:
        nonlocal emb
        if emb is None:
            emb = np.empty((len(utts), vectors.shape[1]), dtype=np.float32)
        if vectors.shape[1] != emb.shape[1]:
            raise DataDirError(f"{scp}: embeddings of dimension {emb.shape[1]} and {vectors.shape[1]} (mixed models?)")
        emb[rows] = vectors

    header = len(_FLOAT_VECTOR_HEADER) + 4
    for ark, n in ark_index.items():
        rows = np.flatnonzero(ark_of == n)
        try:
            data = np.fromfile(ark, dtype=np.uint8)
        except OSError as e:
            raise DataDirError(f"{scp}: cannot read {ark}: {e} (rerun steps/extract_embeddings.sh)") from e
        starts = offsets_arr[rows]
        inside = starts + header <= len(data)
        head = data[np.where(inside, starts, 0)[:, None] + np.arange(header)]
        fast = inside & (head[:, :header - 4] == np.frombuffer(_FLOAT_VECTOR_HEADER, np.uint8)).all(axis=1)
        dims = np.ascontiguousarray(head[:, header - 4:]).view("<i4").ravel()
        for dim in np.unique(dims[fast]):
            take = np.flatnonzero(fast & (dims == dim))
            if starts[take].max() + header + 4 * dim > len(data):
                raise DataDirError(f"{scp}: {ark} ends inside an embedding (rerun steps/extract_embeddings.sh)")
            body = starts[take] + header
            for align in range(4):  # the ark as floats from each byte alignment
                floats = np.frombuffer(data, "<f4", count=(len(data) - align) // 4, offset=align)
                here = np.flatnonzero(body % 4 == align)
                for chunk in np.array_split(here, len(here) // 16384 + 1):  # bounds the index array
                    put(rows[take[chunk]], floats[(body[chunk] // 4)[:, None] + np.arange(int(dim))])
        for r in rows[~fast]:
            put(np.array([r]), np.asarray(kaldiio.load_mat(f"{ark}:{offsets[r]}"), dtype=np.float32).reshape(1, -1))
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
