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
import shutil
from pathlib import Path

import numpy as np

from purl.data.datadir import DataDir, DataDirError, subset_data_dir, utt2spk_to_spk2utt, write_kv
from purl.fileio import temp_path, write_text_atomic
from purl.records import text_digest, up_to_date, write_record
from purl.regroup import Regrouping, RegroupSettings, regroup, regrouping_metrics
from purl.stages.embeddings import XVECTOR_SETTINGS, embeddings_of_data_dir
from purl.stages.fbank import record_derived_features

SETTINGS = "regroup.settings"
REGROUPS = "regroups"
REPORT = "regroup.json"


def regroup_settings(xvector_scp: str | os.PathLike, data_dir: str | os.PathLike, settings: RegroupSettings) -> dict:
    scp, data = Path(xvector_scp), Path(data_dir)
    record = {**dataclasses.asdict(settings), "xvector_scp": text_digest(scp), "utt2spk": text_digest(data / "utt2spk")}
    if (scp.parent / XVECTOR_SETTINGS).is_file():
        record["embeddings"] = text_digest(scp.parent / XVECTOR_SETTINGS)
    return record


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
    if not Path(xvector_scp).is_file():
        raise DataDirError(f"{xvector_scp}: no such embedding index (run steps/extract_embeddings.sh first)")
    record = regroup_settings(xvector_scp, data_dir, settings)
    if up_to_date(out / SETTINGS, record, out, complete=(out / "utt2spk").is_file()):
        return json.loads((out / REPORT).read_text()) if force else None
    data = DataDir(data_dir)
    speakers = data.speakers
    index = {s: n for n, s in enumerate(speakers)}
    labels = np.array([index[data.utt2spk[u]] for u in data.utts])
    regrouping = regroup(embeddings_of_data_dir(xvector_scp, data), labels, speakers, settings)
    report = {"utterances": len(labels), "labels_before": len(speakers),
              "labels": len(np.unique(regrouping.new)), "splits": len(regrouping.splits),
              "joins": len(regrouping.joins), "separation_cut": regrouping.separation_cut,
              "settings": dataclasses.asdict(settings), "embeddings": str(xvector_scp)}
    if data.has("utt2truespk"):
        truth = data.table("utt2truespk")
        true_index = {s: n for n, s in enumerate(sorted(set(truth.values())))}
        report.update(regrouping_metrics(labels, regrouping, np.array([true_index[truth[u]] for u in data.utts])))

    tmp = temp_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    subset_data_dir(data, tmp, utts=data.utts)
    new_utt2spk = {u: regrouping.names[n] for u, n in zip(data.utts, regrouping.new)}
    write_kv(tmp / "spk2utt", utt2spk_to_spk2utt(new_utt2spk))
    write_kv(tmp / "utt2oldspk", data.utt2spk)
    write_kv(tmp / "utt2spk", new_utt2spk)
    write_text_atomic(tmp / REGROUPS, regroup_lines(regrouping))
    write_text_atomic(tmp / REPORT, json.dumps(report, indent=1) + "\n")
    record_derived_features(tmp, data.path, user="regroup_data_dir")
    write_record(tmp / SETTINGS, record)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return report
