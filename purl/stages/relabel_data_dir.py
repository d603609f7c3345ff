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
from pathlib import Path

import numpy as np

from purl.data.datadir import DataDir
from purl.relabel import Proposals, RelabelSettings, proposal_metrics, propose
from purl.stages.embeddings import embeddings_of_data_dir
from purl.stages.label_dirs import indexed_labels, labels_record, reusable_report, write_labels_dir

SETTINGS = "relabel.settings"
PROPOSALS = "proposals"
REPORT = "relabel.json"
UNRELIABLE_UTTS = "unreliable_utts"


def relabel_settings(xvector_scp: str | os.PathLike, data_dir: str | os.PathLike, settings: RelabelSettings,
                     keep_dropped: bool = False) -> dict:
    record = labels_record(xvector_scp, data_dir, settings)
    if keep_dropped:
        record["keep_dropped"] = True
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
    record = relabel_settings(xvector_scp, data_dir, settings, keep_dropped)
    done, report = reusable_report(xvector_scp, out, SETTINGS, REPORT, record, force)
    if done:
        return report
    data = DataDir(data_dir)
    speakers, labels = indexed_labels(data)
    proposals = propose(embeddings_of_data_dir(xvector_scp, data), labels, settings)
    report = {"utterances": len(labels), "moved": int(proposals.moved(labels).sum()),
              "dropped": int(proposals.dropped.sum()), "settings": dataclasses.asdict(settings),
              "embeddings": str(xvector_scp)}  # which model proposed them (stage 4's, or a relabel round's)
    if data.has("utt2truespk"):
        truth = data.table("utt2truespk")
        index = {s: n for n, s in enumerate(speakers)}
        true_labels = np.array([index.get(truth[u], -2) for u in data.utts])  # -2: an outsider
        report.update(proposal_metrics(labels, proposals, true_labels, training=true_labels >= 0))

    new = np.where(proposals.dropped, labels, proposals.new) if keep_dropped else proposals.new
    files = {PROPOSALS: proposal_lines(data.utts, speakers, labels, proposals),
             REPORT: json.dumps(report, indent=1) + "\n"}
    if keep_dropped:
        files[UNRELIABLE_UTTS] = "".join(f"{u}\n" for u, d in zip(data.utts, proposals.dropped) if d)
    write_labels_dir(data, out, {u: speakers[n] for u, n in zip(data.utts, new) if n >= 0}, files, SETTINGS, record,
                     user="relabel_data_dir")
    return report
