"""One run per output at a time: an exclusive lock (flock) on a lock file in the
dir a run writes. A second run stops at once, naming the holder; the kernel
releases the lock when the holder's last descriptor closes, so a run killed
with SIGKILL leaves no lock behind (the file stays, unlocked)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path
from typing import Iterator

from purl.errors import PurlError

LOCK_NAME = ".purl.lock"  # in the locked dir: 'pid N (command)' of the holder


class DirInUseError(PurlError, RuntimeError):
    """Another process holds the dir's lock."""


def lock_fd(fd: int, directory: str | os.PathLike, pid: int, command: str) -> None:
    """Takes the lock of the open lock file ``fd`` without waiting and writes
    who holds it; DirInUseError naming the holder when another process has it.
    (A shell script opens the file and lets steps/lock_dir.py take the lock on
    the descriptor it inherits: the lock stays with the script.)"""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
        raise DirInUseError(f"{directory} is in use by {holder}; wait for it to end, or write elsewhere") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {pid} ({command})\n".encode(), 0)


@contextlib.contextmanager
def locked_dir(directory: str | os.PathLike) -> Iterator[Path]:
    """Holds ``directory``'s lock (made if missing) while the block runs. A dir
    made here that holds only the lock file when the block fails is removed:
    a run refused at the door (a bad config) leaves nothing behind."""
    directory = Path(directory)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        lock_fd(fd, directory, os.getpid(), " ".join(sys.argv))
        yield directory
    except BaseException:
        if created and [p.name for p in directory.iterdir()] == [LOCK_NAME]:
            (directory / LOCK_NAME).unlink()
            directory.rmdir()
        raise
    finally:
        os.close(fd)
