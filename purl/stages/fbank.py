"""Stage 1: fbank features of a data dir, in nj parallel jobs (steps/make_fbank.sh).

The layout: each data dir's arks under ``<fbank-root>/<name>_<hash of its path>/``
as ``raw_fbank.<n>.{ark,scp,utt2num_frames,utt2dur,failed,settings}``, with
``data_dir`` naming their owner; the merged ``feats.scp``, ``utt2num_frames``,
``utt2dur``, ``feats.settings`` and ``log/fbank_failed`` in the data dir. A job
or a dir whose settings record equals the one it would write now is skipped.
"""

from __future__ import annotations

import filecmp
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from purl.audio import AudioError, read_audio
from purl.data.datadir import (
    FEATS_SETTINGS,
    UTT_FILES,
    DataDir,
    DataDirError,
    fix_data_dir,
    read_kv,
    read_trials,
    split_data_dir,
    trial_files,
    validate_data_dir,
    write_kv,
)
from purl.features import (
    FEATURE_TYPES,
    FRAME_LENGTH_S,
    FRAME_SHIFT_S,
    MIN_FRAMES,
    FeatureError,
    compute_features,
    feature_type_of,
    frames_of,
)
from purl.fileio import disk_full_error, is_disk_full
from purl.kaldi_io import ArkWriter
from purl.records import audio_digest, differences, matches, read_record, scp_arks, scp_digest, write_record

log = logging.getLogger(__name__)


@dataclass
class FbankJobResult:
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def fbank_job_settings(wav_scp: dict[str, str], *, sample_rate: int, num_mel_bins: int, compress: bool,
                       min_frames: int, feature_type: str = "kaldi") -> dict:
    """What a job's (or a whole dir's) features are made from: the options, the
    wav.scp entries and the audio files they name (see purl.records). The
    feature type is recorded when it is not kaldi, so that the records of Kaldi
    features written before there were types still hold."""
    text = "".join(f"{u} {v}\n" for u, v in wav_scp.items())
    kind = {} if feature_type == "kaldi" else {"feature_type": feature_type}
    return {
        "sample_rate": sample_rate, "num_mel_bins": num_mel_bins, "compress": compress, "min_frames": min_frames,
        "frame_shift_s": FRAME_SHIFT_S, "frame_length_s": FRAME_LENGTH_S, "dither": 0.0, **kind,
        "wav_scp": hashlib.sha1(text.encode()).hexdigest(), "audio": audio_digest(wav_scp),
    }


