"""The error of the training package."""

from purl.errors import PurlError


class TrainError(PurlError, RuntimeError):
    """Training cannot start or go on (bad checkpoint, config or data)."""
