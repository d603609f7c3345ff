"""Threads for work that numpy does outside the GIL: independent parts (one
speaker's pairs, one block of EM rows) in a pool."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from threadpoolctl import threadpool_limits

from purl.processes import usable_cores


def work_threads() -> int:
    """The cores this process may use, at most 8 (past that the Python parts
    of the work, under the GIL, dominate)."""
    return max(1, min(8, usable_cores()))


def in_threads(work: Callable, parts: list) -> list:
    """``[work(part) for part in parts]``, the parts in threads of their own,
    each with one BLAS thread."""
    if len(parts) == 1:
        return [work(parts[0])]
    # threadpoolctl's limit is the process's: set here once for all threads,
    # a thread's own enter/exit of the limit then saves and restores this 1.
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(len(parts)) as pool:
        return list(pool.map(work, parts))