def make_fbank_job(
    wav_scp: dict[str, str],
    ark_path: str | os.PathLike,
    *,
    sample_rate: int = 16000,
    num_mel_bins: int = 80,
    compress: bool = True,
    min_frames: int = MIN_FRAMES,
    feature_type: str = "kaldi",
    on_utt: Callable[[], None] | None = None,
) -> FbankJobResult:
    """Computes features for every entry of ``wav_scp`` into one ark with its scp.

    Writes ``<ark>`` and ``<ark minus .ark>.scp``, ``.utt2num_frames``, ``.utt2dur``,
    ``.failed`` (utt and reason) and ``.settings`` (what the job was made from,
    purl.records) beside it. All appear only when the job is complete
    (temporary names, then renames, the settings record last: a rerun takes a job
    as done only when its record equals the one it would write). An utterance
    whose audio is unreadable, empty, shorter than ``min_frames`` or of another
    sample rate is recorded as failed, not fatal (several channels are averaged:
    purl.audio); one whose features are not finite (NaN or inf samples) fails
    the job, naming it.
    """
    ark_path = Path(ark_path)
    base = ark_path.with_suffix("")
    outputs = {ext: Path(f"{base}{ext}") for ext in (".utt2num_frames", ".utt2dur", ".failed", ".scp", ".settings")}
    outputs[".settings"].unlink(missing_ok=True)  # the old record must not vouch for what is written now
    # Taken before reading: audio changed during the job makes the record stale, not wrong.
    settings = fbank_job_settings(wav_scp, sample_rate=sample_rate, num_mel_bins=num_mel_bins,
                                  compress=compress, min_frames=min_frames, feature_type=feature_type)
    tmp = {ext: p.with_name(p.name + ".tmp") for ext, p in outputs.items()}
    tmp_ark = ark_path.with_name(ark_path.name + ".tmp")
    result = FbankJobResult()
    frames_lines, dur_lines = [], []
    try:
        with ArkWriter(tmp_ark, tmp[".scp"], ark_name=ark_path, compress=compress) as writer:
            for utt, entry in wav_scp.items():
                try:
                    samples, rate = read_audio(entry)
                    if rate != sample_rate:
                        raise AudioError(
                            f"sample rate {rate} Hz, expected {sample_rate} Hz "
                            f"(resample the corpus, e.g. with 'sox in.wav -r {sample_rate} out.wav', or set --sample-rate)"
                        )
                    frames = frames_of(len(samples), rate, feature_type)
                    if frames < min_frames:
                        raise AudioError(f"too short: {len(samples) / rate:.3f} s gives {frames} frames, "
                                         f"fewer than --min-frames {min_frames}")
                    if not np.isfinite(samples).all():
                        raise FeatureError(f"{utt}: NaN or inf samples in {entry} (its features would not be "
                                           "finite); fix or remove this file (utils/subset_data_dir.py)")
                    feats = compute_features(samples, feature_type, sample_rate, num_mel_bins)
                except AudioError as e:
                    result.failed[utt] = str(e)
                else:
                    writer(utt, feats)
                    frames_lines.append(f"{utt} {len(feats)}\n")
                    dur_lines.append(f"{utt} {len(samples) / rate:.3f}\n")
                    result.done += 1
                if on_utt is not None:
                    on_utt()
        tmp[".utt2num_frames"].write_text("".join(frames_lines))
        tmp[".utt2dur"].write_text("".join(dur_lines))
        tmp[".failed"].write_text("".join(f"{u} {why}\n" for u, why in result.failed.items()))
    except BaseException as e:
        error = disk_full_error(e, ark_path, tmp_ark) if is_disk_full(e) else None
        for path in [tmp_ark, *tmp.values()]:
            path.unlink(missing_ok=True)
        if error is not None:
            raise error from e
        raise
    os.replace(tmp_ark, ark_path)
    for ext in (".utt2num_frames", ".utt2dur", ".failed", ".scp"):
        os.replace(tmp[ext], outputs[ext])
    write_record(outputs[".settings"], settings)
    return result


def fbank_dir_for(data_dir: str | os.PathLike, fbank_root: str | os.PathLike) -> Path:
    """``<fbank_root>/<name>_<8 hex digits of the data dir's absolute path>``:
    data/a/train and data/b/train never share (and overwrite) one set of arks."""
    data_dir = Path(data_dir).resolve()
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:8]
    return Path(fbank_root) / f"{data_dir.name}_{digest}"


STALE_SUFFIX = ".stale"  # feats.scp moved aside when stage 1 starts to redo a dir


def ark_stats(feats_scp: str | os.PathLike) -> dict[str, str]:
    """{ark path: 'size mtime_ns'} of every ark a feats.scp points into (a
    missing ark: 'missing')."""
    stats = {}
    for ark in scp_arks(feats_scp):
        try:
            st = os.stat(ark)
            stats[ark] = f"{st.st_size} {st.st_mtime_ns}"
        except OSError:
            stats[ark] = "missing"
    return stats


def _vouched_arks(data: Path) -> dict[str, str] | None:
    """The arks (with their size and time) that the dir's feats.settings vouches
    for, or None when it has no record. A record from before the arks were
    recorded vouches for its feats.scp only as it was (text and arks)."""
    record = read_record(data / FEATS_SETTINGS)
    if record is None:
        return None
    if "arks" in record:
        return record["arks"]
    if record.get("feats_scp") == scp_digest(data / "feats.scp"):
        return ark_stats(data / "feats.scp")
    return {}


