"""Kaldi data directories: the contract between stages.

A data dir holds plain text files of ``key value`` lines, sorted by key under the
C locale (byte order), one line per key:

    wav.scp         utt  path, or a command ending in '|' that writes audio to stdout
    utt2spk         utt  speaker (utterance ids start with the speaker id)
    spk2utt         spk  utt1 utt2 ...
    utt2dur         utt  seconds
    feats.scp       utt  ark:offset (written by stage 1)
    utt2num_frames  utt  frames
    utt2truespk     utt  true speaker (only in dirs made by the noise simulation)
    utt2oldspk      utt  the label before stage 5's relabelling (only in relabelled dirs)
    trials          utt1 utt2 target|nontarget (test dirs; also trials_<name>)

Everything here raises :class:`DataDirError` with the file, the line and the fix;
only entry scripts turn that into an exit code.
"""

from __future__ import annotations

import gc
import math
import os
import random
import shutil
from contextlib import contextmanager
from itertools import compress, repeat
from operator import itemgetter
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from purl.errors import PurlError
from purl.fileio import write_text_atomic
from purl.records import read_record

# Files keyed by utterance whose keys must agree with utt2spk.
UTT_FILES = ("wav.scp", "utt2spk", "utt2dur", "feats.scp", "utt2num_frames", "utt2truespk", "utt2oldspk")
# Files of exactly two fields a line, and what they are: a third field is an id
# (or value) with whitespace in it, which would otherwise shift into the value.
TWO_FIELDS = {"utt2spk": "utt speaker", "utt2truespk": "utt speaker", "utt2oldspk": "utt speaker",
              "utt2dur": "utt seconds", "utt2num_frames": "utt frames"}


class DataDirError(PurlError, ValueError):
    """A data directory, or a file in it, is malformed."""


def sort_key(key: str) -> str:
    """The order of ``LC_ALL=C sort``: by the bytes of the UTF-8 encoding, which
    is the order of the code points, so the str itself (encoding a million keys
    for each sort or check cost seconds per file)."""
    return key


