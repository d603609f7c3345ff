"""TorchScript and ONNX exports compute the PyTorch model's embeddings at any length."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from purl.export import ExportError, export_model, export_onnx
from purl.models import MODELS, build_model

LENGTHS = (23, 137, 400)  # frames; the export traces on 200


def exported_and_reference(name, fmt, tmp_path):
    torch.manual_seed(0)
    model = build_model(name).eval()  # the registry's defaults: whatever the module computes
    out = export_model(model, fmt, tmp_path / f"{name}.{fmt}")
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        run = lambda x: session.run(None, {"feats": x.numpy()})[0]  # noqa: E731
    else:
        with pytest.warns(DeprecationWarning):  # torch 2.13 deprecates TorchScript; still loads
            loaded = torch.jit.load(str(out))
        run = lambda x: loaded(x).numpy()  # noqa: E731
    return model, run


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_export_matches_pytorch_embeddings_at_several_lengths(name, fmt, tmp_path):
    model, run = exported_and_reference(name, fmt, tmp_path)
    rng = np.random.default_rng(0)
    for frames in LENGTHS:
        x = torch.from_numpy(rng.normal(size=(2, frames, 80)).astype(np.float32))
        with torch.no_grad():
            expected, got = model(x).numpy(), run(x)
        assert got.shape == expected.shape == (2, model.embed_dim)
        assert np.abs(got - expected).max() <= 1e-4, (name, fmt, frames)


class LengthFrozen(torch.nn.Module):
    """Pools with the traced length as a constant: right only at that length."""

    embed_dim = 80

    def forward(self, x):
        return x.sum(1) / x.shape[1] if torch.jit.is_tracing() is False else x.sum(1) / 200


def test_export_that_freezes_the_length_is_refused_and_writes_nothing(tmp_path):
    with pytest.raises(ExportError, match="differ from the PyTorch model's"):
        export_onnx(LengthFrozen(), tmp_path / "frozen.onnx")
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_is_an_error(tmp_path):
    with pytest.raises(ExportError, match="choose from onnx, torchscript"):
        export_model(LengthFrozen(), "tflite", tmp_path / "m")