def check_features(data_dir: str | os.PathLike, user: str) -> None:
    """Refuses a data dir whose features stage 1 does not vouch for now: no
    feats.scp, no feats.settings (stage 1 was interrupted while redoing it, or
    the dir's feats.scp was made elsewhere), or an ark that feats.scp names
    missing from the record or rewritten since (size or time). Every stage that
    reads features calls this first; ``user`` names it in the message."""
    data = Path(data_dir)
    if not (data / "feats.scp").is_file():
        raise DataDirError(f"{user}: {data}/feats.scp missing (run stage 1, steps/make_fbank.sh {data})")
    vouched = _vouched_arks(data)
    if vouched is None:
        raise DataDirError(
            f"{user}: {data}/feats.scp has no record {data}/{FEATS_SETTINGS}: stage 1 did not finish it (killed "
            f"while recomputing?), or it was made elsewhere; run steps/make_fbank.sh {data} (it recomputes, or "
            "adopts a feats.scp made by Kaldi)")
    for ark, stat in ark_stats(data / "feats.scp").items():
        if vouched.get(ark) != stat:
            why = "not among the arks it records" if ark not in vouched else \
                f"{'missing' if stat == 'missing' else 'rewritten'} since it was recorded"
            raise DataDirError(
                f"{user}: {data}/feats.scp points into {ark}, {why} in {data}/{FEATS_SETTINGS} (stage 1 "
                f"recomputed or was interrupted after this dir was made); rerun stage 1 for {data}, or remake "
                "this dir from its source")


def record_features(data_dir: str | os.PathLike, record: dict, feats_scp: str | os.PathLike | None = None) -> None:
    """Writes the dir's feats.settings: ``record`` with the digest and the arks
    of ``feats_scp`` (the dir's own by default)."""
    data = Path(data_dir)
    scp = Path(feats_scp) if feats_scp is not None else data / "feats.scp"
    write_record(data / FEATS_SETTINGS, {**record, "feats_scp": scp_digest(scp), "arks": ark_stats(scp)})


def record_derived_features(dst: str | os.PathLike, *sources: str | os.PathLike, user: str) -> None:
    """A dir made from the lines of others (a noisy, filtered or relabelled copy,
    a subset): vouches for its feats.scp as its sources' records vouch for
    theirs (each checked now). No record when ``dst`` has no feats.scp or a
    source has no record (a feats.scp made elsewhere: stage 1 adopts it)."""
    _record_derived([Path(dst)], sources, user)


def record_split_features(parts: list[Path], src: str | os.PathLike, user: str) -> None:
    """The parts of a split of ``src`` (split_data_dir) recorded as dirs derived
    from it, ``src`` checked once: a job on a part reads its features' type there."""
    _record_derived(parts, [src], user)


def _record_derived(dsts: list[Path], sources, user: str) -> None:
    for dst in dsts:
        (dst / FEATS_SETTINGS).unlink(missing_ok=True)
    dsts = [dst for dst in dsts if (dst / "feats.scp").is_file()]
    if not dsts or not all((Path(s) / FEATS_SETTINGS).is_file() for s in sources):
        return
    arks: dict[str, str] = {}
    kinds = {}
    for src in sources:
        check_features(src, user)
        arks.update(_vouched_arks(Path(src)))
        kinds[str(src)] = feature_type_of(src)
    if len(set(kinds.values())) > 1:
        raise FeatureError(f"{user}: {dsts[0]} would join features of different types "
                           f"({', '.join(f'{s}: {k}' for s, k in kinds.items())}); compute them with one --feature-type")
    kind = next(iter(kinds.values()))
    for dst in dsts:
        write_record(dst / FEATS_SETTINGS, {"derived_from": [str(Path(s)) for s in sources],
                                            **({} if kind == "kaldi" else {"feature_type": kind}),
                                            "feats_scp": scp_digest(dst / "feats.scp"), "arks": arks})


