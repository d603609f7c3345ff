"""Stage 0 of egs/cnceleb: CN-Celeb1 and CN-Celeb2 (v2 releases) to Kaldi data dirs.

The released trees (both at https://www.openslr.org/82/)::

    CN-Celeb_flac/data/id00000/singing-01-001.flac     every utterance of the 1,000 speakers
    CN-Celeb_flac/dev/dev.lst                           the 800 training speakers, one id a line
    CN-Celeb_flac/eval/enroll/id00800-enroll.flac       one enrollment file per evaluation speaker:
                                                        its enrollment utterances concatenated
    CN-Celeb_flac/eval/test/id00800-singing-01-001.flac test utterances
    CN-Celeb_flac/eval/lists/enroll.lst                 id00800-enroll enroll/id00800-enroll.wav
    CN-Celeb_flac/eval/lists/enroll.map                 id00800-enroll id00800/singing-01-002.wav ...
    CN-Celeb_flac/eval/lists/trials.lst                 id00800-enroll test/id00800-singing-01-001.wav 1
    CN-Celeb2_flac/data/id10000/<genre>-<session>-<n>.flac
    CN-Celeb2_flac/spk.lst                              the 1,996 speakers

The lists name ``.wav`` files (the corpus was first released as wav); a listed
path is looked up as given, then with ``.flac``.

Two trial lists come out of the evaluation part:

- ``trials_concat``: the released enrollment file (``id00800-enroll``, the
  speaker's enrollment utterances concatenated as audio) against each test
  utterance. This is what the original work's
  ``scripts/convert_cnceleb_trials_to_pairs.py`` makes from ``enroll.lst`` and
  ``trials.lst``, and WeSpeaker's CNC-Eval-Concat.
- ``avg_enroll_trials``: the same trials with the enrollment model
  ``id00800-enroll-avg``, the mean of the embeddings of the enrollment
  utterances of ``enroll.map`` (WeSpeaker's CNC-Eval-Avg). The models are listed
  in ``enroll_avg`` (``model utt1 utt2 ...``); stage 6 averages them
  (``steps/average_embeddings.py``). The list's name does not start with
  ``trials`` because its enrollment side is a model, not an utterance of the dir.
"""

from __future__ import annotations

import os
from pathlib import Path

from purl.data.datadir import DataDirError, write_kv, write_trials
from purl.data.prepare import write_data_dir

CNCELEB_URL = "https://www.openslr.org/82/"
AUDIO_SUFFIXES = (".flac", ".wav")
AVG_SUFFIX = "-avg"


def _read_list(path: Path, fields: int | None, what: str, fix: str) -> list[tuple[int, list[str]]]:
    """Non-empty lines of a corpus list as (line number, fields): exactly ``fields``
    of them, or with ``fields`` None at least two."""
    if not path.is_file():
        raise DataDirError(f"{path}: missing ({what}; {fix})")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if (len(parts) != fields) if fields is not None else (len(parts) < 2):
                raise DataDirError(f"{path} line {lineno}: expected {what}, got '{line.strip()}' ({fix})")
            rows.append((lineno, parts))
    if not rows:
        raise DataDirError(f"{path}: empty ({fix})")
    return rows


def _audio_path(base: Path, listed: str, where: str) -> Path:
    """``base/listed`` as given or with another audio suffix (the lists say .wav, the release is .flac)."""
    path = base / listed
    for candidate in (path,) + tuple(path.with_suffix(s) for s in AUDIO_SUFFIXES):
        if candidate.is_file():
            return candidate
    raise DataDirError(f"{where}: '{listed}' not found under {base} as .wav or .flac "
                       "(extract the whole release; the tree must be complete)")


