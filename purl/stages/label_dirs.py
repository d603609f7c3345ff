"""What the data dirs of new labels share (the relabel and regroup methods,
stage 5 and ``purl clean``): the record of what they were made from, the
labels as indices, and the dir written under a temporary name and renamed, so
a killed run leaves no dir that looks complete:

    utt2spk, spk2utt  the new labels (of the utterances kept)
    utt2oldspk        the labels before (ids keep their speaker prefix: validate_data_dir checks it here)
    <settings>        what it was made from: a rerun with the same record is skipped
and the files of the method (its report, its list of changes).
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
from purl.stages.embeddings import XVECTOR_SETTINGS
from purl.stages.fbank import record_derived_features


def labels_record(xvector_scp: str | os.PathLike, data_dir: str | os.PathLike, settings) -> dict:
    """The settings (a dataclass) and digests of the embeddings and the labels they are applied to."""
    scp, data = Path(xvector_scp), Path(data_dir)
    record = {**dataclasses.asdict(settings), "xvector_scp": text_digest(scp), "utt2spk": text_digest(data / "utt2spk")}
    if (scp.parent / XVECTOR_SETTINGS).is_file():
        record["embeddings"] = text_digest(scp.parent / XVECTOR_SETTINGS)
    return record


def reusable_report(xvector_scp: str | os.PathLike, out: Path, settings_file: str, report_file: str, record: dict,
                    force: bool) -> tuple[bool, dict | None]:
    """(whether ``out`` was made from ``record``, and then its report when ``force``);
    refuses missing embeddings."""
    if not Path(xvector_scp).is_file():
        raise DataDirError(f"{xvector_scp}: no such embedding index (run steps/extract_embeddings.sh first)")
    if up_to_date(out / settings_file, record, out, complete=(out / "utt2spk").is_file()):
        return True, json.loads((out / report_file).read_text()) if force else None
    return False, None


def indexed_labels(data: DataDir) -> tuple[list[str], np.ndarray]:
    """(the speakers in order, each utterance's speaker index in the dir's order)."""
    speakers = data.speakers
    index = {s: n for n, s in enumerate(speakers)}
    return speakers, np.array([index[data.utt2spk[u]] for u in data.utts])


def write_labels_dir(data: DataDir, out: Path, utt2spk: dict[str, str], files: dict[str, str],
                     settings_file: str, record: dict, user: str) -> None:
    """``out``: the utterances of ``utt2spk`` from ``data`` under their new labels,
    the ``files`` (name -> text) beside them, and the record last."""
    tmp = temp_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    subset_data_dir(data, tmp, utts=[u for u in data.utts if u in utt2spk])
    write_kv(tmp / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    write_kv(tmp / "utt2oldspk", {u: data.utt2spk[u] for u in utt2spk})
    write_kv(tmp / "utt2spk", utt2spk)
    for name, text in files.items():
        write_text_atomic(tmp / name, text)
    record_derived_features(tmp, data.path, user=user)
    write_record(tmp / settings_file, record)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
