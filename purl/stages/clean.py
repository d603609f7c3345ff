"""``purl clean``: stage 4 on a user's own labelled data dir, into OUT_DIR
(default DATA_DIR_purl_clean):

    embeddings/xvector.{ark,scp}  the embeddings; embeddings/purl.settings: the model, data and
                                  features they were made from
    purl.settings                 the fit's record: estimator, threshold, embeddings, labels
    report.{md,json}, reliability.png, suspected_mislabelled, data_clean/   stage 4's files
                                  (purl/stages/reliability.py)
    data_relabelled/              relabel proposals (purl/stages/relabel_data_dir.py)

A rerun reuses the embeddings made with the same model from the same data,
and the fit made with the same settings; a rerun with other settings says
which differ and what it replaces. The embeddings come from the data dir's
feats.scp when stage 1 made it (its feats.settings vouches for the audio and
options), else from the audio, as purl.api computes them: both are what stage
6 would extract.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from purl.data.datadir import DataDir
from purl.kaldi_io import save_embeddings
from purl.records import audio_digest, differences, read_record, scp_digest, stat_digest, text_digest, write_record
from purl.stages.fbank import FEATS_SETTINGS, fbank_job_settings, feats_status
from purl.stages.reliability import REPORT_JSON, run_reliability

SETTINGS = "purl.settings"
# More suspects than this share of a dir is more than the label noise of a
# prepared corpus (a few percent): the model or the estimator is the likelier cause.
IMPLAUSIBLE_FLAG_RATE = 0.10

log = logging.getLogger(__name__)


def stage1_feats(data: DataDir) -> bool:
    """Whether the dir's feats.scp is stage 1's 80-dim 16 kHz compressed fbank of
    its current wav.scp and audio, for every utterance (what the model embeds)."""
    record = read_record(data.path / FEATS_SETTINGS)
    if record is None or not data.has("feats.scp") or not data.has("utt2num_frames"):
        return False
    try:
        expected = fbank_job_settings(data.table("wav.scp"), sample_rate=16000, num_mel_bins=80, compress=True,
                                      min_frames=record["min_frames"])
    except KeyError:
        return False
    status, _ = feats_status(data.path, expected)
    return status == "complete" and set(data.utts) <= set(data.table("feats.scp"))


def embedding_settings(model_path: str | os.PathLike, data: DataDir, source: str) -> dict:
    utts = "".join(f"{u}\n" for u in data.utts)
    record = {"model": str(Path(model_path).resolve()), "model_file": stat_digest([Path(model_path).resolve()]),
              "utts": hashlib.sha1(utts.encode()).hexdigest(), "source": source,
              "wav_scp": text_digest(data.path / "wav.scp")}
    if source == "feats.scp":
        record["feats_scp"] = scp_digest(data.path / "feats.scp")
    else:
        record["audio"] = audio_digest(data.table("wav.scp"))
    return record


def embed_data_dir(model, model_path: str | os.PathLike, data: DataDir, out_dir: str | os.PathLike, *,
                   embed_audio: Callable[[list[str], list[str]], np.ndarray],
                   on_done: Callable[[int], None] | None = None, say: Callable[[str], None] = print) -> Path:
    """OUT_DIR/embeddings/xvector.scp of every utterance, reused when its record
    equals this run's. ``embed_audio(entries, utts)`` embeds from the audio
    (with the caller's threads and progress); from stage 1's feats.scp the
    utterances go through ``purl.embed.embed_utterances`` as in stage 6."""
    from purl.embed import embed_utterances

    emb_dir = Path(out_dir) / "embeddings"
    scp, record_path = emb_dir / "xvector.scp", emb_dir / SETTINGS
    source = "feats.scp" if stage1_feats(data) else "audio"
    record = embedding_settings(model_path, data, source)
    old = read_record(record_path)
    if old is not None and scp.is_file() and not differences(old, record):
        say(f"  reusing {scp}: made with the same model from the same data ({record_path})")
        return scp
    if old is not None:
        say(f"  embedding again: {record_path} differs ({'; '.join(differences(old, record))})")
    record_path.unlink(missing_ok=True)
    if source == "feats.scp":
        feats, frames = data.table("feats.scp"), data.table("utt2num_frames")
        say(f"  from {data.path / 'feats.scp'} (stage 1's, {FEATS_SETTINGS})")
        emb = embed_utterances(model.encoder, [feats[u] for u in data.utts], [int(frames[u]) for u in data.utts],
                               device=model.device, on_batch=on_done, utts=data.utts)
    else:
        wav = data.table("wav.scp")
        emb = embed_audio([wav[u] for u in data.utts], data.utts)
    emb_dir.mkdir(parents=True, exist_ok=True)
    save_embeddings(emb_dir / "xvector.ark", data.utts, emb)
    write_record(record_path, record)
    return scp


def fit_settings(emb_scp: Path, data: DataDir, estimator: str, threshold: float) -> dict:
    return {"estimator": estimator, "threshold": threshold, "embeddings": scp_digest(emb_scp),
            "utt2spk": text_digest(data.path / "utt2spk")}


def clean_fit(emb_scp: Path, data: DataDir, out_dir: str | os.PathLike, *, estimator: str, threshold: float,
              clean_dir: Path, nj: int, say: Callable[[str], None] = print) -> dict:
    """Stage 4's report of the fit in OUT_DIR: reused when made from the same
    settings; otherwise fitted, saying which earlier fit it replaces."""
    out_dir = Path(out_dir)
    record_path, report_path = out_dir / SETTINGS, out_dir / REPORT_JSON
    record = fit_settings(emb_scp, data, estimator, threshold)
    old = read_record(record_path)
    if old is not None and report_path.is_file() and clean_dir.is_dir() and not differences(old, record):
        say(f"  reusing the fit in {out_dir}: made with the same settings ({record_path})")
        return json.loads(report_path.read_text())
    if old is not None:
        say(f"  this fit replaces the one in {out_dir} ({'; '.join(differences(old, record))}); "
            "give --out-dir to keep both")
    record_path.unlink(missing_ok=True)
    report = run_reliability(emb_scp, data, out_dir, estimator=estimator, threshold=threshold, clean_dir=clean_dir,
                             nj=nj)
    write_record(record_path, record)
    return report


def flag_rate_warning(report: dict) -> str | None:
    """What to try when the suspects are more of the dir than label noise plausibly is."""
    n_utts = report["detection"]["n_utts"]
    rate = report["n_suspected"] / max(n_utts, 1)
    if rate <= IMPLAUSIBLE_FLAG_RATE:
        return None
    tries = ["a stronger model (trained on more speakers, or on speech like this dir's)"]
    if report["estimator"] != "bic":
        tries.insert(0, "--estimator bic (a speaker whose pairs form one cluster keeps them all)")
    return (f"warning: {100 * rate:.0f}% of the utterances are suspected, more than the few percent of wrong "
            f"labels a prepared corpus usually has: the model likely does not separate these speakers well. "
            f"Try {', or '.join(tries)}; do not train on data_clean/ before listening to some suspects.")
