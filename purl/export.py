"""TorchScript and ONNX files of a trained encoder, for use without this package.

The exported graph is the encoder alone: input ``feats`` (batch, frames, 80)
float32, the 80-dim Kaldi fbank of 16 kHz audio on the 16-bit sample scale with
each utterance's mean removed (``purl.api.features_of`` computes it); output
``embedding`` (batch, embed_dim). Batch and frames are free (any number of
frames from 1 up). Scoring is the cosine of two embeddings, after subtracting
the mean vector of ``exp/<model>/scores/threshold.json`` when there is one;
``purl export`` stores that file's content (mean, EER threshold, calibration)
in the export as ``purl_scoring`` (JSON): ONNX metadata_props, a TorchScript
extra file.

Both formats are made by tracing the model on one input length and checked on
another before anything is written: a graph that had frozen the length would
fail that check instead of giving wrong embeddings later.

Exporters (torch 2.13): TorchScript by ``torch.jit.trace``; ONNX by the
TorchScript-based ``torch.onnx.export(..., dynamo=False)`` (the default dynamo
exporter needs the onnxscript package and fails on these models' free time
axis). Both are deprecated by PyTorch but work in this version; the parity
tests in tests/test_export.py say when they stop working.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from purl.errors import PurlError
from purl.fileio import atomic_path

FORMATS = ("onnx", "torchscript")
TRACE_FRAMES, CHECK_FRAMES = 200, 137  # traced on one length, checked on another
ONNX_OPSET = 17


class ExportError(PurlError, RuntimeError):
    """The model could not be exported, or the export does not compute what it does."""


def _example(frames: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, 80, generator=torch.Generator().manual_seed(seed))


def _check(reference: torch.nn.Module, run, what: str, tolerance: float = 1e-4) -> float:
    x = _example(CHECK_FRAMES, batch=2, seed=1)
    with torch.no_grad():
        expected = reference(x).numpy()
    got = np.asarray(run(x))
    if got.shape != expected.shape:
        raise ExportError(f"{what}: output of shape {got.shape} for {CHECK_FRAMES} frames, expected {expected.shape}")
    diff = float(np.abs(got - expected).max())
    if not diff <= tolerance:
        raise ExportError(f"{what}: embeddings differ from the PyTorch model's by up to {diff:.3g} "
                          f"(> {tolerance}) on {CHECK_FRAMES} frames; this model does not export correctly")
    return diff


def export_torchscript(model: torch.nn.Module, out: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Writes a traced TorchScript module: ``torch.jit.load(out)(feats)``;
    ``metadata`` as extra files of the archive (``torch.jit.load(out, _extra_files={key: ""})``)."""
    model = model.eval()
    out = Path(out)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        traced = torch.jit.trace(model, _example(TRACE_FRAMES))
        _check(model, lambda x: traced(x).numpy(), "TorchScript")
        with atomic_path(out) as tmp:
            traced.save(str(tmp), _extra_files=dict(metadata or {}))
    return out


def export_onnx(model: torch.nn.Module, out: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Writes an ONNX model with input ``feats`` (batch, frames, 80) and output
    ``embedding`` (batch, embed_dim), both axes but the last free, and
    ``metadata`` in its metadata_props; checks it with onnxruntime when that is
    installed."""
    model = model.eval()
    out = Path(out)
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    with atomic_path(out) as tmp:  # a failed check leaves no model behind
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(legacy|deprecated|removed|Constant folding).*")
            torch.onnx.export(model, (_example(TRACE_FRAMES),), str(tmp), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["feats"], output_names=["embedding"],
                              dynamic_axes={"feats": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}})
        if metadata:
            import onnx

            graph = onnx.load(str(tmp))
            for key, value in metadata.items():
                graph.metadata_props.add(key=key, value=value)
            onnx.save(graph, str(tmp))
        if onnxruntime is not None:
            session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            _check(model, lambda x: session.run(None, {"feats": x.numpy()})[0], "ONNX (onnxruntime)")
    return out


def export_model(model: torch.nn.Module, fmt: str, out: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    return (export_onnx if fmt == "onnx" else export_torchscript)(model, out, metadata)