@contextmanager
def gc_paused():
    """Runs a bulk build of millions of small objects without the cyclic garbage
    collector: they make no cycles, and its passes over them cost as much as
    the parsing itself (measured: a VoxCeleb-size data dir reads in half the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_kv(path: str | os.PathLike, *, multi: bool = False, check_sorted: bool = True) -> dict[str, str | list[str]]:
    """Reads a ``key value`` file into an ordered dict.

    ``multi=True`` splits the value on whitespace into a list (spk2utt). Raises on a
    line without a value, a duplicate key, (with ``check_sorted``) a key out of
    C-locale order, or more than two fields in a file of two (TWO_FIELDS, by the
    file's name: an id with a space).
    """
    with gc_paused():
        return _read_kv(Path(path), multi, check_sorted)


def _read_kv(path: Path, multi: bool, check_sorted: bool) -> dict[str, str | list[str]]:
    if not path.is_file():
        raise DataDirError(f"{path}: no such file")
    # The common case, a good file, in a few C-level passes; any problem is
    # then located, line by line, by the loop below.
    lines = _text_lines(path)
    pairs = list(map(str.split, lines, repeat(None), repeat(1)))
    # split(None, 1) gives at most 2 fields, so 2 per line on average is 2 on every line
    two_fields = TWO_FIELDS.get(path.name)
    if sum(map(len, pairs)) == 2 * len(pairs):
        keys = list(map(itemgetter(0), pairs))
        values = list(map(str.rstrip, map(itemgetter(1), pairs)))
        del pairs
        # the values run together hold no whitespace: one field each (str.split's whitespace, in one C pass)
        if two_fields is None or len("".join(values).split()) <= 1:
            table = dict(zip(keys, list(map(str.split, values)) if multi else values))
            # str order is the C locale's (see sort_key)
            if len(table) == len(keys) and (not check_sorted or keys == sorted(keys)):
                return table
    table = {}
    previous = ""
    for lineno, line in enumerate(lines, 1):
        parts = line.split(maxsplit=1)
        value = parts[1].strip() if len(parts) == 2 else ""
        if not value:
            if not parts:
                raise DataDirError(f"{path} line {lineno}: empty line (remove it)")
            raise DataDirError(f"{path} line {lineno}: '{parts[0]}' has no value")
        if two_fields is not None and len(line.split()) != 2:
            raise DataDirError(too_many_fields(path, lineno, line, two_fields))
        key = parts[0]
        # In a sorted file only a key not after the previous one can repeat
        # one (str order is the C locale's, see sort_key).
        if key <= previous or not check_sorted:
            if key in table:
                raise DataDirError(f"{path} line {lineno}: duplicate key '{key}' (each key must appear once)")
            if check_sorted:
                raise DataDirError(
                    f"{path} line {lineno}: '{key}' sorts before '{previous}' "
                    f"(run utils/fix_data_dir.py {path.parent})"
                )
        table[key] = value.split() if multi else value
        previous = key
    return table


def too_many_fields(path: Path, lineno: int, line: str, form: str) -> str:
    """The message for a line of a two-field file (``form``, e.g. 'utt speaker') with more fields."""
    return (f"{path} line {lineno}: {len(line.split())} fields ({' '.join(map(repr, line.split()))}), expected 2 "
            f"('{form}'): ids cannot hold whitespace; replace it in this id (e.g. by '_') in every file of "
            f"{path.parent}, or remake the dir")


def _text_lines(path: Path) -> list[str]:
    """The lines of a data-dir file, refusing what would otherwise become an
    invisible part of a key: a UTF-8 byte-order mark, bytes that are not UTF-8."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raise DataDirError(f"{path} line 1: starts with a UTF-8 byte-order mark (an editor's; remove it, "
                           f"e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' {path})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = raw[:e.start].count(b"\n") + 1
        raise DataDirError(f"{path} line {lineno}: bytes that are not UTF-8 ({raw[e.start:e.start + 4]!r}); "
                           f"data-dir files are UTF-8 text (convert it, e.g. iconv -f latin1 -t utf-8)") from None
    return text.splitlines()


def write_kv(path: str | os.PathLike, table: Mapping[str, object] | Iterable[tuple[str, object]]) -> None:
    """Writes ``key value`` lines sorted under the C locale, atomically.

    A list value is joined with spaces (spk2utt). The file appears complete or not
    at all: it is written under a temporary name and renamed.
    """
    path = Path(path)
    items = table.items() if isinstance(table, Mapping) else table
    ordered = sorted(items, key=itemgetter(0))  # str order is the C locale's (see sort_key)
    try:  # string values, the common case, joined in C
        body = "\n".join(map(" ".join, ordered))
    except TypeError:  # lists (spk2utt) or numbers
        body = "\n".join(f"{key} {' '.join(value) if isinstance(value, (list, tuple)) else value}"
                         for key, value in ordered)
    write_text_atomic(path, body + "\n" if ordered else "")


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):  # the C locale's order (see sort_key)
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return dict(sorted(spk2utt.items(), key=itemgetter(0)))


def spk2utt_to_utt2spk(spk2utt: Mapping[str, Sequence[str]]) -> dict[str, str]:
    pairs = [(utt, spk) for spk, utts in spk2utt.items() for utt in utts]
    return dict(sorted(pairs, key=itemgetter(0)))


def read_trials(path: str | os.PathLike) -> list[tuple[str, str, bool]]:
    """Reads ``utt1 utt2 target|nontarget`` lines; returns (utt1, utt2, is_target).
    A trial of an utterance against itself is refused."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: no such trial list")
    trials = []
    for lineno, line in enumerate(_text_lines(path), 1):
        parts = line.split()
        if len(parts) != 3 or parts[2] not in ("target", "nontarget"):
            raise DataDirError(
                f"{path} line {lineno}: expected 'utt1 utt2 target|nontarget', got '{line.strip()}'"
            )
        if parts[0] == parts[1]:
            raise DataDirError(f"{path} line {lineno}: '{parts[0]}' against itself (a self-trial scores 1 whatever "
                               "the model and tells nothing; remove the line)")
        trials.append((parts[0], parts[1], parts[2] == "target"))
    if not trials:
        raise DataDirError(f"{path}: empty trial list (regenerate it with the recipe's stage 0)")
    return trials


def trial_files(data_dir: str | os.PathLike) -> list[Path]:
    """The trial lists of a data dir: ``trials`` and ``trials_*``."""
    data_dir = Path(data_dir)
    return sorted(p for p in data_dir.glob("trials*") if p.is_file() and not p.name.endswith(".tmp"))


FEATS_SETTINGS = "feats.settings"  # stage 1's record of what feats.scp was made from, feature type included


class DataDir:
    """Read access to a data dir; files are loaded when first asked for."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise DataDirError(f"{self.path}: no such data directory")
        self._cache: dict[str, dict] = {}
        self._keys: dict[str, list[str]] = {}

    @property
    def feats_record(self) -> dict:
        """What stage 1 recorded of the dir's features (feats.settings; {} where none)."""
        return read_record(self.path / FEATS_SETTINGS) or {}

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def table(self, name: str) -> dict:
        if name not in self._cache:
            self._cache[name] = read_kv(self.path / name, multi=(name == "spk2utt"))
        return self._cache[name]

    @property
    def utt2spk(self) -> dict:
        return self.table("utt2spk")

    @property
    def spk2utt(self) -> dict:
        return self.table("spk2utt")

    @property
    def utts(self) -> list[str]:
        """The utterance ids in file order: one list, made once and shared by
        every access (indexing it in a loop stays linear); do not modify it."""
        if "utt2spk" not in self._keys:
            self._keys["utt2spk"] = list(self.utt2spk)
        return self._keys["utt2spk"]

    @property
    def speakers(self) -> list[str]:
        """The speaker ids in file order; shared like :attr:`utts`."""
        if "spk2utt" not in self._keys:
            self._keys["spk2utt"] = list(self.spk2utt)
        return self._keys["spk2utt"]

    def __len__(self) -> int:
        return len(self.utt2spk)

    def __repr__(self) -> str:
        return f"DataDir({str(self.path)!r})"


def validate_data_dir(
    path: str | os.PathLike,
    *,
    require: Sequence[str] = ("utt2spk", "spk2utt"),
    check_audio: bool = False,
) -> DataDir:
    """Checks a data dir and returns it, or raises one error naming every problem.

    Checks: each present file is sorted with unique keys; spk2utt agrees with
    utt2spk; utterance ids start with their speaker id; every utterance of utt2spk
    has an entry in each per-utterance file present (and no file has extra ones);
    with ``check_audio`` every wav.scp path is an existing, non-empty file; trial lists name utterances of
    the dir.
    """
    path = Path(path)
    problems: list[str] = []
    fix = f"(run utils/fix_data_dir.py {path})"
    if not path.is_dir():
        raise DataDirError(f"{path}: no such data directory")
    for name in require:
        if not (path / name).is_file():
            problems.append(f"{path / name}: missing")
    tables: dict[str, dict] = {}
    for name in UTT_FILES + ("spk2utt",):
        if (path / name).is_file():
            try:
                tables[name] = read_kv(path / name, multi=(name == "spk2utt"))
            except DataDirError as e:
                problems.append(str(e))
    if (path / "segments").is_file():
        problems.append(SEGMENTS_UNSUPPORTED.format(path=path))
    utt2spk = tables.get("utt2spk")
    if utt2spk is not None and not utt2spk:
        problems.append(f"{path}/utt2spk: no utterances (an empty data dir; check the corpus path of stage 0)")
    problems += value_problems(path, tables)
    if utt2spk is not None:
        # In a dir with simulated label noise the ids keep their true speaker,
        # in a relabelled one the speaker they had.
        true_name = next((n for n in ("utt2truespk", "utt2oldspk") if n in tables), "utt2spk")
        for utt, spk in tables[true_name].items():
            if not utt.startswith(spk):
                problems.append(
                    f"{path}/{true_name}: utterance '{utt}' does not start with its speaker id '{spk}' "
                    "(prefix utterance ids with the speaker id so that sorting keeps speakers together)"
                )
                break
        if "spk2utt" in tables and utt2spk_to_spk2utt(utt2spk) != tables["spk2utt"]:
            problems.append(
                f"{path}/spk2utt does not agree with utt2spk "
                f"(run utils/utt2spk_to_spk2utt.py {path}/utt2spk > {path}/spk2utt)"
            )
        for name, table in tables.items():
            if name in ("utt2spk", "spk2utt"):
                continue
            if len(table) == len(utt2spk) and list(table) == list(utt2spk):
                continue  # both sorted and unique: the common case, compared in order without hashing
            missing = [u for u in utt2spk if u not in table]
            extra = [u for u in table if u not in utt2spk]
            if missing:
                problems.append(f"{path}/{name}: no entry for {len(missing)} utterance(s) of utt2spk, e.g. '{missing[0]}' {fix}")
            if extra:
                problems.append(f"{path}/{name}: {len(extra)} utterance(s) not in utt2spk, e.g. '{extra[0]}' {fix}")
        if check_audio and "wav.scp" in tables:
            from purl.audio import audio_file_problem  # here: PyAV's import costs every reader of data dirs
            bad = [(lineno, utt, value, problem) for lineno, (utt, value) in enumerate(tables["wav.scp"].items(), 1)
                   if not value.endswith("|") and (problem := audio_file_problem(value))]
            if bad:
                lineno, utt, value, problem = bad[0]
                more = f"; {len(bad) - 1} more with no usable file" if len(bad) > 1 else ""
                problems.append(f"{path}/wav.scp line {lineno}: the audio of '{utt}', {value}, {problem}{more} "
                                f"(correct the paths, or delete those lines and run utils/fix_data_dir.py {path})")
        for trials in trial_files(path):
            try:
                for lineno, (u1, u2, _) in enumerate(read_trials(trials), 1):
                    unknown = next((u for u in (u1, u2) if u not in utt2spk), None)
                    if unknown is not None:
                        problems.append(
                            f"{trials} line {lineno}: '{unknown}' is not an utterance of {path}/utt2spk "
                            "(remove the trial or restore the utterance)"
                        )
                        break
            except DataDirError as e:
                problems.append(str(e))
    if problems:
        raise DataDirError("validate_data_dir: " + "\n  ".join([f"{path} is not valid:"] + problems))
    data = DataDir(path)
    data._cache.update(tables)  # the tables read here serve the caller (at VoxCeleb size, seconds each)
    return data


SEGMENTS_UNSUPPORTED = (
    "{path}/segments: data dirs with segments are not supported (their utterances are parts of wav.scp "
    "recordings); cut the segments into files first (e.g. Kaldi's extract-segments, or sox trim) and make a "
    "wav.scp of those files")


def value_problems(path: Path, tables: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The first bad value of each file whose values have a form: durations and
    frame counts positive numbers, feats.scp entries ark offsets (kaldiio would
    run a command entry)."""
    problems = []
    forms = {"utt2dur": (float, "a positive duration in seconds"),
             "utt2num_frames": (int, "a positive whole number of frames")}
    for name, (kind, what) in forms.items():
        values = list(tables.get(name, {}).values())
        try:  # the common case, all good, in one C loop; the loop below finds the first bad value
            numbers = np.array(values, dtype=np.float64 if kind is float else np.int64)
            if np.isfinite(numbers).all() and (numbers > 0).all():
                continue
        except (ValueError, OverflowError):
            pass
        for lineno, (utt, value) in enumerate(tables.get(name, {}).items(), 1):
            try:
                number = kind(value)
                good = math.isfinite(number) and number > 0
            except ValueError:
                good = False
            if not good:
                problems.append(f"{path}/{name} line {lineno}: '{utt}' has '{value}', not {what} "
                                f"(remake it: delete it and rerun stage 1)")
                break
    for lineno, (utt, value) in enumerate(tables.get("feats.scp", {}).items(), 1):
        if value.endswith("|"):
            problems.append(f"{path}/feats.scp line {lineno}: '{utt}' is a command ({value}); feats.scp takes "
                            "ark:offset entries only (commands belong in wav.scp)")
            break
    return problems


def fix_data_dir(path: str | os.PathLike) -> tuple[int, int]:
    """Keeps the utterances present in every per-utterance file, sorted and unique.

    The old files go to ``<dir>/.backup/``; spk2utt is remade from utt2spk. Lines
    that cannot be parsed and repeated identical lines are dropped; a key with
    two different values is an error (nothing is written). Returns (kept,
    dropped) utterance counts.
    """
    path = Path(path)
    if not (path / "utt2spk").is_file():
        raise DataDirError(f"{path}/utt2spk: missing; fix_data_dir needs it to know the utterances")
    if (path / "segments").is_file():
        raise DataDirError(SEGMENTS_UNSUPPORTED.format(path=path))
    tables: dict[str, dict[str, str]] = {}
    for name in UTT_FILES:
        if (path / name).is_file():
            table: dict[str, str] = {}
            first_line: dict[str, int] = {}
            for lineno, line in enumerate(_text_lines(path / name), 1):
                parts = line.split(maxsplit=1)
                if len(parts) != 2 or not parts[1].strip():
                    continue
                if name in TWO_FIELDS and len(line.split()) != 2:
                    # dropping it would lose an utterance without a word: the id needs mending
                    raise DataDirError(too_many_fields(path / name, lineno, line, TWO_FIELDS[name]))
                key, value = parts[0], parts[1].strip()
                if key in table and table[key] != value:
                    # Keeping either would be a guess: the user must say which is right.
                    raise DataDirError(
                        f"{path / name} lines {first_line[key]} and {lineno}: '{key}' has two different values "
                        f"('{table[key]}' and '{value}'); delete the wrong line, then rerun fix_data_dir.py")
                if key not in table:
                    table[key], first_line[key] = value, lineno
            tables[name] = table
    keep = set(tables["utt2spk"])
    for table in tables.values():
        keep &= set(table)
    true_spk = tables.get("utt2truespk", tables["utt2spk"])
    keep = {u for u in keep if u.startswith(true_spk[u])}
    all_utts = set().union(*tables.values())
    backup = path / ".backup"
    backup.mkdir(exist_ok=True)
    for name in list(tables) + ["spk2utt"]:
        if (path / name).is_file():
            shutil.copy2(path / name, backup / name)
    for name, table in tables.items():
        write_kv(path / name, {u: v for u, v in table.items() if u in keep})
    write_kv(path / "spk2utt", utt2spk_to_spk2utt({u: tables["utt2spk"][u] for u in keep}))
    return len(keep), len(all_utts) - len(keep)


def subset_data_dir(
    src: str | os.PathLike | DataDir,
    dst: str | os.PathLike,
    *,
    utts: Iterable[str] | None = None,
    speakers: Iterable[str] | None = None,
) -> DataDir:
    """Copies the part of ``src`` for the given utterances or speakers into ``dst``
    (a DataDir as ``src`` lends the files it has read already)."""
    src_dir = src if isinstance(src, DataDir) else DataDir(src)
    if (utts is None) == (speakers is None):
        raise ValueError("subset_data_dir: give exactly one of utts or speakers")
    if speakers is not None:
        speakers = set(speakers)
        unknown = speakers - set(src_dir.spk2utt)
        if unknown:
            raise DataDirError(f"{src_dir.path}/spk2utt: no speaker '{sorted(unknown)[0]}' ({len(unknown)} unknown)")
        keep = {u for u, s in src_dir.utt2spk.items() if s in speakers}
    else:
        keep = set(utts)
        unknown = keep - set(src_dir.utt2spk)
        if unknown:
            raise DataDirError(f"{src_dir.path}/utt2spk: no utterance '{sorted(unknown)[0]}' ({len(unknown)} unknown)")
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    utts = src_dir.utts
    kept = [u in keep for u in utts]  # one set lookup per utterance, for every file
    for name in UTT_FILES:
        if src_dir.has(name):
            table = src_dir.table(name)
            if name == "utt2spk" or (len(table) == len(utts) and list(table) == utts):
                part = dict(compress(table.items(), kept))  # in utt2spk's order: filtered in C
            else:
                part = {u: v for u, v in table.items() if u in keep}
            write_kv(dst / name, part)
    write_kv(dst / "spk2utt", utt2spk_to_spk2utt({u: src_dir.utt2spk[u] for u in keep}))
    return DataDir(dst)


def split_data_dir(path: str | os.PathLike, nj: int, under: str | os.PathLike | None = None) -> list[Path]:
    """Splits a data dir into ``nj`` parts of near-equal utterance counts.

    Writes ``<dir>/split<nj>/<1..nj>/`` (Kaldi's layout), or
    ``<under>/split<nj>/<1..nj>/`` (a stage that only reads the dir keeps its
    splits beside its outputs: the dir may be read-only, or another run's), and
    returns their paths.
    Reuses an existing split that has every per-utterance file of the dir, newer
    than the dir's own (a split made before stage 1 lacks feats.scp).
    """
    data = DataDir(path)
    if nj < 1:
        raise DataDirError(f"split_data_dir: nj must be >= 1, got {nj}")
    if nj > len(data):
        raise DataDirError(f"{data.path}: cannot split {len(data)} utterances into {nj} jobs (use --nj {len(data)} or fewer)")
    root = (data.path if under is None else Path(under)) / f"split{nj}"
    parts = [root / str(n) for n in range(1, nj + 1)]
    present = [name for name in UTT_FILES if data.has(name)]
    stamp = max((data.path / name).stat().st_mtime for name in present)
    if all((p / name).is_file() and (p / name).stat().st_mtime >= stamp for p in parts for name in present):
        return parts
    # Each file is read once for all parts (a subset per part would reread and
    # filter the whole dir nj times); the files are sorted, so a part is a run
    # of consecutive lines.
    utts = data.utts
    bounds = [len(utts) * n // nj for n in range(nj + 1)]
    for name in present:
        table = data.table(name)
        if len(table) == len(utts) and list(table) == utts:  # the common case: no lookup by id
            values = list(table.values())
        else:
            missing = next((u for u in utts if u not in table), None)
            if missing is not None:
                raise DataDirError(f"{data.path}/{name}: no entry for '{missing}' of utt2spk "
                                   f"(run utils/fix_data_dir.py {data.path})")
            values = [table[u] for u in utts]
        for part, lo, hi in zip(parts, bounds, bounds[1:]):
            part.mkdir(parents=True, exist_ok=True)
            write_text_atomic(part / name, "".join(map("{} {}\n".format, utts[lo:hi], values[lo:hi])))
    speaker_of = list(data.utt2spk.values())  # in utts' order: each part a slice, no lookup by id
    for part, lo, hi in zip(parts, bounds, bounds[1:]):
        write_kv(part / "spk2utt", utt2spk_to_spk2utt(dict(zip(utts[lo:hi], speaker_of[lo:hi]))))
    return parts


def make_trials(
    utt2spk: Mapping[str, str],
    *,
    max_targets: int = 10000,
    seed: int = 0,
) -> list[tuple[str, str, bool]]:
    """Every target pair (up to ``max_targets``) and as many non-target pairs.

    Deterministic for a seed; pairs are unordered and never repeat.
    """
    rng = random.Random(seed)
    spk2utt = utt2spk_to_spk2utt(utt2spk)
    targets = [(a, b) for u in spk2utt.values() for i, a in enumerate(u) for b in u[i + 1:]]
    if len(targets) > max_targets:
        targets = rng.sample(targets, max_targets)
    utts = sorted(utt2spk, key=sort_key)
    if len(spk2utt) < 2 or not targets:
        raise DataDirError("make_trials: need at least 2 speakers and one speaker with 2 utterances "
                           "(hold out more test speakers)")
    nontargets: set[tuple[str, str]] = set()
    max_nontargets = len(utts) * (len(utts) - 1) // 2 - sum(len(u) * (len(u) - 1) // 2 for u in spk2utt.values())
    while len(nontargets) < min(len(targets), max_nontargets):
        a, b = rng.sample(utts, 2)
        if utt2spk[a] != utt2spk[b]:
            nontargets.add((a, b) if sort_key(a) < sort_key(b) else (b, a))
    trials = [(a, b, True) for a, b in targets] + [(a, b, False) for a, b in sorted(nontargets)]
    rng.shuffle(trials)
    return trials


def write_trials(path: str | os.PathLike, trials: Iterable[tuple[str, str, bool]]) -> None:
    write_text_atomic(path, "".join(f"{u1} {u2} {'target' if t else 'nontarget'}\n" for u1, u2, t in trials))
