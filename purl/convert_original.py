"""The original PURL work's checkpoints in this project's format.

The original (github.com/jimmy1016-coder/PURL) trains a Lightning module whose
``encoder`` attribute wraps the network as ``encoder.model``: SpeechBrain's
``ECAPA_TDNN`` or clova's ``ResNetSE`` (the thin ResNet-34, run in this
project's "original" ResNet layout), and whose ``loss_func`` (``SupConLoss``)
holds the temperature ``t`` itself.  Its Lightning checkpoints therefore hold
``state_dict`` keys ``encoder.model.<network parameter>`` and
``loss_func.temperature``; its test run also saves the bare network's
``state_dict()`` as ``model.pt``.  Both convert.

Parameter names map one to one; SpeechBrain's kernel-1 ``Conv1d`` weights of
the squeeze-excitation and the output layer become ``nn.Linear`` weights (the
trailing axis of size 1 dropped).  Nothing else changes, so the converted model
computes what the original computes.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from purl.errors import PurlError
from purl.models import build_model

LIGHTNING_ENCODER_PREFIX = "encoder.model."
LIGHTNING_TEMPERATURE = "loss_func.temperature"
# Lightning state_dict entries that hold no network weight: NCUTrainer's epoch
# from which its GMM runs (an int, not a tensor).
LIGHTNING_IGNORED = ("_ncu_gmm_start_epoch",)

# SpeechBrain ECAPA_TDNN name -> this project's EcapaTdnn name, applied in order
# to the name with a leading '.'.  SpeechBrain wraps nn.Conv1d and nn.BatchNorm1d
# in modules of their own, which adds a ".conv" / ".norm" level.
_ECAPA_RULES = (
    (r"\.se_block\.conv1\.conv\.", ".se_squeeze."),
    (r"\.se_block\.conv2\.conv\.", ".se_excite."),
    (r"\.res2net_block\.", ".res2net."),
    (r"\.shortcut\.conv\.", ".shortcut."),
    (r"\.conv\.conv\.", ".conv."),
    (r"\.norm\.norm\.", ".norm."),
    (r"^\.asp_bn\.norm\.", ".asp_bn."),
    (r"^\.fc\.conv\.", ".fc."),
)

# clova ResNetSE name -> this project's ResNet name: outside the blocks, and
# within a block (the part after "layer<L>.<j>.").
_RESNET_RULES = (
    (r"^conv1\.", "stem.0."),
    (r"^bn1\.", "stem.1."),
    (r"^sap_linear\.", "pool.linear."),
    (r"^attention$", "pool.attention"),
)
_RESNET_BLOCK_RULES = (
    (r"^se\.fc\.", "se."),
    (r"^downsample\.", "shortcut."),
)
_RESNET_LAYER = re.compile(r"^layer(\d+)\.(\d+)\.")


class ConversionError(PurlError, ValueError):
    """The checkpoint is not one of the original's, or does not fit the config's model."""


def _rename(key: str, rules) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def ecapa_names(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """SpeechBrain ECAPA_TDNN parameter names -> EcapaTdnn names."""
    return {key: _rename("." + key, _ECAPA_RULES)[1:] for key in state}


def resnet_names(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """clova ResNetSE parameter names -> ResNet names.

    clova numbers blocks per stage (``layer2.0``); here they are one sequence
    (``blocks.3``), so the stage sizes are read from the names themselves.
    """
    blocks = sorted({(int(m[1]), int(m[2])) for key in state if (m := _RESNET_LAYER.match(key))})
    flat = {block: i for i, block in enumerate(blocks)}
    names = {}
    for key in state:
        m = _RESNET_LAYER.match(key)
        if m:
            renamed = f"blocks.{flat[int(m[1]), int(m[2])]}." + _rename(key[m.end():], _RESNET_BLOCK_RULES)
        else:
            renamed = _rename(key, _RESNET_RULES)
        names[key] = renamed
    return names


NAME_MAPS: dict[str, Callable[[dict], dict[str, str]]] = {
    "ecapa_tdnn": ecapa_names,
    "resnet34": resnet_names,
    "resnet34_wide": resnet_names,
}


def convert_state_dict(original: dict[str, torch.Tensor], model: nn.Module, name_map: dict[str, str],
                       source: str) -> dict[str, torch.Tensor]:
    """``original``'s tensors under ``model``'s names and shapes; every key of both accounted for."""
    target = model.state_dict()
    unknown = sorted(k for k, ours in name_map.items() if ours not in target)
    produced = set(name_map.values())
    missing = sorted(k for k in target if k not in produced)
    if unknown or missing:
        problems = []
        if unknown:
            problems.append(f"weights the model has no place for: {', '.join(unknown)}")
        if missing:
            problems.append(f"weights of the model that it lacks (this project's names): {', '.join(missing)}")
        raise ConversionError(
            f"{source}: does not fit the config's model; {'; '.join(problems)} "
            "(use the config of the architecture the original trained, e.g. conf/ecapa_supcon.yaml or "
            "conf/resnet34_supcon.yaml, with the same sizes)"
        )
    converted = {}
    for key, ours in name_map.items():
        tensor, want = original[key], target[ours].shape
        if tensor.shape != want:
            if tensor.dim() == len(want) + 1 and tensor.shape[-1] == 1 and tensor.shape[:-1] == want:
                tensor = tensor.squeeze(-1)  # a kernel-1 Conv1d weight as a Linear weight
            else:
                raise ConversionError(
                    f"{source}: '{key}' has shape {tuple(tensor.shape)}, the model's '{ours}' {tuple(want)} "
                    "(set the config's model.args to the sizes the original trained with)"
                )
        converted[ours] = tensor.detach().clone().to(target[ours].dtype)
    return converted


def _inert_class(module: str, name: str) -> type:
    """A stand-in for a class or function the checkpoint names (sklearn's KMeans,
    numpy's array reconstruction, ...): built and filled, never run."""

    def new(cls, *args, **kwargs):
        return object.__new__(cls)

    def init(self, *args, **kwargs):
        pass

    def setstate(self, state):
        self.__dict__["state"] = state

    cls = type(name, (), {"__new__": new, "__init__": init, "__setstate__": setstate})
    cls.__module__, cls.__qualname__ = module, name
    return cls


def load_original_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], float | None, dict]:
    """Reads a Lightning ``.ckpt`` of the original (or its bare ``model.pt``).

    Returns (network state dict with the original's names, temperature or None,
    facts about the run: epoch and global step where Lightning recorded them).
    The file is read with ``weights_only=True``: the Python objects a Lightning
    checkpoint also pickles (the KMeans in the hyperparameters, numpy arrays,
    paths) load as inert stand-ins, so no code from the file runs.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint")
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        stand_ins = []
        for qualified in needed:
            module, _, name = qualified.rpartition(".")
            stand_ins.append(_inert_class(module, name))
        with torch.serialization.safe_globals(stand_ins):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file or not a torch file at all
        raise ConversionError(f"{path}: cannot be read as a torch checkpoint ({e})") from e
    if not isinstance(ckpt, dict):
        raise ConversionError(f"{path}: holds a {type(ckpt).__name__}, not a checkpoint dict")
    info = {k: ckpt[k] for k in ("epoch", "global_step") if isinstance(ckpt.get(k), int)}
    if "state_dict" not in ckpt:
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            return dict(ckpt), None, info  # the bare network, as the original's model.pt
        if "model" in ckpt and "config" in ckpt:
            raise ConversionError(f"{path}: is already a checkpoint of this project; no conversion needed")
        raise ConversionError(f"{path}: has no 'state_dict' (keys: {', '.join(map(str, ckpt))}); "
                              "expected a Lightning checkpoint of the original PURL code")
    state = ckpt["state_dict"]
    encoder, temperature, unknown = {}, None, []
    for key, value in state.items():
        if key.startswith(LIGHTNING_ENCODER_PREFIX):
            encoder[key[len(LIGHTNING_ENCODER_PREFIX):]] = value
        elif key == LIGHTNING_TEMPERATURE:
            temperature = float(value)
        elif key not in LIGHTNING_IGNORED:
            unknown.append(key)
    if unknown:
        raise ConversionError(
            f"{path}: unknown state_dict entries {', '.join(unknown)} (only '{LIGHTNING_ENCODER_PREFIX}*' and "
            f"'{LIGHTNING_TEMPERATURE}' are converted; a run with a projector or another loss is not supported)"
        )
    if not encoder:
        raise ConversionError(f"{path}: no '{LIGHTNING_ENCODER_PREFIX}*' weights in its state_dict")
    return encoder, temperature, info


def convert_original_checkpoint(path: str | os.PathLike, config: dict) -> dict:
    """The original's checkpoint at ``path`` as this project's checkpoint for ``config``'s model.

    Returns {"model": state dict, "loss": {"temperature.log_t": ...} (when the
    original had a temperature), "config": config, "converted_from": ...}: what
    ``purl.training.checkpoint.model_from_checkpoint`` and stage 5's initialisation read.
    """
    name, args = config["model"]["name"], config["model"]["args"]
    if name not in NAME_MAPS:
        raise ConversionError(f"model {name!r}: no conversion from the original (known: {', '.join(NAME_MAPS)})")
    if name.startswith("resnet") and args.get("layout", "clova") != "original":
        raise ConversionError(
            f"model {name!r} with layout {args.get('layout', 'clova')!r}: the original's thin ResNet-34 runs the "
            "'original' layout (time before frequency); set model.args.layout=original"
        )
    original, temperature, info = load_original_checkpoint(path)
    model = build_model(name, **args)
    state = convert_state_dict(original, model, NAME_MAPS[name](original), str(path))
    model.load_state_dict(state)  # strict: every key and shape checked above
    ckpt = {"model": state, "config": config, "converted_from": {"path": str(Path(path).resolve()), **info}}
    if temperature is not None:
        if not temperature > 0:
            raise ConversionError(f"{path}: '{LIGHTNING_TEMPERATURE}' is {temperature}, not a positive temperature")
        ckpt["loss"] = {"temperature.log_t": torch.tensor(math.log(temperature))}
    return ckpt