def feats_status(data_dir: str | os.PathLike, settings: dict) -> tuple[str, list[str]]:
    """Whether a data dir's feats.scp is stage 1's output for ``settings``:
    ('missing' | 'complete' | 'foreign' | 'changed', what differs)."""
    data = Path(data_dir)
    if not (data / "feats.scp").is_file():
        return "missing", []
    record = read_record(data / FEATS_SETTINGS)
    if record is None or record.get("foreign"):
        return "foreign", []
    record = {k: v for k, v in record.items() if k != "arks"}  # the digest covers them
    expected = {**settings, "feats_scp": scp_digest(data / "feats.scp")}
    diff = differences(record, expected)
    return ("changed", diff) if diff else ("complete", [])


def merge_fbank_jobs(data_dir: str | os.PathLike, fbank_dir: str | os.PathLike, nj: int, *,
                     max_fail_frac: float = 0.01, settings: dict | None = None) -> list[str]:
    """Merges the outputs of ``nj`` finished jobs into the data dir.

    Writes utt2num_frames, utt2dur (when the dir has none) and feats.scp last, since
    a complete feats.scp is what tells later stages (and reruns) that stage 1 is
    done; with ``settings`` (the options of fbank_job_settings) the record of the
    merged dir goes into feats.settings just before feats.scp. Failed utterances
    are listed in ``<data>/log/fbank_failed``; when they are more than
    ``max_fail_frac`` of the dir, or a trial list of the dir names one of them,
    nothing is merged and FeatureError is raised, otherwise they are dropped from
    the dir. Returns the failed ids.
    """
    data = DataDir(data_dir)
    fbank_dir = Path(fbank_dir)
    merged: dict[str, dict[str, str]] = {".scp": {}, ".utt2num_frames": {}, ".utt2dur": {}}
    failed: dict[str, str] = {}
    for n in range(1, nj + 1):
        base = fbank_dir / f"raw_fbank.{n}"
        for ext, table in merged.items():
            if Path(f"{base}{ext}").stat().st_size > 0:
                table.update(read_kv(f"{base}{ext}", check_sorted=False))
        with open(f"{base}.failed", encoding="utf-8") as f:
            for line in f:
                utt, why = line.rstrip("\n").split(" ", 1)
                failed[utt] = why
    log_dir = failed_list(data.path).parent
    log_dir.mkdir(exist_ok=True)
    write_kv(failed_list(data.path), failed)
    total = len(data)
    # where each failed utterance is in the dir's wav.scp (sorted, one line per key)
    where = {u: f"{data.path}/wav.scp line {n}" for n, u in enumerate(data.table("wav.scp"), 1)
             if u in failed} if failed else {}
    listing = "\n".join(f"  {u} ({where[u]}): {why}" for u, why in list(failed.items())[:20])
    more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
    if len(failed) > max_fail_frac * total:
        raise FeatureError(
            f"{len(failed)} of {total} utterances of {data.path} failed, more than --max-fail-frac "
            f"{max_fail_frac} allows (all in {failed_list(data.path)}):\n{listing}{more}\n"
            "Fix or remove these files (utils/subset_data_dir.py), or raise --max-fail-frac."
        )
    for trials in trial_files(data.path):
        for lineno, (u1, u2, _) in enumerate(read_trials(trials), 1):
            lost = next((u for u in (u1, u2) if u in failed), None)
            if lost is not None:
                raise FeatureError(
                    f"{trials} line {lineno}: names '{lost}', which has no features ({where[lost]}: {failed[lost]}); "
                    f"dropping it would break the trial list. Fix the audio, or remove the utterance and its "
                    f"trials (utils/subset_data_dir.py, then regenerate {trials.name}). Failed: {failed_list(data.path)}"
                )
    write_kv(data.path / "utt2num_frames", merged[".utt2num_frames"])
    if not data.has("utt2dur"):
        write_kv(data.path / "utt2dur", merged[".utt2dur"])
    if failed:
        fix_data_dir(data.path)  # utt2num_frames lacks them: dropped everywhere, old files backed up
    scp_tmp = data.path / "feats.scp.tmp"
    write_kv(scp_tmp, merged[".scp"])
    (data.path / FEATS_SETTINGS).unlink(missing_ok=True)
    if settings is not None:
        # The record is of the dir as merged (failed utterances dropped) and
        # vouches for this feats.scp only: a kill before the rename leaves a
        # record that no feats.scp matches, so the rerun redoes the merge.
        wav_scp = read_kv(data.path / "wav.scp")
        record_features(data.path, fbank_job_settings(wav_scp, **settings), scp_tmp)
    os.replace(scp_tmp, data.path / "feats.scp")
    return list(failed)


