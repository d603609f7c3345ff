"""Checks that take seconds and save hours: run before a recipe's expensive
stages. Each function returns a list of problems (empty: fine), each a sentence
that says what is wrong and how to fix it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from purl.audio import parse_speed_entry
from purl.config import ConfigError, load_config

# Kaldi's compressed kSpeechFeature matrix: a 20-byte header, 8 bytes per column,
# one byte per value; plus the key and the ark's binary markers.
COMPRESSED_HEADER_BYTES, PER_COLUMN_BYTES, FRAMES_PER_SECOND = 20, 8, 100


def parse_gpus(gpus: str) -> list[int]:
    """'0,1,3' -> [0, 1, 3]; '' -> [] (the CPU). Raises ValueError on anything else."""
    if gpus == "":
        return []
    if not re.fullmatch(r"\d+(,\d+)*", gpus):
        raise ValueError(f"gpus='{gpus}' is not a comma-separated list of GPU numbers "
                         f"(e.g. gpus=0,1,2,3; gpus=\"\" trains on the CPU)")
    ids = [int(g) for g in gpus.split(",")]
    if len(set(ids)) != len(ids):
        raise ValueError(f"gpus='{gpus}' names a GPU twice (one training process per GPU)")
    return ids


def visible_cuda_devices() -> int:
    """CUDA devices torch sees with CUDA_VISIBLE_DEVICES unset: the numbering that
    the recipe's gpus (which becomes CUDA_VISIBLE_DEVICES) refers to. Asked in a
    child process, so that this one's CUDA state stays untouched."""
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    proc = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
                          capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"cannot ask torch for CUDA devices: {proc.stderr.strip()[-300:]}")
    return int(proc.stdout.split()[-1])


def check_devices(gpus: str, device_count=visible_cuda_devices) -> list[str]:
    try:
        ids = parse_gpus(gpus)
    except ValueError as e:
        return [str(e)]
    if not ids:
        return []
    count = device_count()
    if count == 0:
        return [f"gpus={gpus}, but torch sees no CUDA device (a CPU build of torch, or no driver): "
                "install a CUDA build of torch, or set gpus=\"\" to train on the CPU"]
    missing = [g for g in ids if g >= count]
    if missing:
        return [f"gpus={gpus} names GPU {', '.join(map(str, missing))}, but torch sees {count} CUDA device(s) "
                f"(numbers 0..{count - 1}): choose among those"]
    return []


def check_batch(config_paths: list[str], overrides: list[str], processes: int,
                data_dirs: list[str] = ()) -> list[str]:
    """Each config loads with the overrides, and its batch splits over the processes
    (and fits the training speakers of a data dir that has its spk2utt)."""
    problems = []
    speakers = {}
    for d in data_dirs:
        spk2utt = Path(d) / "spk2utt"
        if spk2utt.is_file():
            with open(spk2utt) as f:
                speakers[d] = sum(1 for line in f if line.strip())
    for path in config_paths:
        try:
            config = load_config(path, overrides)
        except ConfigError as e:
            problems.append(str(e))
            continue
        batch = config["data"]["speakers_per_batch"]
        if batch < processes:
            problems.append(f"{path}: data.speakers_per_batch={batch} is fewer than the {processes} training "
                            "processes (each needs at least one speaker): use fewer GPUs or a larger batch")
        for d, n in speakers.items():
            if batch > n:
                problems.append(f"{path}: data.speakers_per_batch={batch} exceeds the {n} speakers of {d}: lower it")
    return problems


def read_pipe_commands(wav_scp: Path) -> list[tuple[int, str]]:
    """(line number, command) of the wav.scp entries that are commands ending in '|'."""
    pipes = []
    with open(wav_scp, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if len(parts) == 2 and parts[1].rstrip().endswith("|"):
                pipes.append((n, parts[1]))
    return pipes


def check_audio_tools(data_dirs: list[str], which=shutil.which) -> list[str]:
    """Every program that a wav.scp pipe runs is installed (ffmpeg for m4a)."""
    problems = []
    for d in data_dirs:
        wav_scp = Path(d) / "wav.scp"
        if not wav_scp.is_file():
            continue
        needed: dict[str, int] = {}
        for n, command in read_pipe_commands(wav_scp):
            speed = parse_speed_entry(command)
            if speed is not None and not speed[0].endswith("|"):
                continue  # a speed copy of a file: read in-process, no program runs
            program = command.split()[0]
            needed.setdefault(program, n)
        for program, n in needed.items():
            if which(program) is None:
                problems.append(f"{wav_scp} line {n}: reads audio through '{program}', which is not installed "
                                f"(install it, e.g. apt-get install {program}, or convert the audio to wav)")
    return problems


def estimated_feature_bytes(data_dir: Path, mean_duration: float, num_mel_bins: int = 80) -> tuple[int, str]:
    """Bytes of the compressed fbank of a data dir, and how the estimate was made."""
    utt2dur = data_dir / "utt2dur"
    if utt2dur.is_file():
        with open(utt2dur) as f:
            durations = [float(line.split()[1]) for line in f if line.strip()]
        how = f"{sum(durations) / 3600:.0f} h in its utt2dur"
    else:
        with open(data_dir / "wav.scp") as f:
            count = sum(1 for line in f if line.strip())
        durations = [mean_duration] * count
        how = f"{count} utterances x {mean_duration} s (no utt2dur; --mean-duration)"
    per_utt = COMPRESSED_HEADER_BYTES + PER_COLUMN_BYTES * num_mel_bins + 40
    total = sum(int(d * FRAMES_PER_SECOND) * num_mel_bins + per_utt for d in durations)
    return total, how


def check_disk(data_dirs: list[str], fbank_dir: str, mean_duration: float = 8.0, free_bytes=None) -> list[str]:
    """The free space where fbank_dir is (or would be made) holds the features of
    every data dir that has no feats.scp yet."""
    todo = [Path(d) for d in data_dirs if (Path(d) / "wav.scp").is_file() and not (Path(d) / "feats.scp").is_file()]
    if not todo:
        return []
    estimates = [(d, *estimated_feature_bytes(d, mean_duration)) for d in todo]
    needed = sum(size for _, size, _ in estimates)
    where = Path(fbank_dir).absolute()
    while not where.exists():
        where = where.parent
    free = free_bytes(where) if free_bytes else shutil.disk_usage(where).free
    if free < needed:
        parts = "; ".join(f"{d}: {size / 1e9:.1f} GB from {how}" for d, size, how in estimates)
        return [f"{fbank_dir}: {free / 1e9:.1f} GB free on its disk, but the features need about "
                f"{needed / 1e9:.1f} GB ({parts}): free space, or pass another fbank dir"]
    return []


def check_files(trials: list[str], dirs: list[str]) -> list[str]:
    problems = []
    for t in trials:
        path = Path(t)
        if not path.is_file():
            problems.append(f"{t}: trial list missing (download it, or fix the path)")
        elif path.stat().st_size == 0:
            problems.append(f"{t}: trial list is empty (download it again)")
    for d in dirs:
        if not Path(d).is_dir():
            problems.append(f"{d}: no such directory (set the corpus path)")
    return problems
