"""Experiment configuration: YAML over defaults, with command-line overrides.

A config is a two-level dict: sections (model, data, loss, optim, train, augment,
chns, orgate, purl) of keys. DEFAULTS lists every key there is, so a misspelt key in a YAML file or
in ``--set`` is an error that names the closest known keys instead of being
silently ignored. ``model.args`` is the exception: it holds the model's
constructor arguments and is checked against the model's signature.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import yaml

from purl.errors import PurlError
from purl.fileio import write_atomic

DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {
        "name": "ecapa_tdnn",   # a key of purl.models.MODELS
        "args": {},             # constructor arguments of that model
    },
    "data": {
        "chunk_frames": 300,          # 3 s training chunks
        "speakers_per_batch": 300,    # P: the whole batch over all processes
        "utts_per_speaker": 2,        # K: 2 gives pair batches (300 pairs = 600 utterances)
        "samples_per_epoch": 1000000, # utterances drawn per epoch
        "num_workers": 4,             # loader processes per training process
        "spec_augment": False,
        "freq_mask": 8,               # SpecAugment: widest frequency mask (bins)
        "time_mask": 20,              # SpecAugment: widest time mask (frames)
        # what each input is normalised over (its mean, and the top_db floor of speechbrain
        # features): "utterance" before the chunk is cut, or "crop", each chunk on its own
        # (the original work's: its front end runs on each 3 s crop)
        "normalise": "utterance",
        # "distinct": P distinct speakers a batch (the original's UniqueBatchSampler, its
        # pretraining); "with_replacement": each row's speaker drawn on its own, the last batch
        # of an epoch partial (the original's ECAPA PURL update: its default DataLoader)
        "sampler": "distinct",
    },
    "loss": {
        "type": "supcon",       # supcon, or a PURL kind: soft, hard, ascent
        "temperature": 0.1,     # initial value
        "learn_temperature": True,
        "alpha": 0.5,           # weight of the unlearning term
        "threshold": 0.5,       # w above it: a reliable pair
        # false (the original): unreliable pairs leave SupCon's batch, also as negatives;
        # true: they stay in every denominator as negatives
        "keep_unreliable_negatives": False,
    },
    "optim": {
        "epochs": 200,
        "lr": 0.01,
        "weight_decay": 2.0e-6,
        "warmup_frac": 0.1,     # linear warm-up over this fraction of all steps, then cosine
        "final_lr_frac": 0.0,   # the cosine ends at lr * final_lr_frac
        "grad_clip": 5.0,       # max gradient norm; 0 disables
    },
    "train": {
        "seed": 42,
        "amp": True,            # bf16 autocast on CUDA (ignored on CPU)
        "threads": 0,           # CPU threads per process; 0: torch's default
        "gather_batch": True,   # contrast against the batch of every process, not just one's own
        "average_last": 1,      # final.pt = average of the last N epoch checkpoints
        "keep_last": 0,         # keep only the last N epoch checkpoints (0: keep all)
        "keep_epochs": [],      # ... and these, e.g. [200]: the checkpoint a continued PURL run starts from
        "save_every_steps": 0,  # also save last.pt every N steps within an epoch (0: at epoch ends)
        "log_every": 10,        # steps between CSV rows
        # A step whose loss is nan or inf: "stop" (an error naming the step) or
        # "zero", the original work's: the step's loss becomes 0 (no update) and
        # the schedule goes on
        "nonfinite_loss": "stop",
    },
    "augment": {                # waveform augmentation (purl/data/augment.py); prob 0: stored fbank
        "prob": 0.0,            # chance that a chunk is augmented (WeSpeaker: 0.6)
        "noise": "",            # data dirs whose wav.scp lists the sources (local/prepare_musan.py,
        "music": "",            #   local/prepare_rirs.py); "" leaves that kind out
        "babble": "",           # MUSAN speech: 3-7 talkers summed
        "rirs": "",             # room impulse responses
        "noise_snr": [0, 15],   # SNR ranges in dB (Kaldi's voxceleb/v2)
        "music_snr": [5, 15],
        "babble_snr": [13, 20],
        "babble_speakers": [3, 7],
    },
    "chns": {                   # CHNS batches (purl/data/chns.py); hard_ratio 0: uniform speakers
        "hard_ratio": 0.0,      # fraction of a batch's speakers drawn from k-means clusters of similar speakers
        "num_clusters": 50,     # k of the k-means of speaker centroids (the original's 50)
        "refresh_every": 0,     # re-cluster with the current model every N epochs (0: once, at the first epoch)
    },
    "orgate": {                 # OR-Gate selection (purl/orgate.py, Fang et al., Interspeech 2023); top_k 0: off
        # an utterance trains once its label has been among its top_k nearest speaker centroids
        # (cosine, the current model) at any fit so far; the sampler draws only those
        "top_k": 0,
        "refit_every": 1,       # fit again with the current model every N epochs (0: once, at the first epoch)
    },
    "purl": {
        "init_checkpoint": "",  # the pretrained model the post-hoc update starts from
        # weights: its weights and temperature, a fresh optimizer and schedule of optim.epochs;
        # continue: an epoch checkpoint's whole state (Adam moments, scheduler step), as the
        # original work: optim.epochs then counts the pretraining's epochs too (230 = 200 + 30)
        "init_mode": "weights",
        "reliability": "",      # stage 4's output dir (pair weights)
        "reestimate_every": 0,  # re-estimate the weights with the current model every N epochs (0: frozen)
        # instead of reliability: a file of utterance ids whose same-label pairs all have w = 0 (the
        # others 1), e.g. the utterances relabelling would drop (steps/relabel_data_dir.py --keep-dropped)
        "unreliable_utts": "",
    },
}


class ConfigError(PurlError, ValueError):
    """A config file or override names an unknown key or has a bad value."""


# ---------------------------------------------------------------------------
# YAML: safe loading that refuses a key written twice

class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key twice in one mapping (ConfigError
    naming the file and both lines): YAML keeps the last one without a word,
    so a second ``optim:`` section would drop the first one whole."""

    path: tuple[str, ...] = ()  # the keys above the document (an override's value), for the errors

    def construct_document(self, node: yaml.Node) -> Any:
        refuse_duplicate_keys(node, self.name, self.path)
        return super().construct_document(node)