def _speaker_utterances(data_dir: Path, speaker: str, where: str) -> dict[str, Path]:
    """<data>/<speaker>/*.{flac,wav} -> {utt id: path}; the id is ``<speaker>-<file stem>``."""
    folder = data_dir / speaker
    if not folder.is_dir():
        raise DataDirError(f"{where}: speaker '{speaker}' has no folder {folder} (extract the whole release)")
    utts = {f"{speaker}-{p.stem}": p.resolve() for p in sorted(folder.iterdir()) if p.suffix in AUDIO_SUFFIXES}
    if not utts:
        raise DataDirError(f"{where}: {folder} holds no .flac or .wav files")
    return utts


def _speaker_list(path: Path, corpus: str) -> list[tuple[int, str]]:
    rows = _read_list(path, 1, "one speaker id a line", f"it comes with {corpus} from {CNCELEB_URL}")
    for lineno, (speaker,) in rows:
        if "-" in speaker:
            raise DataDirError(f"{path} line {lineno}: speaker id '{speaker}' has a '-' (not a CN-Celeb id)")
    return [(lineno, speaker) for lineno, (speaker,) in rows]


def cnceleb_train(cn1_root: str | os.PathLike, cn2_root: str | os.PathLike | None) -> tuple[dict[str, str], dict[str, str]]:
    """The training set: CN-Celeb1's dev speakers (dev/dev.lst) and all of CN-Celeb2 (spk.lst)."""
    parts = [(Path(cn1_root), Path(cn1_root) / "dev" / "dev.lst", "CN-Celeb1")]
    if cn2_root is not None:
        parts.append((Path(cn2_root), Path(cn2_root) / "spk.lst", "CN-Celeb2"))
    wav_scp: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    for root, speaker_list, corpus in parts:
        _check_root(root, corpus)
        for lineno, speaker in _speaker_list(speaker_list, corpus):
            if speaker in utt2spk.values():
                raise DataDirError(f"{speaker_list} line {lineno}: speaker '{speaker}' listed twice or in both corpora")
            for utt, path in _speaker_utterances(root / "data", speaker, f"{speaker_list} line {lineno}").items():
                wav_scp[utt] = str(path)
                utt2spk[utt] = speaker
    return wav_scp, utt2spk


