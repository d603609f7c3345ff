"""Speaker encoders and their registry.

Every model maps fbank features (batch, frames, 80) to embeddings
(batch, embed_dim) and has ``embed_dim`` and ``input_dim`` attributes.  A config names one by
its key in MODELS and passes constructor arguments through ``model.args``:

=================  ===========================================  ==========  =========
name               what                                         embed_dim   params
=================  ===========================================  ==========  =========
ecapa_tdnn         ECAPA-TDNN, C=256 (SpeechBrain layout)       192         2,049,952
                   channels=[512]*4+[1536]: C=512                           6,194,048
                   channels=[1024]*4+[3072]: C=1024                         20,767,552
resnet34           thin ResNet-34 (16-128 channels, SE, SAP)    192         1,395,798
resnet34_wide      WeSpeaker's ResNet34 (32-256 ch., mean+std)  256         6,634,336
=================  ===========================================  ==========  =========

``resnet34_wide`` is ``ResNet`` with other defaults, so its arguments are the
same as ``resnet34``'s (e.g. ``pooling: asp`` or ``embed_dim: 192``).
``resnet34`` with ``layout: original`` is the thin ResNet-34 exactly as the
original PURL work runs it (egs/voxceleb's config); the class default
``layout: clova`` keeps older checkpoints loading as what they were trained as.
"""

from __future__ import annotations

import difflib
import functools
import inspect

import torch.nn as nn

from purl.errors import PurlError
from purl.models.ecapa_tdnn import EcapaTdnn
from purl.models.resnet import ResNet

MODELS = {
    "ecapa_tdnn": EcapaTdnn,
    "resnet34": ResNet,
    "resnet34_wide": functools.partial(
        ResNet,
        base_channels=32,
        strides=(1, 2, 2, 2),
        stem_kernel=3,
        stem_freq_stride=1,
        se_reduction=0,
        flatten_freq=True,
        pooling="stats",
        embed_dim=256,
    ),
}


class ModelArgumentError(PurlError, ValueError, TypeError):
    """A model name the registry lacks, or keyword arguments the model's
    constructor does not take or cannot build a model of.

    A ValueError like every config mistake, and a TypeError as Python itself
    would raise for an unexpected keyword. ``key``: the part of a config's
    model section at fault, "name" or "args".
    """

    def __init__(self, message: str, key: str = "args"):
        super().__init__(message)
        self.key = key


def build_model(name: str, **kwargs) -> nn.Module:
    """The model registered as ``name``, constructed with ``kwargs``.

    Raises ModelArgumentError (a ValueError) for an unknown name (listing the
    known ones and the closest match), for keyword arguments the model's
    constructor lacks, and for values it refuses (e.g. ECAPA-TDNN's
    ``channels`` of another length than its ``kernel_sizes``).
    """
    if name not in MODELS:
        close = difflib.get_close_matches(name, MODELS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelArgumentError(f"unknown model {name!r}{hint}; known models: {', '.join(sorted(MODELS))}",
                                 key="name")
    factory = MODELS[name]
    accepted = list(inspect.signature(factory).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        hints = [
            f"{close[0]!r} for {arg!r}"
            for arg in unknown
            if (close := difflib.get_close_matches(arg, accepted, n=1))
        ]
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        raise ModelArgumentError(
            f"model {name!r} got unknown argument(s) {', '.join(unknown)}{hint}; "
            f"it accepts: {', '.join(accepted)}"
        )
    try:
        return factory(**kwargs)
    except (ValueError, TypeError) as e:  # a constructor's own check of its arguments, or a value of the wrong type
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ModelArgumentError(f"model {name!r} cannot be built with {given or 'its defaults'}: {e}") from e


__all__ = ["MODELS", "EcapaTdnn", "ModelArgumentError", "ResNet", "build_model"]
