"""The regroup method's data dir (stage 5): <out-data-dir> with every utterance
of <data-dir>, the labels that hold two voices split and the labels of one
voice joined (purl.regroup for the rule), and:

    utt2oldspk       the labels before (ids keep their speaker prefix: validate_data_dir checks it here)
    regroups         one line per change: 'split <label> <new-label> <utterances moved> <cosine>'
                     (the cosine of the two voices' centroids) and
                     'join <label> <into> <cosine> <the lower self-consistency>'
    regroup.json     counts, the split's cut and, with utt2truespk, the pair precision and
                     recall of the labels before and after and the splits and joins that were right
    regroup.settings what it was made from: a rerun with the same record is skipped

The dir is built under a temporary name and renamed, so a killed run leaves no
dir that looks complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from purl.data.datadir import DataDir
from purl.regroup import Regrouping, RegroupSettings, regroup, regrouping_metrics
from purl.stages.embeddings import embeddings_of_data_dir
from purl.stages.label_dirs import indexed_labels, labels_record, reusable_report, write_labels_dir

SETTINGS = "regroup.settings"
REGROUPS = "regroups"
REPORT = "regroup.json"


def regroup_lines(regrouping: Regrouping) -> str:
    names = regrouping.names
    return "".join([f"split {names[s]} {names[n]} {moved} {cos:.4f}\n" for s, n, moved, cos in regrouping.splits] +
                   [f"join {names[s]} {names[t]} {cos:.4f} {lower:.4f}\n" for s, t, cos, lower, _ in regrouping.joins])


def run_regroup(xvector_scp: str | os.PathLike, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                settings: RegroupSettings | None = None, force: bool = False) -> dict | None:
    """Writes the regrouped dir; returns regroup.json's content, or None when
    ``out_dir`` was made from the same settings (default: RegroupSettings());
    ``force``: the content in either case."""
    settings = settings or RegroupSettings()
    settings.check()
    out = Path(out_dir)
    record = labels_record(xvector_scp, data_dir, settings)
    done, report = reusable_report(xvector_scp, out, SETTINGS, REPORT, record, force)
    if done:
        return report
    data = DataDir(data_dir)
    speakers, labels = indexed_labels(data)
    regrouping = regroup(embeddings_of_data_dir(xvector_scp, data), labels, speakers, settings)
    report = {"utterances": len(labels), "labels_before": len(speakers),
              "labels": len(np.unique(regrouping.new)), "splits": len(regrouping.splits),
              "joins": len(regrouping.joins), "separation_cut": regrouping.separation_cut,
              "settings": dataclasses.asdict(settings), "embeddings": str(xvector_scp)}
    if data.has("utt2truespk"):
        truth = data.table("utt2truespk")
        true_index = {s: n for n, s in enumerate(sorted(set(truth.values())))}
        report.update(regrouping_metrics(labels, regrouping, np.array([true_index[truth[u]] for u in data.utts])))
    write_labels_dir(data, out, {u: regrouping.names[n] for u, n in zip(data.utts, regrouping.new)},
                     {REGROUPS: regroup_lines(regrouping), REPORT: json.dumps(report, indent=1) + "\n"},
                     SETTINGS, record, user="regroup_data_dir")
    return report
