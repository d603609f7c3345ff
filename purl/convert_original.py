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

A Lightning checkpoint also holds the training state (``optimizer_states``: the
Adam moments and step of every parameter; ``lr_schedulers``: the schedule's
step).  Converted, they make an epoch checkpoint that stage 5's
``purl.init_mode: continue`` carries on as the original's PURL phase resumes
its ``epoch=199`` checkpoint; the moments of the temperature, a parameter t
there and log t here, are carried over by the chain rule at the saved t
(d/d log t = t d/dt), which the original's own next steps would not exactly
give (docs/fidelity.md).
"""

from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from purl.config import DEFAULTS
from purl.errors import PurlError
from purl.losses import build_loss
from purl.models import build_model
from purl.training.checkpoint import feature_record
from purl.training.schedule import build_optimizer, build_scheduler, warmup_cosine

# The original trained on SpeechBrain's Fbank (its SBFbank): a converted model records it, so that
# stages 4-6 embed stage 1's --feature-type speechbrain dirs with it and refuse Kaldi fbank
ORIGINAL_FEATURES = "speechbrain"
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
            "(use the config of the architecture the original trained, e.g. conf/paper/ecapa_supcon.yaml or "
            "conf/paper/resnet34_supcon.yaml, with the same sizes)"
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


@dataclass
class OriginalCheckpoint:
    """What a checkpoint of the original holds, under the original's names."""

    encoder: dict[str, torch.Tensor]  # the network's state dict, in the module's order
    temperature: float | None         # the loss's t (None: a bare model.pt)
    info: dict                        # Lightning's "epoch" and "global_step", where recorded
    optimizer: dict | None = None     # optimizer_states[0]: torch's Adam state dict
    scheduler: dict | None = None     # lr_schedulers[0]: the LambdaLR state dict
    hyper_parameters: dict = field(default_factory=dict)


