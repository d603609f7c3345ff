"""Atomic file writes: every output is written under a temporary name in its own
directory and renamed when complete, so a reader (a later stage, a rerun's skip
check) never sees a half-written file.

The temporary name is ``<name>.<pid>.tmp`` beside the target (one style, so that
a crash leaves a file a person recognises; the pid keeps two processes that
write one output, say two identical runs, off each other's half-written file).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Iterator


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary name of this process's pending write of ``path``:
    ``<name>.<pid>.tmp`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields the temporary path to write; renames it to ``path`` when the block
    ends without an exception, removes it otherwise."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_atomic(path: str | os.PathLike, write: Callable, mode: str = "wb") -> None:
    """Opens the temporary file in ``mode``, calls ``write(f)``, renames."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        write(f)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes under a temporary name and renames; an unchanged file is left alone,
    so that its time stamp keeps telling later stages that nothing changed."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == len(text.encode("utf-8")) and path.read_text(encoding="utf-8") == text:
        return
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