def refuse_duplicate_keys(node: yaml.Node, name: str, path: tuple[str, ...] = (),
                          seen: set[int] | None = None) -> None:
    """ConfigError at the first key (in file order) that a mapping under ``node`` has twice."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias repeats a node, or makes a cycle: checked once
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            refuse_duplicate_keys(item, name, path, seen)
    if not isinstance(node, yaml.MappingNode):
        return
    first: dict[tuple[str, str], int] = {}
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            line = key.start_mark.line + 1
            if (key.tag, key.value) in first:
                what, fix = ((f"'{key.value}' appears twice in '{'.'.join(path)}'", "delete one") if path
                             else (f"section '{key.value}' appears twice", "merge them into one"))
                raise ConfigError(f"{name} line {line}: {what} (first at line {first[key.tag, key.value]}); "
                                  f"YAML would keep only the last: {fix}")
            first[key.tag, key.value] = line
        refuse_duplicate_keys(value, name, path + (str(key.value),), seen)


def load_yaml(stream: Any, name: str, path: tuple[str, ...] = ()) -> Any:
    """``yaml.safe_load`` of a file or text, but a key twice in one mapping is a
    ConfigError naming ``name`` (the file) and the lines; ``path``: the keys
    the text is the value of."""
    loader = StrictLoader(stream)
    loader.name, loader.path = name, path  # what the errors call the source and where it goes
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _is_subsequence(short: str, long: str) -> bool:
    letters = iter(long)
    return all(c in letters for c in short)


def _closest(name: str, known: Iterable[str], prefix: str = "") -> str:
    """' (did you mean x?)' with the nearest of ``known``, or the list of all."""
    known = list(known)
    # 'learning_rate' -> 'lr': an abbreviation (letters in order, same first one) is no near spelling.
    abbreviations = [k for k in known if len(k) < len(name) and k[0] == name[0] and _is_subsequence(k, name)]
    matches = abbreviations + [m for m in difflib.get_close_matches(name, known, n=3, cutoff=0.5) if m not in abbreviations]
    matches = matches[:3]
    names = [prefix + m for m in (matches or sorted(known))]
    return f" (did you mean {', '.join(names)}?)" if matches else f" (known: {', '.join(names)})"


def merge(config: dict, update: dict, where: str, defaults: dict | None = None) -> dict:
    """Merges a partial config into a full one, rejecting unknown keys;
    ``defaults``: the typed defaults of another config than training's."""
    for section, values in update.items():
        if section not in config:
            raise ConfigError(f"{where}: unknown section '{section}'{_closest(section, config)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: section '{section}' must be a mapping of keys, got {values!r}")
        for key, value in values.items():
            if key not in config[section]:
                raise ConfigError(f"{where}: unknown key '{section}.{key}'{_closest(key, config[section], section + '.')}")
            value = coerce_value(section, key, value, where, defaults)
            if key == "args" and isinstance(value, dict):
                config[section][key] = {**config[section][key], **value}
            else:
                config[section][key] = value
    return config


