"""The reliability directory (stage 4's output, read by stage 5): its file names
and format, written and read here only.

    embeddings.npy    (N, D) float32, the L2-normalised embeddings, rows as ``utts``
    gmm.npz           the labels, the speakers and the GmmParams arrays
    reliability.json  format version, estimator, settings, sizes; written last:
                      its presence marks a complete directory
    utts              the utterance ids of the embeddings' rows, one per line
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from purl.fileio import write_atomic
from purl.reliability.gmm import GmmParams
from purl.reliability.settings import ReliabilityError, ReliabilitySettings

FORMAT_VERSION = 1
EMBEDDINGS_FILE = "embeddings.npy"
PARAMS_FILE = "gmm.npz"
META_FILE = "reliability.json"  # written last: its presence marks a complete directory
# Here, not in purl.pair_weights, so that stage 4 runs without importing torch.
UTTS_FILE = "utts"
NPY_HEADER = 128  # bytes before a 2-D float32 array's data in an .npy file


def save(rel, directory: str | os.PathLike) -> None:
    """Writes embeddings.npy, gmm.npz and (last) reliability.json of a
    :class:`~purl.reliability.reliability.Reliability`, each atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    embeddings = np.asarray(rel.embeddings, np.float32)
    write_atomic(directory / EMBEDDINGS_FILE, lambda f: np.save(f, embeddings), size=embeddings.nbytes + NPY_HEADER)
    arrays = {f.name: getattr(rel.params, f.name) for f in dataclasses.fields(rel.params)}
    write_atomic(directory / PARAMS_FILE, lambda f: np.savez(f, labels=rel.labels, speakers=rel.index.speakers, **arrays))
    meta = {
        "format": FORMAT_VERSION,
        "estimator": rel.estimator,
        "settings": dataclasses.asdict(rel.settings),
        "n_utts": int(len(rel.labels)),
        "n_speakers": int(len(rel.index)),
        "dim": int(rel.embeddings.shape[1]),
        "n_pairs": int(rel.params.n_pairs.sum()),
        "n_speakers_w1": int(rel.params.unit.sum()),
        "n_speakers_fit_failed": int(rel.params.failed.sum()),
    }
    write_atomic(directory / META_FILE, lambda f: f.write(json.dumps(meta, indent=2).encode() + b"\n"))


def is_saved(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a complete saved fit (its last file written)."""
    return (Path(directory) / META_FILE).is_file()


def load(directory: str | os.PathLike, *, mmap: bool = True):
    """(embeddings, labels, params, estimator, settings) of a directory written by
    :func:`save`: the arguments of the Reliability constructor."""
    directory = Path(directory)
    if not (directory / META_FILE).is_file():
        raise FileNotFoundError(f"reliability: {directory / META_FILE} missing; rerun stage 4")
    meta = json.loads((directory / META_FILE).read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ReliabilityError(f"reliability: {directory / META_FILE} has format {meta.get('format')}, "
                               f"expected {FORMAT_VERSION}; rerun stage 4")
    embeddings = np.load(directory / EMBEDDINGS_FILE, mmap_mode="r" if mmap else None)
    with np.load(directory / PARAMS_FILE, allow_pickle=False) as z:
        labels = z["labels"]
        arrays = {name: z[name] for name in z.files}
        # "failed" came later: a fit saved before it had no failed speakers.
        arrays.setdefault("failed", np.zeros(len(arrays["clean"]), bool))
        params = GmmParams(**{f.name: arrays[f.name] for f in dataclasses.fields(GmmParams)})
    if embeddings.shape != (meta["n_utts"], meta["dim"]) or len(labels) != meta["n_utts"]:
        raise ReliabilityError(f"reliability: files in {directory} disagree with {META_FILE}; rerun stage 4")
    return embeddings, labels, params, meta["estimator"], ReliabilitySettings.from_dict(meta["settings"])