def failed_list(data_dir: str | os.PathLike) -> Path:
    """``<data>/log/fbank_failed``: the utterances stage 1 dropped from the dir (id, why)."""
    return Path(data_dir) / "log" / "fbank_failed"


def is_feature_file(name: str) -> bool:
    """Whether a data dir's file ``name`` is of its features (stage 1's, or Kaldi's cmvn.scp and vad.scp)."""
    return name.startswith("feats.") or name in ("utt2num_frames", "cmvn.scp", "vad.scp")


def copy_data_dir(src: str | os.PathLike, dst: str | os.PathLike) -> bool:
    """Copies data dir ``src`` to ``dst`` without its features, for stage 1 to
    make features of another type there: every file but feats.scp (and its
    record), utt2num_frames, cmvn.scp and vad.scp; no folders (split*/, log/,
    .backup/) and no hidden files (locks). Returns True when it copied, False
    when ``dst`` is such a copy already (each of ``src``'s files as in
    ``src``, but for the utterances stage 1 dropped from ``dst`` for failing):
    it is kept with its features. Any other ``dst`` is refused, naming what
    differs: it was copied from another version of ``src``, or is another dir."""
    src, dst = Path(src), Path(dst)
    for name in ("utt2spk", "wav.scp"):
        if not DataDir(src).has(name):
            raise DataDirError(f"copy_data_dir: {src}/{name} missing: stage 1 computes the copy's features from the "
                               "audio of a data dir (one of ready features alone goes with --feature-type kaldi, "
                               "which adopts them)")
    names = sorted(p.name for p in src.iterdir() if p.is_file() and not p.name.startswith(".")
                   and not is_feature_file(p.name))
    if dst.exists():
        differs = _copy_differs(src, dst, names)
        if differs is None:
            return False
        raise DataDirError(f"copy_data_dir: {dst} is not a copy of {src} as it is now ({differs}): it was copied "
                           f"from another version of {src}, or is another dir; delete {dst} to copy it again (stage "
                           "1 then makes its features again), or give another destination")
    tmp = dst.with_name(dst.name + ".copying")  # a killed copy leaves no dst that looks complete
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in names:
        shutil.copy2(src / name, tmp / name)
    os.replace(tmp, dst)
    return True


def _copy_differs(src: Path, dst: Path, names: list[str]) -> str | None:
    """What makes ``dst`` no copy of ``src``'s files ``names`` (None: it is one);
    the utterances of dst's log/fbank_failed may be missing from its per-utterance files."""
    failed = set(read_kv(failed_list(dst), check_sorted=False)) if failed_list(dst).is_file() else set()
    for name in names:
        if not (dst / name).is_file():
            return f"it has no {name}"
        if filecmp.cmp(src / name, dst / name, shallow=False):
            continue
        if failed and name == "spk2utt":
            continue  # remade from utt2spk when stage 1 dropped utterances
        if failed and name in UTT_FILES:
            ours, theirs = read_kv(src / name), read_kv(dst / name)
            if set(ours) - set(theirs) <= failed and all(ours.get(u) == v for u, v in theirs.items()):
                continue
        return f"{dst / name} differs from {src / name}"
    return None


def move_features_aside(data_dir: Path) -> None:
    """feats.scp to feats.scp.stale (for a person to compare), then its record removed."""
    if (data_dir / "feats.scp").is_file():
        os.replace(data_dir / "feats.scp", data_dir / f"feats.scp{STALE_SUFFIX}")
    (data_dir / FEATS_SETTINGS).unlink(missing_ok=True)


