"""Settings records: what an output was made from, kept beside it.

Kaldi copies its config next to what it writes; here every stage output (and
every finished parallel job) gets a small JSON record of its options and of
digests of its inputs. A rerun computes the record it would write and compares:
the same record means the output can be reused; another one means the work is
redone, or the stage stops with a message naming what changed. Reusing an output
because a file merely exists (whatever it was made from) is how a changed
option or input gets silently ignored.

Digests are cheap by design: text files (wav.scp, utt2spk, feats.scp) are hashed
whole; large binary files they point to (audio, arks, checkpoints) by path, size
and modification time, so a million-file corpus costs a stat per file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Mapping

from purl.errors import PurlError
from purl.fileio import atomic_path


class SettingsError(PurlError, ValueError):
    """An output was made from other settings than the ones asked for now."""


def text_digest(path: str | os.PathLike) -> str:
    """sha1 of a file's bytes (for the small text files of a data dir)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stat_digest(paths: Iterable[str | os.PathLike]) -> str:
    """sha1 over (path, size, mtime) of each file; a missing file counts as such."""
    h = hashlib.sha1()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


def audio_digest(wav_scp: Mapping[str, str]) -> str:
    """The audio a wav.scp names: its paths' size and time; a command by its text
    (what it reads cannot be known without running it)."""
    files = sorted({v for v in wav_scp.values() if not v.endswith("|")})
    return stat_digest(files)


def scp_arks(scp: str | os.PathLike) -> list[str]:
    """The arks a feats.scp or xvector.scp points into, sorted."""
    arks = set()
    with open(scp, encoding="utf-8") as f:
        for line in f:
            parts = line.split(maxsplit=1)
            if len(parts) == 2:
                arks.add(parts[1].strip().rsplit(":", 1)[0])
    return sorted(arks)


def scp_digest(scp: str | os.PathLike) -> str:
    """A feats.scp or xvector.scp: its text and the size and time of every ark
    it points into (recomputed features of the same lengths keep the text)."""
    return hashlib.sha1((text_digest(scp) + stat_digest(scp_arks(scp))).encode()).hexdigest()


def read_record(path: str | os.PathLike) -> dict | None:
    """The record at ``path``, or None when there is none (or it is unreadable:
    a torn write counts as no record, so the work is redone)."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(path: str | os.PathLike, record: Mapping) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(dict(record), indent=1, sort_keys=True) + "\n", encoding="utf-8")


def differences(old: Mapping, new: Mapping) -> list[str]:
    """'key: old -> new' for every key whose value differs (digests shortened)."""
    def show(v):
        return f"{v[:12]}..." if isinstance(v, str) and len(v) == 40 else repr(v)
    return [f"{k}: {show(old.get(k))} -> {show(new.get(k))}"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def matches(path: str | os.PathLike, record: Mapping) -> bool:
    old = read_record(path)
    return old is not None and not differences(old, record)


def up_to_date(path: str | os.PathLike, record: Mapping, output: str | os.PathLike, complete: bool) -> bool:
    """A stage's skip check. True (and a log line saying so) when ``output`` is
    ``complete`` and the record at ``path`` equals ``record``; otherwise logs
    what differs, removes the stale record (so that it cannot vouch for a
    half-redone output) and returns False: the caller redoes the work and
    writes ``record`` last."""
    log = logging.getLogger("purl.records")
    old = read_record(path)
    if complete and old is not None and not differences(old, record):
        log.info("%s was made from the same settings and inputs; skipping (delete it to redo)", output)
        return True
    if complete or old is not None:
        why = "; ".join(differences(old, record)) if old is not None else f"no record {path}"
        log.info("%s was made from other settings or inputs (%s); making it again", output, why)
    Path(path).unlink(missing_ok=True)
    return False
