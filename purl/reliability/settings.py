"""The settings of every estimator, and the error of bad input to stage 4."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from purl.errors import PurlError


class ReliabilityError(PurlError, ValueError):
    """Bad input to a fit (settings, embeddings, labels) or a bad reliability dir."""


@dataclass
class ReliabilitySettings:
    """Settings of every estimator (config ``reliability.<field>``)."""

    n_bins: int = 256        # histogram bins per speaker (spanning its min..max cosine)
    n_init: int = 5          # EM initialisations; the best log-likelihood (by > tol) wins
    max_iter: int = 300
    # On the change of mean log-likelihood per pair, as sklearn. sklearn's default
    # 1e-3 (the original work's) stops EM long before the optimum when a speaker's
    # components overlap: on VoxCeleb2-like data its posteriors then move by up to
    # 0.3 as EM runs on, and depend on the init. 1e-8 gives converged fits (within
    # 0.003) at ~10 % more EM time; set 1e-3 to reproduce the original work.
    tol: float = 1e-8
    reg_covar: float = 1e-6  # added to every variance, as sklearn
    seed: int = 42           # sklearn's random_state
    min_utts: int = 3        # fewer utterances: w = 1
    min_std: float = 1e-4    # pair cosines with a smaller std have "no spread": w = 1 (the original: 1e-6)
    bic_sample_size: str = "utts"  # "bic": the n of BIC, utterances or (textbook) pairs
    # The pair cosines that the sklearn fit and the pair weights use: "float64"
    # (float32 embeddings, products summed in float64) or "float32", as the
    # original work, whose embeddings, cosines and sklearn fit are all float32.
    cosine_dtype: str = "float64"
    # A speaker whose sklearn fit raises: "error" stops the stage naming it;
    # "w1" gives its pairs w = 1, as the original work does (report.json counts them).
    failed_fit: str = "error"

    @classmethod
    def from_dict(cls, values: dict | None) -> "ReliabilitySettings":
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ReliabilityError(f"reliability: unknown setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def __post_init__(self):
        if self.bic_sample_size not in ("utts", "pairs"):
            raise ReliabilityError(f"reliability: bic_sample_size must be 'utts' or 'pairs', not {self.bic_sample_size!r}")
        if self.cosine_dtype not in ("float64", "float32"):
            raise ReliabilityError(f"reliability: cosine_dtype must be 'float64' or 'float32', not {self.cosine_dtype!r}")
        if self.failed_fit not in ("error", "w1"):
            raise ReliabilityError(f"reliability: failed_fit must be 'error' or 'w1', not {self.failed_fit!r}")
        if self.n_bins < 2 or self.n_init < 1 or self.max_iter < 1:
            raise ReliabilityError(f"reliability: need n_bins >= 2, n_init >= 1, max_iter >= 1 (got {self})")
