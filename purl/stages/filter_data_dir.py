"""The filtering baseline's data dir (stage 5): <out-data-dir> with the kept
utterances, ``removed`` (`utt speaker cosine`) and filter.settings, the record of
what it was made from (keep ratio, embeddings, labels): a rerun with the same
record is skipped, with another one redone. The dir is built under a temporary
name and renamed, so a killed run leaves no dir that looks complete."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from purl.data.datadir import DataDir, DataDirError, subset_data_dir
from purl.fileio import temp_path, write_text_atomic
from purl.filtering import FilterError, centroid_filter
from purl.records import text_digest, up_to_date, write_record
from purl.stages.embeddings import XVECTOR_SETTINGS, embeddings_of_data_dir
from purl.stages.fbank import record_derived_features

SETTINGS = "filter.settings"  # in the filtered dir
REMOVED = "removed"


def filter_settings(xvector_scp: str | os.PathLike, data_dir: str | os.PathLike, keep_ratio: float) -> dict:
    """What a filtered dir is made from (purl.records)."""
    scp, data = Path(xvector_scp), Path(data_dir)
    record = {"keep_ratio": keep_ratio, "xvector_scp": text_digest(scp), "utt2spk": text_digest(data / "utt2spk")}
    if (scp.parent / XVECTOR_SETTINGS).is_file():
        record["embeddings"] = text_digest(scp.parent / XVECTOR_SETTINGS)
    return record


def run_filtering(xvector_scp: str | os.PathLike, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  keep_ratio: float = 0.5) -> dict | None:
    """Writes the filtered dir; returns {kept, total, removed, and with
    utt2truespk: caught (removed and mislabelled), mislabelled}, or None when
    ``out_dir`` was made from the same settings."""
    if not 0 < keep_ratio <= 1:
        raise FilterError(f"--keep-ratio {keep_ratio} must be in (0, 1]")
    out = Path(out_dir)
    if not Path(xvector_scp).is_file():
        raise DataDirError(f"{xvector_scp}: no such embedding index (run steps/extract_embeddings.sh first)")
    record = filter_settings(xvector_scp, data_dir, keep_ratio)
    if up_to_date(out / SETTINGS, record, out, complete=(out / "utt2spk").is_file()):
        return None
    data = DataDir(data_dir)
    emb = embeddings_of_data_dir(xvector_scp, data)
    keep, cosine = centroid_filter(emb, np.array([data.utt2spk[u] for u in data.utts]), keep_ratio)
    tmp = temp_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    subset_data_dir(data.path, tmp, utts=[u for u, k in zip(data.utts, keep) if k])
    removed = [(u, c) for u, k, c in zip(data.utts, keep, cosine) if not k]
    write_text_atomic(tmp / REMOVED, "".join(f"{u} {data.utt2spk[u]} {c:.4f}\n" for u, c in removed))
    record_derived_features(tmp, data.path, user="filter_data_dir")
    write_record(tmp / SETTINGS, record)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    summary = {"kept": int(keep.sum()), "total": len(keep), "removed": len(removed)}
    if data.has("utt2truespk"):
        truth = data.table("utt2truespk")
        wrong = {u for u in data.utts if truth[u] != data.utt2spk[u]}
        summary.update(caught=sum(u in wrong for u, _ in removed), mislabelled=len(wrong))
    return summary
