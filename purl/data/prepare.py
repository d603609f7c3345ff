"""Stage 0: corpus trees to Kaldi data dirs.

Every corpus here is a folder-per-speaker tree, ``<root>/<speaker>/**/<file>``
(VoxCeleb's ``<root>/<id>/<video>/<nnnnn>.wav`` is one), so one scanner serves
VoxCeleb and a user's own corpus: the utterance id is the speaker folder followed
by the path below it, without extension, with '/' turned into '-':
``id10001/1zcIwhmdeo4/00001.wav`` -> ``id10001-1zcIwhmdeo4-00001``.
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from purl.audio import AudioError, audio_duration, needs_av
from purl.data.datadir import (
    DataDirError,
    make_trials,
    sort_key,
    utt2spk_to_spk2utt,
    write_kv,
    write_trials,
)

# wav.scp names every file by its path; m4a, aac and mp3 are decoded in-process
# by PyAV (purl.audio), the rest by soundfile.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus") + (".m4a", ".aac", ".mp3")

VOXCELEB_URL = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/"
VOXCELEB_TRIALS = {  # recipe name -> official cleaned list
    "vox1_O": "veri_test2.txt",
    "vox1_E": "list_test_all2.txt",
    "vox1_H": "list_test_hard2.txt",
}
REQUIRED_TRIALS = ("vox1_O",)  # Vox1-E and -H are made when their lists are there
VOXCELEB1_SPLITS = ("dev", "test")  # WeSpeaker's voxceleb1/{dev,test}/wav


def utterance_id(speaker: str, relative: Path) -> str:
    return "-".join((speaker,) + relative.with_suffix("").parts)


def scan_speaker_folders(
    root: str | os.PathLike,
    *,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
) -> tuple[dict[str, str], dict[str, str]]:
    """Finds ``<root>/<speaker>/**/*.<ext>``; returns (wav_scp, utt2spk) with
    absolute paths. Raises when the tree has no audio, or when two files map to
    the same utterance id.
    """
    # Resolved once: resolving each of a million files costs a syscall per
    # path component.
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataDirError(f"{root}: no such corpus directory")
    wav_scp: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    for speaker_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        speaker = speaker_dir.name
        if any(c.isspace() for c in speaker) or "-" in speaker:
            raise DataDirError(
                f"{speaker_dir}: speaker folder names must have no spaces or '-' "
                "(the utterance id is <speaker>-<path>; rename the folder)"
            )
        for dirpath, dirnames, filenames in os.walk(speaker_dir):
            dirnames.sort()
            for name in sorted(filenames):
                ext = os.path.splitext(name)[1].lower()
                if ext not in extensions:
                    continue
                path = Path(dirpath) / name
                relative = path.relative_to(speaker_dir)
                utt = utterance_id(speaker, relative)
                if any(c.isspace() for c in utt):
                    raise DataDirError(f"{path}: spaces in a path make an invalid utterance id (rename the file)")
                if utt in wav_scp:
                    raise DataDirError(f"{path}: gives the utterance id '{utt}' of another file (rename one of them)")
                wav_scp[utt] = str(path)
                utt2spk[utt] = speaker
    if not wav_scp:
        raise DataDirError(
            f"{root}: no audio files ({', '.join(extensions)}) under <root>/<speaker>/; "
            "expected one folder per speaker"
        )
    return wav_scp, utt2spk


def durations(wav_scp: Mapping[str, str], *, threads: int = 8) -> dict[str, float]:
    """utt2dur from file headers (threads, since this is I/O bound)."""
    def one(item):
        utt, entry = item
        try:
            return utt, audio_duration(entry)
        except AudioError as e:
            raise DataDirError(f"utterance '{utt}': {e} (remove or replace the file)") from e

    with ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(one, wav_scp.items()))


def write_data_dir(
    out_dir: str | os.PathLike,
    wav_scp: Mapping[str, str],
    utt2spk: Mapping[str, str],
    *,
    with_durations: bool = True,
) -> Path:
    """Writes wav.scp, utt2spk, spk2utt and (for file entries) utt2dur.

    utt2dur is left out when any entry is a pipe or a compressed format without
    an exact length in its header (m4a, mp3): decoding a million m4a files only
    to learn their lengths would take hours, and stage 1 writes utt2dur from
    the samples it decodes anyway.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if with_durations and not any(e.endswith("|") or needs_av(e) for e in wav_scp.values()):
        write_kv(out_dir / "utt2dur", {u: f"{d:.3f}" for u, d in durations(wav_scp).items()})
    write_kv(out_dir / "wav.scp", wav_scp)
    write_kv(out_dir / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    write_kv(out_dir / "utt2spk", utt2spk)  # last: its presence marks the dir complete
    return out_dir


def split_speakers(speakers: Iterable[str], num_test: int, seed: int) -> tuple[list[str], list[str]]:
    """Draws ``num_test`` held-out speakers, seeded; returns (train, test)."""
    speakers = sorted(speakers, key=sort_key)
    if not 0 <= num_test < len(speakers):
        raise DataDirError(f"cannot hold out {num_test} of {len(speakers)} speakers (use fewer)")
    test = set(random.Random(seed).sample(speakers, num_test))
    return [s for s in speakers if s not in test], sorted(test, key=sort_key)


def prepare_folder_corpus(
    root: str | os.PathLike,
    train_dir: str | os.PathLike,
    *,
    test_dir: str | os.PathLike | None = None,
    num_test_speakers: int = 0,
    max_target_trials: int = 10000,
    seed: int = 0,
    outsider_dir: str | os.PathLike | None = None,
    num_outsider_speakers: int = 0,
) -> dict[str, int]:
    """A folder-per-speaker corpus to a train dir and, optionally, a held-out test dir.

    The test dir gets a trial list ``trials``: every target pair up to
    ``max_target_trials`` and as many non-target pairs, seeded. With
    ``num_outsider_speakers``, that many of the speakers left after the test
    draw go to ``outsider_dir`` instead of the train dir: speakers never trained
    on or tested, the source of open-set label noise (stage 2's ``open``). The
    test draw does not depend on it.
    """
    wav_scp, utt2spk = scan_speaker_folders(root)
    train_spk, test_spk = split_speakers(set(utt2spk.values()), num_test_speakers, seed)
    outsider_spk: list[str] = []
    if num_outsider_speakers:
        if outsider_dir is None:
            raise DataDirError("outsider speakers need an outsider dir")
        # A seed of its own: the same test speakers whatever the number of outsiders.
        train_spk, outsider_spk = split_speakers(train_spk, num_outsider_speakers, seed + 1_000_003)
    summary = {}
    for out_dir, speakers in ((train_dir, train_spk), (test_dir, test_spk), (outsider_dir, outsider_spk)):
        if out_dir is None or not speakers:
            continue
        speakers = set(speakers)
        utts = {u: s for u, s in utt2spk.items() if s in speakers}
        write_data_dir(out_dir, {u: wav_scp[u] for u in utts}, utts)
        summary[str(out_dir)] = len(utts)
    if test_dir is not None and test_spk:
        test_utts = {u: s for u, s in utt2spk.items() if s in set(test_spk)}
        write_trials(Path(test_dir) / "trials", make_trials(test_utts, max_targets=max_target_trials, seed=seed))
    return summary


def convert_voxceleb_trials(
    official: str | os.PathLike,
    utts: set[str],
    *,
    tree: str = "the VoxCeleb1 tree",
    fix: str = "VoxCeleb1-E and -H need both vox1_dev_wav and vox1_test_wav: one wav/ tree, "
    "or WeSpeaker's voxceleb1/dev/wav and voxceleb1/test/wav",
) -> list[tuple[str, str, bool]]:
    """An official list (``1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav``) to trials.

    ``tree`` and ``fix`` word the error for a path that is not among ``utts``.
    """
    official = Path(official)
    trials = []
    with open(official, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 3 or parts[0] not in ("0", "1"):
                raise DataDirError(
                    f"{official} line {lineno}: expected '<0|1> <spk>/<video>/<n>.wav <spk>/<video>/<n>.wav', "
                    f"got '{line.strip()}' (download the list again from {VOXCELEB_URL})"
                )
            pair = []
            for path in parts[1:]:
                rel = Path(path)
                utt = utterance_id(rel.parts[0], Path(*rel.parts[1:]))
                if utt not in utts:
                    raise DataDirError(f"{official} line {lineno}: '{path}' is not in {tree} ({fix})")
                pair.append(utt)
            trials.append((pair[0], pair[1], parts[0] == "1"))
    return trials


def voxceleb1_wav_roots(root: str | os.PathLike) -> list[Path]:
    """The folders holding VoxCeleb1's id1xxxx/ speaker folders, in either layout.

    The official zips extract to one ``wav/`` folder (``root`` may be it or its
    parent); WeSpeaker's download has ``voxceleb1/dev/wav`` and
    ``voxceleb1/test/wav`` (``root`` is ``voxceleb1/``; the test part alone is
    Vox1-O only).
    """
    root = Path(root)
    parts = [root / split / "wav" for split in VOXCELEB1_SPLITS if (root / split / "wav").is_dir()]
    if parts:
        return parts
    if (root / "wav").is_dir():
        return [root / "wav"]
    return [root]


def prepare_voxceleb(
    vox1_root: str | os.PathLike,
    vox2_dev_root: str | os.PathLike | None,
    trials_dir: str | os.PathLike,
    data_root: str | os.PathLike,
    *,
    vox2_valid_pairs: str | os.PathLike | None = None,
    keep_valid_speakers: bool = False,
) -> dict[str, int]:
    """VoxCeleb1 (wav) and VoxCeleb2 dev (m4a or wav) to data/vox1 and data/vox2_dev.

    ``vox1_root`` is the folder holding ``id10001/``... (the ``wav/`` folder that
    vox1_dev_wav.zip and vox1_test_wav.zip extract to, or its parent), or
    WeSpeaker's ``voxceleb1/`` with ``dev/wav`` and ``test/wav`` (or ``test/wav``
    alone: Vox1-O only).  ``vox2_dev_root`` holds ``id00012/``... (``dev/aac/``
    of vox2_dev_aac.zip, or a converted wav tree).  ``trials_dir`` holds the
    official cleaned lists: ``veri_test2.txt`` gives data/vox1/trials_vox1_O;
    ``list_test_all2.txt`` and ``list_test_hard2.txt``, where present,
    trials_vox1_E and trials_vox1_H.

    ``vox2_valid_pairs`` (a list in the official format on VoxCeleb2 dev paths,
    e.g. the original work's 10,000 validation pairs) gives data/vox2_valid with
    ``trials``; the speakers of those pairs leave data/vox2_dev, as in the
    original, unless ``keep_valid_speakers``.
    """
    data_root = Path(data_root)
    trials_dir = Path(trials_dir)
    missing = [VOXCELEB_TRIALS[name] for name in REQUIRED_TRIALS if not (trials_dir / VOXCELEB_TRIALS[name]).is_file()]
    if missing:
        raise DataDirError(
            f"{trials_dir}: missing the official trial list(s) {', '.join(missing)}; download them from "
            f"{VOXCELEB_URL}meta/ into that folder, or set vox1_trials_dir in run.sh"
        )
    summary = {}
    if vox2_dev_root is not None:
        wav_scp, utt2spk = _scan_voxceleb(vox2_dev_root, "VoxCeleb2 dev", "vox2_dev_root", "dev/aac of vox2_dev_aac.zip")
        if vox2_valid_pairs is not None:
            trials = convert_voxceleb_trials(
                vox2_valid_pairs, set(utt2spk), tree=f"the VoxCeleb2 dev tree {vox2_dev_root}",
                fix="the validation pairs need the whole VoxCeleb2 dev set; set vox2_valid_pairs=\"\" in run.sh "
                "to prepare without them",
            )
            valid_utts = {u for u1, u2, _ in trials for u in (u1, u2)}
            write_data_dir(data_root / "vox2_valid", {u: wav_scp[u] for u in valid_utts},
                           {u: utt2spk[u] for u in valid_utts})
            write_trials(data_root / "vox2_valid" / "trials", trials)
            summary["vox2_valid"] = len(valid_utts)
            if not keep_valid_speakers:
                valid_speakers = {utt2spk[u] for u in valid_utts}
                utt2spk = {u: s for u, s in utt2spk.items() if s not in valid_speakers}
                if not utt2spk:
                    raise DataDirError(
                        f"{vox2_valid_pairs}: its speakers are all the speakers of {vox2_dev_root}, "
                        "so no training data would be left (set keep_valid_speakers=true in run.sh)"
                    )
                wav_scp = {u: wav_scp[u] for u in utt2spk}
        write_data_dir(data_root / "vox2_dev", wav_scp, utt2spk)
        summary["vox2_dev"] = len(wav_scp)
    wav_scp, utt2spk = {}, {}
    content = "wav/ of vox1_dev_wav.zip + vox1_test_wav.zip, or WeSpeaker's voxceleb1/ with dev/wav and test/wav"
    for wav_root in voxceleb1_wav_roots(vox1_root):
        part_scp, part_utt2spk = _scan_voxceleb(wav_root, "VoxCeleb1", "vox1_root", content)
        twice = sorted(set(part_scp) & set(wav_scp))
        if twice:
            raise DataDirError(
                f"{wav_root}: has utterance '{twice[0]}' that another part of {vox1_root} has too "
                "(the dev and test parts must not overlap; remove the copy)"
            )
        wav_scp.update(part_scp)
        utt2spk.update(part_utt2spk)
    vox1 = write_data_dir(data_root / "vox1", wav_scp, utt2spk)
    utts = set(utt2spk)
    for name, official in VOXCELEB_TRIALS.items():
        if (trials_dir / official).is_file():
            write_trials(vox1 / f"trials_{name}", convert_voxceleb_trials(trials_dir / official, utts))
        else:
            (vox1 / f"trials_{name}").unlink(missing_ok=True)  # from an earlier preparation with that list
    summary["vox1"] = len(wav_scp)
    return summary


def _scan_voxceleb(root, corpus: str, variable: str, content: str) -> tuple[dict[str, str], dict[str, str]]:
    root = Path(root)
    if not root.is_dir():
        raise DataDirError(
            f"{root}: no {corpus} here; set {variable} in run.sh to the folder holding id*/ "
            f"({content}; the corpus comes from {VOXCELEB_URL})"
        )
    wav_scp, utt2spk = scan_speaker_folders(root)
    return wav_scp, utt2spk