OWNER_FILE = "data_dir"  # in each ark dir: the data dir whose features it holds


def check_fbank_options(options: dict, nj: int) -> None:
    """FeatureError naming the option below its least value."""
    for flag, value, low in (("--sample-rate", options["sample_rate"], 1000),
                             ("--num-mel-bins", options["num_mel_bins"], 1),
                             ("--min-frames", options["min_frames"], 1), ("--nj", nj, 1)):
        if value < low:
            raise FeatureError(f"{flag} {value}: must be at least {low}")


def plan_fbank_jobs(data_dir: str | os.PathLike, fbank_root: str | os.PathLike, nj: int, options: dict) -> dict:
    """What stage 1 has left to do for a data dir, from the settings records
    (``options``: the keyword options of fbank_job_settings): {fbank_dir, nj,
    status: complete|todo, todo: the job numbers to run, space-separated}."""
    check_fbank_options(options, nj)
    # Also refuses an empty dir and one with segments, before anything is written.
    data = validate_data_dir(data_dir, require=("wav.scp", "utt2spk"))
    wav_scp = read_kv(data.path / "wav.scp")
    fbank_dir = fbank_dir_for(data.path, fbank_root)
    nj = min(nj, len(wav_scp))
    out = {"fbank_dir": str(fbank_dir.resolve()), "nj": nj}
    settings = fbank_job_settings(wav_scp, **options)
    status, diff = feats_status(data.path, settings)
    if status == "complete":
        return {**out, "status": "complete"}
    if status == "foreign":
        log.warning("%s/feats.scp was not made by this stage; using it as it is (delete it to compute fbank "
                    "here), and recording its arks in %s/%s", data.path, data.path, FEATS_SETTINGS)
        record_features(data.path, {"foreign": True})
        return {**out, "status": "complete"}
    if status == "changed":
        log.info("%s/feats.scp was made from other settings or audio (%s); computing it again",
                 data.path, "; ".join(diff))
    # Before anything is written: a kill from here on leaves no feats.scp that
    # a later stage (or this one's rerun, as a foreign one) would take as done.
    move_features_aside(data.path)
    fbank_dir.mkdir(parents=True, exist_ok=True)
    owner = fbank_dir / OWNER_FILE
    if owner.is_file() and owner.read_text().strip() != str(data.path.resolve()):
        raise DataDirError(f"{fbank_dir} holds the features of {owner.read_text().strip()}, not of "
                           f"{data.path.resolve()}; give another <fbank-dir>")
    owner.write_text(f"{data.path.resolve()}\n")
    parts = split_data_dir(data.path, nj)
    todo = []
    for n, part in enumerate(parts, 1):
        try:
            job = fbank_job_settings(read_kv(part / "wav.scp"), **options)
        except DataDirError:
            todo.append(n)  # the job will fail reading it, and its log will say why
            continue
        if not matches(fbank_dir / f"raw_fbank.{n}.settings", job):
            todo.append(n)
    return {**out, "status": "todo", "todo": " ".join(map(str, todo))}


def add_fbank_options(parser) -> None:
    """The options of stage 1 that its three steps share (argparse)."""
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--num-mel-bins", type=int, default=80)
    parser.add_argument("--compress", choices=("true", "false"), default="true")
    parser.add_argument("--min-frames", type=int, default=MIN_FRAMES, help="shorter utterances are dropped")
    parser.add_argument("--feature-type", choices=FEATURE_TYPES, default="kaldi",
                        help="kaldi: Kaldi's fbank; speechbrain: the original work's front end (purl.features)")


def fbank_options_of(args) -> dict:
    """The keyword options of fbank_job_settings from add_fbank_options' arguments."""
    return {"sample_rate": args.sample_rate, "num_mel_bins": args.num_mel_bins,
            "compress": args.compress == "true", "min_frames": args.min_frames, "feature_type": args.feature_type}
