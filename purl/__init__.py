"""PURL: pairwise unlearning with reliability learning for speaker verification.

``purl.load_model(path)`` gives a trained model to embed and compare audio
(purl/api.py). Importing the package has no side effects on the process; the
allocator setting the training and embedding programs use is
``purl.allocator.keep_freed_memory()``.
"""

__all__ = ["AudioError", "ModelError", "SpeakerModel", "load_model"]


def __getattr__(name):
    # Imported on first use: purl.api imports torch (seconds), and the data-dir
    # tools import purl without needing it.
    if name in __all__:
        from purl import api
        return getattr(api, name)
    raise AttributeError(f"module 'purl' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
