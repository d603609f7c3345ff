"""``purl clean``: stage 4 on a user's own labelled data dir, into OUT_DIR
(default DATA_DIR_purl_clean):

    embeddings/xvector.{ark,scp}  the embeddings; embeddings/purl.settings: the model, data and
                                  features they were made from
    purl.settings                 the fit's record: estimator, threshold, embeddings, labels
    report.{md,json}, suspected_mislabelled, data_clean/   the suspects and the dir without them:
                                  of the centroid rule (purl/suspects.py) with suspects.png, or
                                  of stage 4's GMMs (purl/stages/reliability.py) with reliability.png
    data_relabelled/              relabel proposals (purl/stages/relabel_data_dir.py)
    data_regrouped/               labels that look like two voices split, two labels of one voice
                                  joined (purl/stages/regroup_data_dir.py)

A rerun reuses the embeddings made with the same model from the same data,
and the fit made with the same settings; a rerun with other settings says
which differ and what it replaces. The embeddings come from the data dir's
feats.scp when stage 1 made it (its feats.settings vouches for the audio and
options), else from the audio, as purl.api computes them: both are what stage
6 would extract.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from purl.data.datadir import DataDir, subset_data_dir
from purl.features import TOP_DB, feature_type_of
from purl.fileio import write_text_atomic
from purl.kaldi_io import save_embeddings
from purl.records import audio_digest, differences, read_record, scp_digest, stat_digest, text_digest, write_record
from purl.stages.embeddings import embeddings_of_data_dir
from purl.stages.fbank import FEATS_SETTINGS, fbank_job_settings, feats_status, record_derived_features
from purl.stages.reliability import REPORT_JSON, run_reliability
from purl.suspects import SuspectSettings, find_suspects, suspect_lines

SETTINGS = "purl.settings"
CENTROID = "centroid"  # purl clean's default rule (purl/suspects.py); the others are stage 4's GMM estimators
SUSPECTS_PLOT = "suspects.png"
# More suspects than this share of a dir is more than the label noise of a
# prepared corpus (a few percent): the model or the estimator is the likelier cause.
IMPLAUSIBLE_FLAG_RATE = 0.10
# More utterances than this nearer another speaker's centroid than their own:
# the model does not tell these speakers apart (a model that does leaves a few percent there).
POOR_SEPARATION = 0.20

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
                               device=model.device, on_batch=on_done, utts=data.utts,
                               top_db=TOP_DB[feature_type_of(data.path)])
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
    if estimator == CENTROID:
        report = run_suspects(emb_scp, data, out_dir, clean_dir=clean_dir)
    else:
        report = run_reliability(emb_scp, data, out_dir, estimator=estimator, threshold=threshold,
                                 clean_dir=clean_dir, nj=nj)
    write_record(record_path, record)
    return report


def run_suspects(emb_scp: Path, data: DataDir, out_dir: Path, *, clean_dir: Path,
                 settings: SuspectSettings | None = None) -> dict:
    """The centroid rule (purl.suspects) into OUT_DIR: suspected_mislabelled
    ('utt label resembles margin own z', least like its speaker first),
    suspects.png, report.{json,md} and ``clean_dir`` without the suspects.
    With utt2truespk, the report counts the wrong labels found."""
    from purl.plots import plot_suspects

    out_dir.mkdir(parents=True, exist_ok=True)
    speakers = data.speakers
    index = {s: n for n, s in enumerate(speakers)}
    labels = np.array([index[data.utt2spk[u]] for u in data.utts])
    settings = settings or SuspectSettings()
    found = find_suspects(embeddings_of_data_dir(emb_scp, data), labels, settings)
    write_text_atomic(out_dir / "suspected_mislabelled", suspect_lines(data.utts, speakers, labels, found))
    flagged = set(np.asarray(data.utts)[found.flagged])
    subset_data_dir(data, clean_dir, utts=[u for u in data.utts if u not in flagged])
    record_derived_features(clean_dir, data.path, user="purl clean")
    plot_suspects(found.own, found.best, found.flagged, out_dir / SUSPECTS_PLOT,
                  title=f"{data.path}: {len(labels)} utterances of {len(speakers)} speakers")
    nearer = found.best > found.own
    detection = {"n_utts": len(labels), "n_speakers": len(speakers), "n_speakers_judged": int(found.judged.sum()),
                 "n_resembling": int((found.flagged & nearer).sum()), "n_outliers": int((found.flagged & ~nearer).sum()),
                 "frac_nearer_other": float(nearer.mean()) if len(labels) else 0.0}
    if data.has("utt2truespk"):
        truth = data.table("utt2truespk")
        wrong = np.array([truth[u] != data.utt2spk[u] for u in data.utts])
        hits = int((wrong & found.flagged).sum())
        detection.update(n_mislabelled=int(wrong.sum()), n_found=hits,
                         utt_precision=hits / max(int(found.flagged.sum()), 1), utt_recall=hits / max(int(wrong.sum()), 1))
    report = {"estimator": CENTROID, "data_dir": str(data.path), "settings": dataclasses.asdict(settings),
              "detection": detection, "n_suspected": int(found.flagged.sum()), "cleaned_data_dir": str(clean_dir)}
    write_text_atomic(out_dir / "report.md", suspects_markdown(report))
    write_text_atomic(out_dir / REPORT_JSON, json.dumps(report, indent=1) + "\n")
    return report


def suspects_markdown(report: dict) -> str:
    d, s = report["detection"], report["settings"]
    lines = [
        "# Suspected mislabelled utterances (centroid rule, purl/suspects.py)\n",
        f"Data: {report['data_dir']}; {d['n_utts']} utterances of {d['n_speakers']} speakers "
        f"({d['n_speakers_judged']} with at least {s['min_utts']} utterances, judged).",
        f"Suspected: {report['n_suspected']} ({100 * report['n_suspected'] / max(d['n_utts'], 1):.1f}%): "
        f"{d['n_resembling']} nearer another speaker's centroid than their own and more than {s['spread']} robust "
        f"sds below their speaker's median cosine, {d['n_outliers']} more than {s['outlier']} below it "
        f"(listed in suspected_mislabelled; removed in {report['cleaned_data_dir']}).",
        f"{100 * d['frac_nearer_other']:.1f}% of all utterances are nearer another speaker's centroid than their "
        "own (a model that tells these speakers apart leaves a few percent).",
        "",
        f"Each utterance's cosine to its own speaker's centroid against the nearest other one's: {SUSPECTS_PLOT}.",
    ]
    if "n_found" in d:
        lines += ["", f"Against utt2truespk: {d['n_found']} of {d['n_mislabelled']} wrong labels found; "
                      f"precision {d['utt_precision']:.3f}, recall {d['utt_recall']:.3f}."]
    return "\n".join(lines) + "\n"


def flag_rate_warning(report: dict) -> str | None:
    """What to try when the suspects are more of the dir than label noise plausibly is."""
    d = report["detection"]
    rate = report["n_suspected"] / max(d["n_utts"], 1)
    stronger = "a stronger model (trained on more speakers, or on speech like this dir's)"
    nearer = d.get("frac_nearer_other", 0.0)
    if nearer > POOR_SEPARATION:
        return (f"warning: {100 * nearer:.0f}% of the utterances are nearer another speaker's centroid than their "
                f"own: the model does not tell these speakers apart, and no list of suspects from it can be "
                f"trusted. Try {stronger}.")
    if rate <= IMPLAUSIBLE_FLAG_RATE:
        return None
    tries = [stronger]
    if report["estimator"] != CENTROID:
        tries.insert(0, f"--estimator {CENTROID} (the default: a suspect must be unusual for its own speaker)")
    return (f"warning: {100 * rate:.0f}% of the utterances are suspected, more than the few percent of wrong "
            f"labels a prepared corpus usually has: the model likely does not separate these speakers well. "
            f"Try {', or '.join(tries)}; do not train on data_clean/ before listening to some suspects.")
