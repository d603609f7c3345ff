"""Kaldi's binary formats, read and written with numpy (and kaldiio where it is
fast enough): compressed feature matrices (``copy-feats --compress``), arks of
matrices or vectors with their scp index, and text vectors (``mean.vec``).
Torch-free, so that the steps that plan and merge jobs start quickly."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import kaldiio
import kaldiio.matio
import numpy as np
from kaldiio.compression_header import GlobalHeader, PerColHeader

from purl.data.datadir import DataDirError, gc_paused
from purl.fileio import atomic_path, write_text_atomic

# kaldiio's numbering follows Kaldi's CompressionMethod enum: 2 = kSpeechFeature,
# what Kaldi's automatic method picks for feature matrices of more than 8 rows.
KALDI_SPEECH_FEATURE_COMPRESSION = 2


# Kaldi's CompressedMatrix, kSpeechFeature: each column is quantised piecewise
# linearly between its 0th, 25th, 75th and 100th percentiles into 64, 128 and
# 63 one-byte steps. The tables go with the three pieces.
_PIECE_STEPS = np.array([64.0, 128.0, 63.0], dtype=np.float32)
_PIECE_OFFSET = np.array([0.5, 64.5, 192.5], dtype=np.float32)  # + 0.5: round to nearest
_PIECE_MIN = np.array([0.0, 64.0, 192.0], dtype=np.float32)
_PIECE_MAX = np.array([64.0, 192.0, 255.0], dtype=np.float32)
_BLOCK_VALUES = 1 << 22  # values quantised at a time


def compress_speech_feature(feats: np.ndarray) -> bytes:
    """``feats`` (frames, bins) float32 as a binary Kaldi ``CM`` matrix (kSpeechFeature).

    The same bytes as ``kaldiio.matio.write_array(f, feats, compression_method=2)``
    (tests/test_features.py checks it), about three times as fast: one sort per
    column instead of np.partition (which is ten times slower than a SIMD sort
    here), and each value mapped by its own piece only, not by all three.
    Kaldi's ``copy-feats --compress`` reads it; kaldiio.load_mat decompresses it.
    """
    rows = feats.shape[0]
    if rows < 5:  # Kaldi's special case for tiny matrices: leave it to kaldiio
        buffer = io.BytesIO()
        kaldiio.matio.write_array(buffer, feats, compression_method=KALDI_SPEECH_FEATURE_COMPRESSION)
        return buffer.getvalue()
    header = GlobalHeader.compute(feats, KALDI_SPEECH_FEATURE_COMPRESSION)
    quarter = rows // 4
    percentiles, data = [], []
    # A few columns at a time: each is quantised by its own percentiles, and the
    # temporaries of a 2-hour matrix (720,000 rows) stay about 100 MB, not 2 GB.
    step = max(1, _BLOCK_VALUES // rows)
    for lo in range(0, feats.shape[1], step):
        columns = np.ascontiguousarray(feats[:, lo:lo + step].T)  # Kaldi stores the bytes column by column
        ranked = np.sort(columns, axis=1)[:, [0, quarter, 3 * quarter, rows - 1]]
        # Percentiles on the header's 16-bit grid, strictly increasing (as Kaldi does).
        p0, p25, p75, p100 = header.float_to_uint(ranked).astype(np.int64).T
        p0 = np.minimum(p0, 65532)
        p25 = np.minimum(np.maximum(p25, p0 + 1), 65533)
        p75 = np.minimum(np.maximum(p75, p25 + 1), 65534)
        p100 = np.maximum(p100, p75 + 1)
        p0, p25, p75, p100 = (header.uint_to_float(p)[:, None] for p in (p0, p25, p75, p100))
        percentiles.append((p0, p25, p75, p100))

        piece = (columns >= p75).view(np.uint8) + 1  # 0: below p25, 1: [p25, p75), 2: from p75 on
        piece -= (columns < p25).view(np.uint8)
        index = piece * len(columns) + np.arange(len(columns))[:, None]
        start = np.concatenate([p0, p25, p75]).ravel()
        width = np.concatenate([p25 - p0, p75 - p25, p100 - p75]).ravel()
        # kaldiio's arithmetic, in its order: (x - start) / width * steps + offset, clipped
        values = columns - start.take(index)
        values /= width.take(index)
        values *= _PIECE_STEPS.take(piece)
        values += _PIECE_OFFSET.take(piece)
        np.clip(values, _PIECE_MIN.take(piece), _PIECE_MAX.take(piece), out=values)
        data.append(values.astype(np.uint8).tobytes())

    buffer = io.BytesIO()
    buffer.write(b"\0B")
    header.write(buffer)
    PerColHeader(*(np.concatenate(p) for p in zip(*percentiles))).write(buffer, header)
    for block in data:
        buffer.write(block)
    return buffer.getvalue()


def load_matrix(entry: str) -> np.ndarray:
    """The matrix at ``ark:offset``, as kaldiio.load_mat reads it (the same
    values, as float32); a compressed one (``CM``) is decompressed a few columns
    at a time (``read_compressed``). Other entries (slices, other types) are
    left to kaldiio."""
    match = re.fullmatch(r"(.+):(\d+)", entry.strip())
    if match is None:
        return kaldiio.load_mat(entry)
    with open(match[1], "rb") as f:
        f.seek(int(match[2]))
        feats = read_compressed(f, entry)
    return kaldiio.load_mat(entry) if feats is None else feats


def read_compressed(f, name: str = "") -> np.ndarray | None:
    """The (rows, cols) float32 matrix of a binary file object at a Kaldi
    compressed matrix (``CM``, what compress_speech_feature writes), with
    kaldiio's values, decompressed a few columns at a time: kaldiio's
    temporaries for a 2-hour utterance took 1.3 GB. None (the file object
    moved) when it holds another type."""
    if f.read(5) != b"\0BCM ":
        return None
    header = GlobalHeader.read(f, "CM", "<")
    columns = PerColHeader.read(f, header)
    data = np.frombuffer(f.read(header.rows * header.cols), dtype=np.uint8)
    if len(data) != header.rows * header.cols:
        raise DataDirError(f"{name}: the data ends inside this matrix ({len(data)} of "
                           f"{header.rows * header.cols} bytes); recompute the features (steps/make_fbank.sh)")
    data = data.reshape(header.cols, header.rows)
    out = np.empty((header.cols, header.rows), dtype=np.float32)
    step = max(1, _BLOCK_VALUES // max(1, header.rows))
    for lo in range(0, header.cols, step):
        part = PerColHeader(*(p[lo:lo + step] for p in (columns.p0, columns.p25, columns.p75, columns.p100)))
        out[lo:lo + step] = part.char_to_float(data[lo:lo + step])
    return out.T


class ArkWriter:
    """Writes ``utt`` + binary matrix entries to an ark, Kaldi-compressed
    (kSpeechFeature) or as plain float matrices, and ``utt ark:offset`` lines
    to its scp, naming the ark as ``ark_name`` (the final name when the ark is
    written under a temporary one)."""

    def __init__(self, ark_path: str | os.PathLike, scp_path: str | os.PathLike, ark_name: str | os.PathLike,
                 compress: bool = True):
        self.ark = open(ark_path, "wb")
        self.scp = open(scp_path, "w", encoding="utf-8")
        self.ark_name = str(ark_name)
        self.compress = compress

    def __call__(self, utt: str, feats: np.ndarray) -> None:
        self.ark.write(f"{utt} ".encode())
        self.scp.write(f"{utt} {self.ark_name}:{self.ark.tell()}\n")
        if self.compress:
            self.ark.write(compress_speech_feature(feats))
        else:
            kaldiio.matio.write_array(self.ark, feats)

    def __enter__(self) -> "ArkWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.ark.close()
        self.scp.close()


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
    size = sum(len(utt.encode()) + 1 + len(_FLOAT_VECTOR_HEADER) + 4 + 4 * len(vector) for utt, vector in zip(utts, emb))
    # The ark is renamed first: the scp, renamed last, marks a complete pair.
    with atomic_path(scp) as tmp_scp, atomic_path(ark, size) as tmp_ark:
        with ArkWriter(tmp_ark, tmp_scp, ark, compress=False) as writer:
            for utt, vector in zip(utts, emb):
                writer(utt, vector)
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


def write_vector(path: str | os.PathLike, vector: np.ndarray) -> None:
    """A Kaldi text vector "[ 0.1 0.2 ]" (what :func:`read_vector` reads), atomically."""
    write_text_atomic(path, "[ " + " ".join(f"{v:.7g}" for v in vector) + " ]\n")