def parse_override(text: str) -> dict:
    """'model.args.channels=[512,512]' -> {'model': {'args': {'channels': [512, 512]}}}."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form section.key=value")
    path, raw = text.split("=", 1)
    keys = path.strip().split(".")
    if len(keys) < 2:
        raise ConfigError(f"override '{text}': name a key as section.key, e.g. optim.lr=0.001")
    value: Any = load_yaml(raw, f"override '{text}'", tuple(keys)) if raw.strip() else ""
    for key in reversed(keys[1:]):
        value = {key: value}
    return {keys[0]: value}


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = (), *,
                defaults: dict | None = None, ranges: dict | None = None, option: str = "--set") -> dict:
    """DEFAULTS, then the YAML file, then each ``section.key=value`` override.
    ``defaults`` and ``ranges`` give another config (e.g. stage 4's) its own
    keys and limits; ``option`` names the overrides' option in errors."""
    defaults = DEFAULTS if defaults is None else defaults
    config = copy.deepcopy(defaults)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        with open(path, encoding="utf-8") as f:
            try:
                loaded = load_yaml(f, str(path)) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top")
        merge(config, loaded, str(path), defaults)
    for text in overrides:
        merge(config, parse_override(text), f"{option} {text}", defaults)
    check_ranges(config, RANGES if ranges is None else ranges)
    return config


def save_config(config: dict, path: str | os.PathLike) -> None:
    write_atomic(path, lambda f: yaml.safe_dump(config, f, sort_keys=False, default_flow_style=None), "w")


# ---------------------------------------------------------------------------
# values: checked where they enter, against the type of each key's default

def coerce_value(section: str, key: str, value: Any, where: str, defaults: dict | None = None) -> Any:
    """``value`` as the type of the key's default, or ConfigError naming both.

    A float key takes an int and a number written as text: YAML 1.1 (PyYAML)
    reads ``1e-3`` as a string, since it lacks a dot. An int key takes a
    whole float (``1e6``). Booleans are only true/false.
    """
    default = (DEFAULTS if defaults is None else defaults).get(section, {}).get(key)
    if default is None:
        return value
    name = f"{section}.{key}"
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        expected = "true or false"
    elif isinstance(default, int):
        number = _number(value)
        if number is not None and float(number).is_integer():
            return int(number)
        expected = "a whole number"
    elif isinstance(default, float):
        number = _number(value)
        if number is not None:
            return float(number)
        expected = "a number"
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
        expected = "a string (quote it)"
    elif isinstance(default, dict):
        if isinstance(value, dict):
            return value
        expected = "a mapping of keys"
    elif isinstance(default, list) and (section, key) in LISTS:
        return coerce_list(name, value, where, LISTS[section, key], default)
    else:
        return value
    raise ConfigError(f"{where}: {name} must be {expected}, like its default {default!r}; got {value!r}")


class ListOf(NamedTuple):
    """What a list-valued key holds: elements of ``kind``, ``length`` of them
    (None: any number), none below ``low``; a list of 2 is a range, low first."""
    kind: type
    length: int | None
    low: float | None
    what: str


# Every list-valued key of DEFAULTS (tests/test_bad_inputs.py checks that none is left out).
LISTS: dict[tuple[str, str], ListOf] = {
    ("train", "keep_epochs"): ListOf(int, None, 1, "the epochs whose checkpoints are kept, e.g. [200]"),
    ("augment", "noise_snr"): ListOf(float, 2, None, "an SNR range in dB, [low, high]"),
    ("augment", "music_snr"): ListOf(float, 2, None, "an SNR range in dB, [low, high]"),
    ("augment", "babble_snr"): ListOf(float, 2, None, "an SNR range in dB, [low, high]"),
    ("augment", "babble_speakers"): ListOf(int, 2, 1, "the range of talkers summed, [fewest, most]"),
}


def coerce_list(name: str, value: Any, where: str, spec: ListOf, default: list) -> list:
    """``value`` checked against ``spec``: a list, of its length, of numbers of its
    kind (whole floats as ints, numbers written as text as floats), not below
    its least value, a range low first; ConfigError naming the key otherwise."""
    numbers = "whole numbers" if spec.kind is int else "numbers"
    count = f"{spec.length} " if spec.length else ""
    expected = f"a list of {count}{numbers} ({spec.what}), like its default {default!r}"
    if not isinstance(value, list):
        hint = f" (for one, write [{value}])" if _number(value) is not None and spec.length is None else ""
        raise ConfigError(f"{where}: {name} must be {expected}; got {value!r}{hint}")
    if spec.length is not None and len(value) != spec.length:
        raise ConfigError(f"{where}: {name} must be {expected}; got {len(value)}: {value!r}")
    out = []
    for i, item in enumerate(value, 1):
        number = _number(item)
        if number is None or (spec.kind is int and not float(number).is_integer()):
            raise ConfigError(f"{where}: {name} must be {expected}; its element {i} is {item!r}")
        if spec.low is not None and number < spec.low:
            raise ConfigError(f"{where}: {name} must be {expected}; its element {i}, {item!r}, is below {spec.low}")
        # a number stays as written (the saved config.yaml unchanged); text and whole floats get their kind
        out.append(int(number) if spec.kind is int else item if isinstance(item, (int, float)) else float(number))
    if spec.length == 2 and out[0] > out[1]:
        raise ConfigError(f"{where}: {name}={value!r} must be {spec.what}: the lower bound first")
    return out


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


# (low, high, inclusive high); None: unbounded. A value outside is refused with the reason.
RANGES: dict[tuple[str, str], tuple[float | None, float | None, str]] = {
    ("data", "chunk_frames"): (1, None, "frames per training chunk"),
    ("data", "speakers_per_batch"): (2, None, "SupCon needs other speakers in the batch as negatives"),
    ("data", "utts_per_speaker"): (2, None, "SupCon needs a positive: with 1 utterance per speaker the loss is 0 "
                                            "and nothing is learnt"),
    ("data", "samples_per_epoch"): (1, None, "utterances per epoch"),
    ("data", "num_workers"): (0, None, "loader processes"),
    ("data", "freq_mask"): (0, None, "mask width"),
    ("data", "time_mask"): (0, None, "mask width"),
    ("loss", "temperature"): (0.01, 1, "the learnable temperature is kept within [0.01, 1]"),
    ("loss", "alpha"): (0, None, "weight of the unlearning term"),
    ("loss", "threshold"): (0, 1, "a posterior"),
    ("optim", "epochs"): (1, None, "at least one epoch"),
    ("optim", "lr"): (1e-12, None, "a positive learning rate"),
    ("optim", "weight_decay"): (0, None, "weight decay"),
    ("optim", "warmup_frac"): (0, 1, "a fraction of all steps"),
    ("optim", "final_lr_frac"): (0, 1, "a fraction of lr"),
    ("optim", "grad_clip"): (0, None, "0 disables"),
    ("train", "seed"): (0, None, "a seed"),
    ("train", "threads"): (0, None, "0: torch's default"),
    ("train", "average_last"): (1, None, "checkpoints averaged into final.pt"),
    ("train", "keep_last"): (0, None, "0 keeps all"),
    ("train", "save_every_steps"): (0, None, "0: at epoch ends"),
    ("train", "log_every"): (1, None, "steps between CSV rows"),
    ("purl", "reestimate_every"): (0, None, "0: frozen weights"),
    ("orgate", "top_k"): (0, None, "nearest speaker centroids that may hold the own label; 0: off"),
    ("orgate", "refit_every"): (0, None, "epochs between fits; 0: once, at the first epoch"),
}


def check_ranges(config: dict, ranges: dict | None = None) -> None:
    """ConfigError naming the key, its value, the allowed range and why."""
    for (section, key), (low, high, why) in (RANGES if ranges is None else ranges).items():
        value = config.get(section, {}).get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ConfigError(f"{section}.{key}={value!r} must be {bounds} ({why})")
