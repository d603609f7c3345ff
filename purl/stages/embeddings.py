"""Embedding extraction's layout and its job plan and merge
(steps/extract_embeddings.sh): ``<out-dir>/xvector.<n>.{ark,scp,settings}`` per
job, then ``xvector.scp``, ``mean.vec`` and ``xvector.settings`` (what the set was
made from) merged, ``xvector.scp`` last; and CN-Celeb's averaged enrollment
models (``models.{ark,scp}`` with a combined ``xvector.scp``). A job or a set
whose settings record equals the one it would write now is skipped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from purl.data.datadir import DataDirError, read_kv, sort_key, split_data_dir, validate_data_dir, write_kv
from purl.data.dataset import NORMALISE
from purl.errors import UsageError
from purl.features import check_model_features
from purl.fileio import atomic_path, write_text_atomic
from purl.kaldi_io import ArkWriter, load_embeddings, write_vector
from purl.records import differences, matches, read_record, scp_digest, text_digest, up_to_date, write_record
from purl.scoring import speaker_means
from purl.stages.fbank import check_features, record_split_features
from purl.training.checkpoint import checkpoint_feature_type, load_checkpoint

log = logging.getLogger(__name__)

XVECTOR_SETTINGS = "xvector.settings"  # beside xvector.scp: what the embeddings were made from
XVECTOR_SCP = "xvector.scp"
MEAN_VEC = "mean.vec"                  # the set's mean (Kaldi text vector): what scoring subtracts
AVERAGE_SETTINGS = "average.settings"  # beside an averaged set's xvector.scp


def embedding_settings(checkpoint_digest: str, feats_scp, *, num_crops: int, crop_frames: int,
                       random_crop_seed: int | None = None, normalise: str = "utterance") -> dict:
    """The record of an embedding job (or set): model bytes, crops, features.
    ``normalise`` is recorded when it is crop (records made before it still hold)."""
    crop_norm = {"normalise": normalise} if normalise != "utterance" else {}
    return {"checkpoint": checkpoint_digest, "num_crops": num_crops, "crop_frames": crop_frames,
            "random_crop_seed": random_crop_seed, **crop_norm, "feats": scp_digest(feats_scp)}


def add_embedding_options(parser) -> None:
    """The crop options that the plan, the jobs and the merge share (argparse)."""
    parser.add_argument("--num-crops", type=int, default=0)
    parser.add_argument("--crop-frames", type=int, default=300)
    parser.add_argument("--random-crop-seed", type=int, default=None,
                        help="one random crop per utterance (with --num-crops 1)")
    parser.add_argument("--normalise", choices=NORMALISE, default="utterance",
                        help="crops normalised over their utterance, or each over itself (the original's stage 4)")


def embedding_options_of(args) -> dict:
    return {"num_crops": args.num_crops, "crop_frames": args.crop_frames, "random_crop_seed": args.random_crop_seed,
            "normalise": args.normalise}


def checkpoint_for_data(checkpoint: str | os.PathLike, data_dir: str | os.PathLike) -> dict:
    """The checkpoint, loaded, when its model was trained on the type of features
    ``data_dir`` holds (a FeatureError naming both when not)."""
    ckpt = load_checkpoint(checkpoint)
    check_model_features(checkpoint_feature_type(ckpt), checkpoint, data_dir)
    return ckpt


def plan_embedding_jobs(checkpoint: str | os.PathLike, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                        nj: int, options: dict) -> dict:
    """What extraction has left to do: {nj, status: complete|todo, todo: the job
    numbers whose record differs, space-separated}. ``options``: num_crops,
    crop_frames, random_crop_seed."""
    if nj < 1 or options["num_crops"] < 0 or options["crop_frames"] < 1:
        raise UsageError(f"--nj {nj}, --num-crops {options['num_crops']}, --crop-frames {options['crop_frames']}: "
                         "need nj >= 1, num-crops >= 0 (0: whole utterances), crop-frames >= 1")
    if not Path(checkpoint).is_file():
        raise UsageError(f"{checkpoint}: no such checkpoint (train the model first)")
    data = Path(data_dir)
    check_features(data, "extract_embeddings")
    data = validate_data_dir(data, require=("utt2spk", "feats.scp", "utt2num_frames"))
    checkpoint_for_data(checkpoint, data.path)
    out = Path(out_dir)
    nj = min(nj, len(data))
    digest = text_digest(checkpoint)
    whole = embedding_settings(digest, data.path / "feats.scp", **options)
    if (out / XVECTOR_SCP).is_file():
        record = read_record(out / XVECTOR_SETTINGS)
        expected = {**whole, "xvector_scp": text_digest(out / XVECTOR_SCP)}
        if record is not None and not differences(record, expected):
            return {"nj": nj, "status": "complete"}
        why = "; ".join(differences(record, expected)) if record is not None else f"no {out / XVECTOR_SETTINGS}"
        log.info("%s/%s is not of these settings (%s); extracting again", out, XVECTOR_SCP, why)
    parts = split_data_dir(data.path, nj, under=out)  # the data dir is only read: it may be read-only
    record_split_features(parts, data.path, "extract_embeddings")  # each job reads the features' type there
    todo = [n for n, part in enumerate(parts, 1)
            if not matches(out / f"xvector.{n}.settings", embedding_settings(digest, part / "feats.scp", **options))]
    return {"nj": nj, "status": "todo", "todo": " ".join(map(str, todo))}


def merge_embedding_jobs(checkpoint: str | os.PathLike, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                         nj: int, options: dict) -> int:
    """Joins the jobs' xvector.<n>.scp into xvector.scp after checking that every
    embedding is finite; writes mean.vec and xvector.settings, xvector.scp last.
    Returns the number of embeddings."""
    out = Path(out_dir)
    table = {}
    for n in range(1, nj + 1):
        table.update(read_kv(out / f"xvector.{n}.scp", check_sorted=False))
    with atomic_path(out / XVECTOR_SCP) as tmp:
        write_kv(tmp, table)
        utts, emb = load_embeddings(tmp)  # refuses non-finite embeddings, naming the utterance
        write_vector(out / MEAN_VEC, emb.mean(0))
        (out / XVECTOR_SETTINGS).unlink(missing_ok=True)
        settings = embedding_settings(text_digest(checkpoint), Path(data_dir) / "feats.scp", **options)
        write_record(out / XVECTOR_SETTINGS, {**settings, "xvector_scp": text_digest(tmp)})
    return len(utts)


def average_embeddings(xvector_scp: str | os.PathLike, models: str | os.PathLike,
                       out_dir: str | os.PathLike) -> dict | None:
    """Enrollment models of several utterances (CN-Celeb's avg_enroll_trials):
    ``models`` lists `model utt1 utt2 ...`; each model's embedding is the plain
    mean of its utterances' (raw) embeddings. Writes <out>/models.{ark,scp} and
    <out>/xvector.scp (the input embeddings and the models together), with
    average.settings recording the inputs. Returns {models, embeddings}, or None
    when <out> was made from the same inputs."""
    out = Path(out_dir)
    done = out / XVECTOR_SCP
    record = {"xvector_scp": text_digest(xvector_scp), "models": text_digest(models)}
    if up_to_date(out / AVERAGE_SETTINGS, record, done, complete=done.is_file()):
        return None
    utts, emb = load_embeddings(xvector_scp)
    listed = read_kv(models, multi=True)
    row = {u: i for i, u in enumerate(utts)}
    rows, owner = [], []
    for n, (model, members) in enumerate(listed.items()):
        if model in row:
            raise DataDirError(f"{models}: model '{model}' has the id of an utterance of {xvector_scp}")
        missing = next((u for u in members if u not in row), None)
        if missing is not None:
            raise DataDirError(f"{models}: '{missing}' of model '{model}' has no embedding in "
                               f"{xvector_scp} (embed the data dir that lists the models)")
        rows += [row[u] for u in members]
        owner += [n] * len(members)
    means = speaker_means(emb[rows], np.array(owner)).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    ark = (out / "models.ark").resolve()
    scp = ark.with_suffix(".scp")
    with atomic_path(scp) as tmp_scp, atomic_path(ark) as tmp_ark:
        with ArkWriter(tmp_ark, tmp_scp, ark, compress=False) as writer:
            for model, vector in zip(listed, means):
                writer(model, vector)
    lines = Path(xvector_scp).read_text().splitlines() + scp.read_text().splitlines()
    write_text_atomic(done, "".join(f"{line}\n" for line in sorted(lines, key=lambda line: sort_key(line.split()[0]))))
    write_record(out / AVERAGE_SETTINGS, record)
    return {"models": len(listed), "embeddings": len(rows)}


def embeddings_of_data_dir(xvector_scp: str | os.PathLike, data) -> np.ndarray:
    """The rows of ``xvector_scp`` in the utterance order of ``data`` (a
    purl.data.datadir.DataDir): what stage 5's data-dir methods read."""
    utts, emb = load_embeddings(xvector_scp)
    row = {u: i for i, u in enumerate(utts)}
    missing = [u for u in data.utts if u not in row]
    if missing:
        raise DataDirError(f"{xvector_scp}: no embedding for '{missing[0]}' of {data.path} "
                           f"({len(missing)} missing); rerun steps/extract_embeddings.sh on this data dir")
    return emb[[row[u] for u in data.utts]]
