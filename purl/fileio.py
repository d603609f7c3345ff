"""Atomic file writes: every output is written under a temporary name in its own
directory and renamed when complete, so a reader (a later stage, a rerun's skip
check) never sees a half-written file.

The temporary name is ``<name>.<pid>.tmp`` beside the target (one style, so that
a crash leaves a file a person recognises; the pid keeps two processes that
write one output, say two identical runs, off each other's half-written file).
A write that finds its disk full is a DiskFullError naming the output, the
bytes written and the bytes the failed write needed, and leaves no temporary
file behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path
from typing import Callable, Iterator

from purl.errors import PurlError


class DiskFullError(PurlError, OSError):
    """An output that did not fit on its file system."""


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC or EDQUOT, or numpy's short write ("184320 requested and 69600 written",
    an OSError without an errno)."""
    return (isinstance(error, OSError) and not isinstance(error, DiskFullError)
            and (error.errno in (errno.ENOSPC, errno.EDQUOT) or _SHORT_WRITE.search(str(error)) is not None))


_SHORT_WRITE = re.compile(r"(\d+) requested and (\d+) written")


def disk_full_error(error: OSError, path: str | os.PathLike, tmp: str | os.PathLike,
                    size: int | None = None) -> DiskFullError:
    """The message of a full disk under ``path`` (written as ``tmp``): what was
    written, what the failed write (or the whole file, ``size`` when known)
    needed, and what is free there."""
    path, tmp = Path(path), Path(tmp)
    written = tmp.stat().st_size if tmp.is_file() else 0
    short = _SHORT_WRITE.search(str(error))
    if size is not None:
        needed = f"of the {size} bytes it needs"
    elif short is not None:
        needed = f"when a write of {int(short[1]) - int(short[2])} more bytes failed"
    else:
        needed = "when the next write failed"
    try:
        stat = os.statvfs(path.parent)
        free = f"; {stat.f_bavail * stat.f_frsize} bytes free on that file system"
    except OSError:
        free = ""
    error = DiskFullError(f"{path}: disk full: {written} bytes written {needed}{free}; nothing of it is kept: "
                          "free some space (or write elsewhere) and rerun")
    error.errno = errno.ENOSPC
    return error


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary name of this process's pending write of ``path``:
    ``<name>.<pid>.tmp`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, size: int | None = None) -> Iterator[Path]:
    """Yields the temporary path to write; renames it to ``path`` when the block
    ends without an exception, removes it otherwise (a full disk raised as a
    DiskFullError naming ``path``; ``size``: the bytes it needs, when known)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
    except BaseException as e:
        error = disk_full_error(e, path, tmp, size) if is_disk_full(e) else None
        tmp.unlink(missing_ok=True)
        if error is not None:
            raise error from e
        raise
    os.replace(tmp, path)


def write_atomic(path: str | os.PathLike, write: Callable, mode: str = "wb", size: int | None = None) -> None:
    """Opens the temporary file in ``mode``, calls ``write(f)``, renames."""
    with atomic_path(path, size) as tmp, open(tmp, mode) as f:
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
