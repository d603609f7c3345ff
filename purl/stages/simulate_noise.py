"""Stage 2: the noisy copy of a training data dir: <dst>/{utt2spk, spk2utt,
utt2truespk, the other per-utterance files of <src>} and noise.settings, the
record of what it was made from (kind, rate, seed, the source's labels): a rerun
with the same record is skipped, with another one redone.

Under ``open`` noise the dir also holds the outsiders' utterances that replace
training ones (their lines of wav.scp, feats.scp, ... come from the outsider
dir) and ``outsiders``, the list of them: an utterance whose true speaker in
utt2truespk is no training speaker. Under ``similar`` noise ``nearest_speakers``
lists each speaker's k nearest speakers, the swaps' destinations. Under
``merge`` noise the absorbed speakers have no label of their own, so the
reports count their utterances with the outsiders (a true speaker that is no
training speaker); under ``split`` noise the new labels ``<speaker>-split``
are no true speaker.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import kaldiio
import numpy as np

from purl.data.datadir import UTT_FILES, DataDir, DataDirError, utt2spk_to_spk2utt, write_kv
from purl.fileio import atomic_path
from purl.kaldi_io import load_embeddings
from purl.label_noise import (
    NOISE_TYPES,
    NoiseError,
    merge_speakers,
    nearest_speakers,
    relabel,
    relabel_similar,
    replace_with_outsiders,
    split_speakers,
)
from purl.locks import locked_dir
from purl.records import text_digest, up_to_date, write_record
from purl.stages.fbank import STALE_SUFFIX, move_features_aside, record_derived_features

SETTINGS = "noise.settings"  # in the noisy dir, written last
OUTSIDERS = "outsiders"      # open noise: the outsider utterances filed under training speakers
NEAREST = "nearest_speakers"  # similar noise: speaker and its k nearest, nearest first
# Speaker vectors from fbank statistics read at most this many utterances per
# speaker: at VoxCeleb size reading every utterance's features would take an hour.
FBANK_UTTS_PER_SPEAKER = 20


def fbank_speaker_vectors(data: DataDir, max_utts: int = FBANK_UTTS_PER_SPEAKER) -> dict[str, np.ndarray]:
    """Per speaker of ``data`` (its labels): the mean over up to ``max_utts`` of
    its utterances (the first in sorted order) of each utterance's per-bin fbank
    mean and standard deviation (160 numbers: the long-term spectrum and its
    spread, what a listener's "sounds alike" rests on without a model)."""
    if not data.has("feats.scp"):
        raise DataDirError(f"{data.path}/feats.scp: missing; similar noise measures speakers from stage 1's "
                           "features (run stage 1 first) or from --reference-embeddings")
    feats = data.table("feats.scp")
    vectors = {}
    for spk, utts in data.spk2utt.items():
        stats = [np.concatenate([m.mean(axis=0), m.std(axis=0)])
                 for m in (kaldiio.load_mat(feats[u]).astype(np.float64) for u in utts[:max_utts])]
        vectors[spk] = np.mean(stats, axis=0)
    return vectors


def embedding_speaker_vectors(xvector_scp: str | os.PathLike, utt2spk: dict[str, str]) -> dict[str, np.ndarray]:
    """Per speaker: the mean of a reference model's length-normalised embeddings."""
    utts, emb = load_embeddings(xvector_scp)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    by_speaker: dict[str, list[np.ndarray]] = {}
    for u, e in zip(utts, emb):
        if u in utt2spk:
            by_speaker.setdefault(utt2spk[u], []).append(e)
    return {s: np.mean(v, axis=0) for s, v in by_speaker.items()}


def make_noisy_data_dir(src: str | os.PathLike, dst: str | os.PathLike, rate: float, seed: int, *,
                        noise_type: str = "permute", nearest_k: int = 5,
                        outsiders: str | os.PathLike | None = None,
                        reference_embeddings: str | os.PathLike | None = None) -> dict[str, int]:
    """A copy of ``src`` with noisy labels, and the truth in utt2truespk.

    Utterance ids keep their true speaker prefix (they name files, and the truth
    must stay recoverable), so the noisy dir is the one place where an id need not
    start with its (noisy) speaker; validate_data_dir accepts it because of
    utt2truespk.
    """
    data = DataDir(src)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    # A redo starts by removing what marks the dir complete, and the lists of another kind.
    for name in (SETTINGS, "utt2spk", OUTSIDERS, NEAREST):
        (dst / name).unlink(missing_ok=True)
    truth = dict(data.utt2spk)
    extra: dict[str, object] = {}
    if noise_type == "permute":
        noisy = relabel(truth, rate, seed)
    elif noise_type == "similar":
        vectors = (embedding_speaker_vectors(reference_embeddings, truth) if reference_embeddings
                   else fbank_speaker_vectors(data))
        noisy = relabel_similar(truth, rate, seed, vectors, nearest_k)
        extra[NEAREST] = nearest_speakers(vectors, nearest_k)
    elif noise_type == "open":
        if outsiders is None:
            raise NoiseError("open noise needs the outsiders' data dir (--outsiders; stage 0 holds it out)")
        outsider_dir = DataDir(outsiders)
        noisy, outsider_truth = replace_with_outsiders(truth, rate, seed, outsider_dir.utt2spk)
        truth = {u: truth[u] for u in noisy if u in truth} | outsider_truth
        extra[OUTSIDERS] = {u: outsider_truth[u] for u in outsider_truth}
    elif noise_type == "merge":
        noisy = merge_speakers(truth, rate, seed)
    elif noise_type == "split":
        noisy = split_speakers(truth, rate, seed)
    else:
        raise NoiseError(f"noise type '{noise_type}' is not one of {', '.join(NOISE_TYPES)}")

    if noise_type != "open":
        for name in UTT_FILES:
            if data.has(name) and name not in ("utt2spk", "utt2truespk"):
                # The same lines: copied, not parsed and rewritten.
                with atomic_path(dst / name) as tmp:
                    shutil.copyfile(data.path / name, tmp)
    else:
        for name in UTT_FILES:
            if name in ("utt2spk", "utt2truespk") or not data.has(name):
                continue
            if not outsider_dir.has(name):
                raise DataDirError(f"{outsider_dir.path}/{name}: missing, but {data.path} has it (the outsiders need "
                                   "the same stages as the training dir: run stage 1 on it)")
            ours, theirs = data.table(name), outsider_dir.table(name)
            write_kv(dst / name, {u: ours[u] if u in ours else theirs[u] for u in noisy})
    for name, table in extra.items():
        write_kv(dst / name, table)
    write_kv(dst / "utt2truespk", truth)
    write_kv(dst / "spk2utt", utt2spk_to_spk2utt(noisy))
    write_kv(dst / "utt2spk", noisy)
    changed = sum(noisy[u] != truth[u] for u in noisy)
    return {"utterances": len(noisy), "relabelled": changed}


def noise_settings(src: str | os.PathLike, rate: float, seed: int, *, noise_type: str = "permute",
                   nearest_k: int = 5, outsiders: str | os.PathLike | None = None,
                   reference_embeddings: str | os.PathLike | None = None) -> dict:
    """What a noisy dir is made from (purl.records): the kind, rate, seed, the
    source's per-utterance files and what the kind reads. A ``permute`` record is
    the one written before there were kinds, so its dirs are not redone."""
    src = Path(src)
    record = {"rate": rate, "seed": seed,
              **{name: text_digest(src / name) for name in UTT_FILES if (src / name).is_file()}}
    if noise_type == "similar":
        record.update(noise_type=noise_type, nearest_k=nearest_k,
                      speaker_vectors=text_digest(reference_embeddings) if reference_embeddings else "fbank")
    elif noise_type == "open":
        outsiders = Path(outsiders) if outsiders is not None else None
        record.update(noise_type=noise_type, outsiders={
            name: text_digest(outsiders / name) for name in UTT_FILES if outsiders and (outsiders / name).is_file()})
    elif noise_type in ("merge", "split"):
        record.update(noise_type=noise_type)
    elif noise_type != "permute":
        raise NoiseError(f"noise type '{noise_type}' is not one of {', '.join(NOISE_TYPES)}")
    return record


def run_noise(src: str | os.PathLike, dst: str | os.PathLike, rate: float, seed: int, **kind) -> dict[str, int] | None:
    """Stage 2 with its skip check: make_noisy_data_dir's summary, or None when
    ``dst`` was made from the same settings. ``kind``: make_noisy_data_dir's
    keyword options (noise_type, nearest_k, outsiders, reference_embeddings)."""
    dst = Path(dst)
    record = noise_settings(src, rate, seed, **kind)
    with locked_dir(dst):
        return _run_noise(src, dst, rate, seed, record, **kind)


def _run_noise(src, dst: Path, rate: float, seed: int, record: dict, **kind) -> dict[str, int] | None:
    if up_to_date(dst / SETTINGS, record, dst, complete=(dst / "utt2spk").is_file()):
        return None
    # Before anything is written: a kill from here on leaves a dir that no
    # stage takes as complete (utt2spk is written last, the records after it).
    move_features_aside(dst)
    if (dst / "utt2spk").is_file():
        os.replace(dst / "utt2spk", dst / f"utt2spk{STALE_SUFFIX}")
    summary = make_noisy_data_dir(src, dst, rate, seed, **kind)
    sources = [src] + ([kind["outsiders"]] if kind.get("noise_type") == "open" else [])
    record_derived_features(dst, *sources, user="simulate_noise")
    write_record(dst / SETTINGS, record)
    return summary
