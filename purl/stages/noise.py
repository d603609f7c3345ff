"""Stage 2: the noisy copy of a training data dir: <dst>/{utt2spk, spk2utt,
utt2truespk, the other per-utterance files of <src>} and noise.settings, the
record of what it was made from (rate, seed, the source's labels): a rerun with
the same record is skipped, with another one redone."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from purl.data.datadir import UTT_FILES, DataDir, utt2spk_to_spk2utt, write_kv
from purl.fileio import atomic_path
from purl.noise import relabel
from purl.settings import text_digest, up_to_date, write_record

SETTINGS = "noise.settings"  # in the noisy dir, written last


def make_noisy_data_dir(src: str | os.PathLike, dst: str | os.PathLike, rate: float, seed: int) -> dict[str, int]:
    """A copy of ``src`` with noisy labels, and the truth in utt2truespk.

    Utterance ids keep their true speaker prefix (they name files, and the truth
    must stay recoverable), so the noisy dir is the one place where an id need not
    start with its (noisy) speaker; validate_data_dir accepts it because of
    utt2truespk.
    """
    data = DataDir(src)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    noisy = relabel(dict(data.utt2spk), rate, seed)
    for name in UTT_FILES:
        if data.has(name) and name not in ("utt2spk", "utt2truespk"):
            # The same lines: copied, not parsed and rewritten.
            with atomic_path(dst / name) as tmp:
                shutil.copyfile(data.path / name, tmp)
    write_kv(dst / "utt2truespk", data.utt2spk)
    write_kv(dst / "spk2utt", utt2spk_to_spk2utt(noisy))
    write_kv(dst / "utt2spk", noisy)
    changed = sum(noisy[u] != data.utt2spk[u] for u in noisy)
    return {"utterances": len(noisy), "relabelled": changed}


def noise_settings(src: str | os.PathLike, rate: float, seed: int) -> dict:
    """What a noisy dir is made from (purl.settings): the rate, the seed and the
    source's per-utterance files."""
    src = Path(src)
    return {"rate": rate, "seed": seed,
            **{name: text_digest(src / name) for name in UTT_FILES if (src / name).is_file()}}


def run_noise(src: str | os.PathLike, dst: str | os.PathLike, rate: float, seed: int) -> dict[str, int] | None:
    """Stage 2 with its skip check: make_noisy_data_dir's summary, or None when
    ``dst`` was made from the same settings."""
    dst = Path(dst)
    record = noise_settings(src, rate, seed)
    if up_to_date(dst / SETTINGS, record, dst, complete=(dst / "utt2spk").is_file()):
        return None
    summary = make_noisy_data_dir(src, dst, rate, seed)
    write_record(dst / SETTINGS, record)
    return summary