def load_original_checkpoint(path: str | os.PathLike) -> OriginalCheckpoint:
    """Reads a Lightning ``.ckpt`` of the original (or its bare ``model.pt``).

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
            return OriginalCheckpoint(dict(ckpt), None, info)  # the bare network, as the original's model.pt
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
    optimizers, schedulers = ckpt.get("optimizer_states") or [], ckpt.get("lr_schedulers") or []
    if len(optimizers) > 1 or len(schedulers) > 1:
        raise ConversionError(f"{path}: {len(optimizers)} optimizers and {len(schedulers)} schedulers; "
                              "the original trains with one Adam and one schedule")
    hyper = ckpt.get("hyper_parameters")
    return OriginalCheckpoint(encoder, temperature, info, optimizers[0] if optimizers else None,
                              schedulers[0] if schedulers else None, hyper if isinstance(hyper, dict) else {})


def convert_original_checkpoint(path: str | os.PathLike, config: dict) -> dict:
    """The original's checkpoint at ``path`` as this project's checkpoint for ``config``'s model.

    Returns {"model": state dict, "loss": {"temperature.log_t": ...} (when the
    original had a temperature), "config": config, "converted_from": ..., "feature_type":
    "speechbrain"}: what
    ``purl.training.checkpoint.model_from_checkpoint`` and stage 5's
    initialisation read. A Lightning checkpoint with its optimiser state adds
    what an epoch checkpoint of this project's training holds for
    ``purl.init_mode: continue`` ("optimizer", "scheduler", "sampler",
    "global_step"); without it, "converted_from" says why not ("no_training_state").
    """
    config = {**copy.deepcopy(DEFAULTS), **config}  # a config of the model alone: the other sections' defaults
    name, args = config["model"]["name"], config["model"]["args"]
    if name not in NAME_MAPS:
        raise ConversionError(f"model {name!r}: no conversion from the original (known: {', '.join(NAME_MAPS)})")
    if name.startswith("resnet") and args.get("layout", "clova") != "original":
        raise ConversionError(
            f"model {name!r} with layout {args.get('layout', 'clova')!r}: the original's thin ResNet-34 runs the "
            "'original' layout (time before frequency); set model.args.layout=original"
        )
    original = load_original_checkpoint(path)
    model = build_model(name, **args)
    name_map = NAME_MAPS[name](original.encoder)
    state = convert_state_dict(original.encoder, model, name_map, str(path))
    model.load_state_dict(state)  # strict: every key and shape checked above
    ckpt = {"model": state, "config": config, "converted_from": {"path": str(Path(path).resolve()), **original.info},
            **feature_record(ORIGINAL_FEATURES)}
    temperature = original.temperature
    if temperature is not None:
        if not temperature > 0:
            raise ConversionError(f"{path}: '{LIGHTNING_TEMPERATURE}' is {temperature}, not a positive temperature")
        ckpt["loss"] = {"temperature.log_t": torch.tensor(math.log(temperature))}
    if original.optimizer is None:
        ckpt["converted_from"]["no_training_state"] = (
            "a bare model.pt" if original.temperature is None else "no optimizer_states in the Lightning checkpoint")
        return ckpt
    ckpt.update(_training_state(original, model, name_map, config, str(path)))
    return ckpt


def _training_state(original: OriginalCheckpoint, model: nn.Module, name_map: dict[str, str], config: dict,
                    source: str) -> dict:
    """The Adam state and the schedule's step of the original's run, as this
    project's Trainer holds them at the end of the same epoch (purl.training.checkpoint)."""
    o = config["optim"]
    if "epoch" not in original.info:
        raise ConversionError(f"{source}: has optimizer_states but no 'epoch': cannot tell where the run stopped")
    epochs = original.info["epoch"] + 1  # Lightning's epoch=199 checkpoint ends the 200th epoch
    step = original.scheduler.get("last_epoch") if original.scheduler else original.info.get("global_step")
    if not isinstance(step, int) or step <= 0 or step % epochs:
        raise ConversionError(f"{source}: the schedule stopped at step {step!r} after {epochs} epochs: not the end "
                              "of an epoch (convert an epoch=<N> checkpoint, saved at an epoch's end)")
    if original.info.get("global_step", step) != step:
        raise ConversionError(f"{source}: global_step {original.info['global_step']} but the schedule's step {step}")
    groups = original.optimizer.get("param_groups") or []
    group = groups[0] if len(groups) == 1 else {}
    recorded = {**original.hyper_parameters, **{f"param group's {k}": group[k] for k in ("initial_lr", "weight_decay")
                                                if k in group}}
    expected = {"learning_rate": ("optim.lr", o["lr"]), "param group's initial_lr": ("optim.lr", o["lr"]),
                "optim_weight_decay": ("optim.weight_decay", o["weight_decay"]),
                "param group's weight_decay": ("optim.weight_decay", o["weight_decay"])}
    differ = [f"{key} {recorded[key]!r} there, {ours} {value!r} here" for key, (ours, value) in expected.items()
              if isinstance(recorded.get(key), (int, float)) and float(recorded[key]) != float(value)]
    hyper = original.hyper_parameters
    if hyper.get("lr_scheduler_type", "cosine") != "cosine" or (o["warmup_frac"], o["final_lr_frac"]) != (0.1, 0.0):
        differ.append(f"lr_scheduler_type {hyper.get('lr_scheduler_type', 'cosine')!r} (a 10% warm-up, cosine to 0) "
                      f"there, optim.warmup_frac {o['warmup_frac']} and final_lr_frac {o['final_lr_frac']} here")
    if differ:
        raise ConversionError(f"{source}: its schedule is not the config's ({'; '.join(differ)}); set the config "
                              "as the original ran (--set), or convert the weights alone from its model.pt")

    loss_args = dict(config["loss"])
    loss = build_loss(loss_args.pop("type"), **loss_args)
    ours = list(model.named_parameters()) + [("loss." + n, p) for n, p in loss.named_parameters()]
    optimizer = build_optimizer([p for _, p in ours], o)  # as purl.training.setup: encoder, then the loss
    theirs = [key for key, mapped in name_map.items() if mapped in dict(model.named_parameters())]
    n_theirs = len(group["params"]) if group else -1
    with_temperature = n_theirs == len(theirs) + 1
    if n_theirs != len(theirs) + with_temperature or with_temperature != any(n == "loss.temperature.log_t"
                                                                              for n, _ in ours):
        held = f"{n_theirs} parameters" if n_theirs >= 0 else f"{len(groups)} parameter groups"
        raise ConversionError(
            f"{source}: its Adam state holds {held}, the config's model and loss {len(ours)} (the network's "
            f"{len(theirs)} and {'a learnt' if len(ours) > len(theirs) else 'no learnt'} temperature): "
            "use the config the original trained with")
    index_of = {key: group["params"][i] for i, key in enumerate(theirs + [LIGHTNING_TEMPERATURE] * with_temperature)}
    ours_to_theirs = {mapped: key for key, mapped in name_map.items()}
    adam = {}
    for j, (ours_name, param) in enumerate(ours):
        key = LIGHTNING_TEMPERATURE if ours_name == "loss.temperature.log_t" else ours_to_theirs[ours_name]
        moments = original.optimizer.get("state", {}).get(index_of[key])
        if moments is None:  # a parameter that never had a gradient has no state, in either
            continue
        exp_avg, exp_avg_sq = moments["exp_avg"], moments["exp_avg_sq"]
        if exp_avg.numel() != param.numel() or exp_avg_sq.numel() != param.numel():
            raise ConversionError(f"{source}: the Adam moments of '{key}' have {exp_avg.numel()} values, "
                                  f"its weights {param.numel()}")
        if key == LIGHTNING_TEMPERATURE:  # t there, log t here: d/d log t = t d/dt
            t = original.temperature
            exp_avg, exp_avg_sq = exp_avg * t, exp_avg_sq * t * t
        adam[j] = {"step": torch.as_tensor(moments["step"], dtype=torch.float32).clone(),
                   "exp_avg": exp_avg.reshape(param.shape).to(param.dtype).clone(),
                   "exp_avg_sq": exp_avg_sq.reshape(param.shape).to(param.dtype).clone()}
    target = optimizer.state_dict()
    target["state"] = adam
    target["param_groups"][0]["initial_lr"] = o["lr"]  # what a schedule made at step 0 records
    for key in ("betas", "eps"):
        if key in group:
            target["param_groups"][0][key] = tuple(group[key]) if key == "betas" else group[key]
    optimizer.load_state_dict(target)
    steps_per_epoch = step // epochs
    factor = warmup_cosine(o["epochs"] * steps_per_epoch, o["warmup_frac"], o["final_lr_frac"])
    scheduler = build_scheduler(optimizer, factor, step)
    return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "sampler": {"epoch": epochs, "step": 0}, "global_step": step, "epoch_losses": []}