def cnceleb_eval(cn1_root: str | os.PathLike) -> tuple[dict[str, str], dict[str, str], list, dict[str, list[str]]]:
    """The evaluation part: (wav_scp, utt2spk, trials, enroll_avg).

    The dir holds the test utterances, the concatenated enrollment files and the
    enrollment utterances that enroll.map names; trials are (enroll, test,
    target) with the concatenated enrollment file on the enroll side.
    """
    root = Path(cn1_root)
    _check_root(root, "CN-Celeb1")
    eval_dir, lists = root / "eval", root / "eval" / "lists"
    fix = f"it comes with CN-Celeb1 v2 from {CNCELEB_URL}"
    wav_scp: dict[str, str] = {}
    utt2spk: dict[str, str] = {}

    def add(utt: str, path: Path, where: str) -> None:
        speaker = utt.split("-", 1)[0]
        if utt in wav_scp and wav_scp[utt] != str(path.resolve()):
            # The same id from eval/test (<spk>-<utt>.flac) and from data/<spk>/<utt>.flac
            # is the same recording.
            if Path(wav_scp[utt]).name.removeprefix(f"{speaker}-") != path.name.removeprefix(f"{speaker}-"):
                raise DataDirError(f"{where}: utterance id '{utt}' names two different files ({wav_scp[utt]}, {path})")
            return
        wav_scp[utt] = str(path.resolve())
        utt2spk[utt] = speaker

    enroll_file = lists / "enroll.lst"
    enroll_models = set()
    for lineno, (model, listed) in _read_list(enroll_file, 2, "'<spk>-enroll enroll/<spk>-enroll.wav'", fix):
        if not model.endswith("-enroll"):
            raise DataDirError(f"{enroll_file} line {lineno}: enrollment id '{model}' does not end in '-enroll'")
        add(model, _audio_path(eval_dir, listed, f"{enroll_file} line {lineno}"), f"{enroll_file} line {lineno}")
        enroll_models.add(model)

    enroll_avg: dict[str, list[str]] = {}
    map_file = lists / "enroll.map"
    for lineno, (model, *listed) in _read_list(map_file, None, "'<spk>-enroll <spk>/<utt>.wav ...'", fix):
        where = f"{map_file} line {lineno}"
        if model not in enroll_models:
            raise DataDirError(f"{where}: '{model}' is not in {enroll_file}")
        utts = []
        for rel in listed:
            path = _audio_path(root / "data", rel, where)
            utt = f"{Path(rel).parts[0]}-{path.stem}"
            add(utt, path, where)
            utts.append(utt)
        enroll_avg[model + AVG_SUFFIX] = utts

    trials_file = lists / "trials.lst"
    trials = []
    for lineno, (model, listed, label) in _read_list(trials_file, 3, "'<spk>-enroll test/<utt>.wav <0|1>'", fix):
        where = f"{trials_file} line {lineno}"
        if label not in ("0", "1"):
            raise DataDirError(f"{where}: label '{label}' is not 0 or 1")
        if model not in enroll_models:
            raise DataDirError(f"{where}: '{model}' is not in {enroll_file}")
        path = _audio_path(eval_dir, listed, where)
        test = path.stem
        if "-" not in test:
            raise DataDirError(f"{where}: test file '{listed}' is not named <spk>-<utt> as CN-Celeb's eval/test files are")
        add(test, path, where)
        trials.append((model, test, label == "1"))
    missing = sorted(enroll_models - {m.removesuffix(AVG_SUFFIX) for m in enroll_avg})
    if missing:
        raise DataDirError(f"{map_file}: no enrollment utterances for '{missing[0]}' ({len(missing)} models)")
    return wav_scp, utt2spk, trials, enroll_avg


def prepare_cnceleb(
    cn1_root: str | os.PathLike,
    cn2_root: str | os.PathLike | None,
    data_root: str | os.PathLike,
) -> dict[str, int]:
    """Writes <data_root>/cnceleb_train and <data_root>/cnceleb1_eval (with trials_concat,
    enroll_avg and avg_enroll_trials); returns {dir name: utterances}."""
    data_root = Path(data_root)
    # Read everything first: a broken list leaves no half-written dir behind.
    train = cnceleb_train(cn1_root, cn2_root)
    wav_scp, utt2spk, trials, enroll_avg = cnceleb_eval(cn1_root)
    overlap = sorted(set(utt2spk.values()) & set(train[1].values()))
    if overlap:
        raise DataDirError(f"{cn1_root}/dev/dev.lst: evaluation speaker '{overlap[0]}' is also a training speaker "
                           f"({len(overlap)} such; the dev list must not name eval speakers)")
    write_data_dir(data_root / "cnceleb_train", *train)
    eval_dir = data_root / "cnceleb1_eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    # The lists go first: write_data_dir writes utt2spk last, which marks the dir complete.
    write_trials(eval_dir / "trials_concat", trials)
    write_kv(eval_dir / "enroll_avg", {m: " ".join(u) for m, u in enroll_avg.items()})
    write_trials(eval_dir / "avg_enroll_trials", ((m + AVG_SUFFIX, t, y) for m, t, y in trials))
    write_data_dir(eval_dir, wav_scp, utt2spk)
    return {"cnceleb_train": len(train[0]), "cnceleb1_eval": len(wav_scp)}


def _check_root(root: Path, corpus: str) -> None:
    if not (root / "data").is_dir():
        raise DataDirError(f"{root}: no {corpus} here (expected {root}/data/id*/; set the corpus root in run.sh "
                           f"to the extracted {'CN-Celeb_flac' if corpus == 'CN-Celeb1' else 'CN-Celeb2_flac'} "
                           f"folder, from {CNCELEB_URL})")

