"""Stage 0 for augmentation sources: MUSAN and RIRS_NOISES trees to Kaldi data
dirs whose wav.scp lists the files (each file is its own "speaker", as Kaldi's
recipes do), for the ``augment`` section of a training config.

MUSAN (https://www.openslr.org/17/): ``musan/{noise,music,speech}/<source>/*.wav``.
RIRS_NOISES (https://www.openslr.org/28/):
``RIRS_NOISES/simulated_rirs/{smallroom,mediumroom,largeroom}/Room001/Room001-00001.wav``;
Kaldi's voxceleb/v2 and WeSpeaker use the small and medium rooms.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from purl.data.datadir import DataDirError
from purl.data.prepare import write_data_dir

MUSAN_URL = "https://www.openslr.org/17/"
RIRS_URL = "https://www.openslr.org/28/"
MUSAN_PARTS = ("noise", "music", "speech")


def _write_sources(out_dir: Path, files: list[Path], id_of) -> int:
    wav_scp = {}
    for path in files:
        utt = id_of(path)
        if any(c.isspace() for c in utt) or utt in wav_scp:
            raise DataDirError(f"{path}: gives the id '{utt}', {'already taken' if utt in wav_scp else 'with spaces'} "
                               "(rename the file)")
        wav_scp[utt] = str(path.resolve())
    write_data_dir(out_dir, wav_scp, {u: u for u in wav_scp})
    return len(wav_scp)


def prepare_musan(musan_root: str | os.PathLike, data_root: str | os.PathLike) -> dict[str, int]:
    """<data_root>/musan_{noise,music,speech}; returns {dir name: files}."""
    root = Path(musan_root)
    found = {part: sorted((root / part).rglob("*.wav")) for part in MUSAN_PARTS}
    empty = [part for part, files in found.items() if not files]
    if empty:
        raise DataDirError(f"{root}: no .wav files under {', '.join(f'{p}/' for p in empty)} "
                           f"(set the MUSAN root to the extracted musan/ folder, from {MUSAN_URL})")
    return {f"musan_{part}": _write_sources(Path(data_root) / f"musan_{part}", files, lambda p: p.stem)
            for part, files in found.items()}


def prepare_rirs(rirs_root: str | os.PathLike, out_dir: str | os.PathLike,
                 rooms: Sequence[str] = ("smallroom", "mediumroom")) -> int:
    """<out_dir> listing the simulated RIRs of ``rooms``; ids are <room>-<file stem>."""
    root = Path(rirs_root) / "simulated_rirs"
    files = []
    for room in rooms:
        room_files = sorted((root / room).rglob("*.wav"))
        if not room_files:
            raise DataDirError(f"{root / room}: no .wav files (set the RIRS_NOISES root to the extracted "
                               f"RIRS_NOISES/ folder, from {RIRS_URL})")
        files += room_files
    return _write_sources(Path(out_dir), files, lambda p: f"{p.relative_to(root).parts[0]}-{p.stem}")
