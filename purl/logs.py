"""One logging set-up for every entry script: a timestamp, the source file and
line, and the process's rank under torchrun (RANK), so that the interleaved
lines of 8 training processes and 16 jobs can be told apart in a log file."""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(filename)s:%(lineno)d{rank} %(levelname)s %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def setup_logging(level: int = logging.INFO) -> None:
    """Configures the root logger once per process (a second call changes nothing)."""
    root = logging.getLogger()
    if any(getattr(h, "_purl", False) for h in root.handlers):
        return
    rank = os.environ.get("RANK")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT.format(rank=f" rank {rank}" if rank is not None else ""),
                                           DATE_FORMAT))
    handler._purl = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
