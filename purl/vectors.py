"""The former home of the embedding-set helpers, kept as names only for
steps/extract_embeddings.py (part of another change) until the merge moves its
imports: Kaldi vector I/O is purl.kaldi_io, the embedding dir's layout and
record purl.stages.embeddings."""

from purl.kaldi_io import load_embeddings, read_vector, save_embeddings
from purl.stages.embeddings import XVECTOR_SETTINGS, embedding_settings

__all__ = ["XVECTOR_SETTINGS", "embedding_settings", "load_embeddings", "read_vector", "save_embeddings"]
