"""The relabel method's data dir (stage 5): <out-data-dir> with the proposed
labels (moved utterances under their new speaker, dropped ones left out) and:

    utt2oldspk       the labels before (ids keep their speaker prefix: validate_data_dir checks it here)
    proposals        utt old-label new-label margin own-cosine  (every moved or dropped utterance;
                     new-label '-' for a dropped one), largest margin first
    relabel.json     counts and, with utt2truespk, relabel precision and recall
    relabel.settings what it was made from: a rerun with the same record is skipped
    unreliable_utts  with keep_dropped: the utterances it would drop, kept under their old
                     label, for the relabel_unlearn method (purl.unreliable_utts: repelled
                     from their label, not left out)

The dir is built under a temporary name and renamed, so a killed run leaves no
dir that looks complete. See purl.relabel for the rule.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np

from purl.data.datadir import DataDir, DataDirError, subset_data_dir, utt2spk_to_spk2utt, write_kv
from purl.fileio import temp_path, write_text_atomic
from purl.records import text_digest, up_to_date, write_record
from purl.relabel import Proposals, RelabelSettings, proposal_metrics, propose
from purl.stages.embeddings import XVECTOR_SETTINGS, embeddings_of_data_dir
from purl.stages.fbank import record_derived_features

SETTINGS = "relabel.settings"
PROPOSALS = "proposals"
REPORT = "relabel.json"
UNRELIABLE_UTTS = "unreliable_utts"


def relabel_settings(xvector_scp: str | os.PathLike, data_dir: str | os.PathLike, settings: RelabelSettings,
                     keep_dropped: bool = False) -> dict:
    scp, data = Path(xvector_scp), Path(data_dir)
    record = {**dataclasses.asdict(settings), "xvector_scp": text_digest(scp), "utt2spk": text_digest(data / "utt2spk")}
    if keep_dropped:
        record["keep_dropped"] = True
    if (scp.parent / XVECTOR_SETTINGS).is_file():
        record["embeddings"] = text_digest(scp.parent / XVECTOR_SETTINGS)
    return record


def proposal_lines(utts: list[str], speakers: list[str], labels: np.ndarray, proposals: Proposals) -> str:
    """``utt old new margin own`` for every moved or dropped utterance, largest margin first."""
    changed = np.flatnonzero(proposals.moved(labels) | proposals.dropped)
    changed = changed[np.argsort(-proposals.margin[changed], kind="stable")]
    return "".join(f"{utts[i]} {speakers[labels[i]]} {speakers[proposals.new[i]] if proposals.new[i] >= 0 else '-'} "
                   f"{proposals.margin[i]:.4f} {proposals.own[i]:.4f}\n" for i in changed)


def run_relabel(xvector_scp: str | os.PathLike, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                settings: RelabelSettings | None = None, force: bool = False,
                keep_dropped: bool = False) -> dict | None:
    """Writes the relabelled dir; returns relabel.json's content, or None when
    ``out_dir`` was made from the same settings (default: RelabelSettings());
    ``force``: the content in either case. ``keep_dropped``: the utterances
    proposed for dropping stay under their old label, listed in unreliable_utts."""
    settings = settings or RelabelSettings()
    settings.check()
    out = Path(out_dir)
    if not Path(xvector_scp).is_file():
        raise DataDirError(f"{xvector_scp}: no such embedding index (run steps/extract_embeddings.sh first)")
    record = relabel_settings(xvector_scp, data_dir, settings, keep_dropped)
    if up_to_date(out / SETTINGS, record, out, complete=(out / "utt2spk").is_file()):
        return json.loads((out / REPORT).read_text()) if force else None
    data = DataDir(data_dir)
    speakers = data.speakers
    index = {s: n for n, s in enumerate(speakers)}
    labels = np.array([index[data.utt2spk[u]] for u in data.utts])
    proposals = propose(embeddings_of_data_dir(xvector_scp, data), labels, settings)
    report = {"utterances": len(labels), "moved": int(proposals.moved(labels).sum()),
              "dropped": int(proposals.dropped.sum()), "settings": dataclasses.asdict(settings),
              "embeddings": str(xvector_scp)}  # which model proposed them (stage 4's, or a relabel round's)
    if data.has("utt2truespk"):
        truth = data.table("utt2truespk")
        true_labels = np.array([index.get(truth[u], -2) for u in data.utts])  # -2: an outsider
        report.update(proposal_metrics(labels, proposals, true_labels, training=true_labels >= 0))

    tmp = temp_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    new = np.where(proposals.dropped, labels, proposals.new) if keep_dropped else proposals.new
    kept = [u for u, n in zip(data.utts, new) if n >= 0]
    subset_data_dir(data, tmp, utts=kept)
    if keep_dropped:
        write_text_atomic(tmp / UNRELIABLE_UTTS, "".join(f"{u}\n" for u, d in zip(data.utts, proposals.dropped) if d))
    new_utt2spk = {u: speakers[n] for u, n in zip(data.utts, new) if n >= 0}
    write_kv(tmp / "spk2utt", utt2spk_to_spk2utt(new_utt2spk))
    write_kv(tmp / "utt2oldspk", {u: data.utt2spk[u] for u in new_utt2spk})
    write_kv(tmp / "utt2spk", new_utt2spk)
    write_text_atomic(tmp / PROPOSALS, proposal_lines(data.utts, speakers, labels, proposals))
    write_text_atomic(tmp / REPORT, json.dumps(report, indent=1) + "\n")
    record_derived_features(tmp, data.path, user="relabel_data_dir")
    write_record(tmp / SETTINGS, record)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return report
