"""Processes for work that threads cannot share: sklearn's per-speaker fits
run in Python under the GIL, and its k-means initialisation sums in OpenMP
threads, whose reductions may change with the thread count. Each part runs
in a spawned process (a forked one would inherit the parent's thread pools)
with one BLAS and one OpenMP thread, so a part's numbers are the same in any
number of processes.

Only the standard library is imported here: a worker sets its thread limits
before its work imports numpy's or sklearn's libraries, where it can.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import traceback
from multiprocessing.connection import Connection, wait
from typing import Callable, Iterable

from purl.errors import PurlError

# Read by OpenMP, OpenBLAS and MKL when they are loaded; libraries already
# loaded in the worker (through its imports) are limited by threadpoolctl.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class WorkerError(PurlError):
    """A part failed in its process: its error, or the process ended without a result."""


def usable_cores() -> int:
    """The cores this process may use (its CPU affinity, as taskset or Slurm set it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def in_processes(work: Callable, arguments: Iterable[tuple], count: int, what: str) -> list:
    """``[work(*args) for args in arguments]``, each call in a spawned process
    of its own (``count`` of them, one per tuple of ``arguments``), each process
    with one BLAS and one OpenMP thread.

    ``work`` must be a module-level function. ``arguments`` may be a generator:
    each tuple is sent as soon as it is made and dropped, and numpy arrays in it
    travel out of band (pickle protocol 5), so the caller never holds more than
    one part's copy. The first error of a part (or a process that ends without
    its result) stops the others and is raised as WorkerError, its message
    starting with ``what``.
    """
    context = multiprocessing.get_context("spawn")
    workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=_serve, args=(theirs, work), daemon=True)
            process.start()
            theirs.close()  # the worker's end: a worker that dies leaves ours at EOF
            workers.append((process, ours))
        sent = 0
        for (process, conn), args in zip(workers, arguments):
            try:
                _send(conn, args)
            except OSError:  # the worker died before it read its part
                raise _ended(what, sent, count, process) from None
            del args  # before the next part is made
            sent += 1
        if sent != count:
            raise ValueError(f"in_processes: {sent} argument tuples for {count} processes")
        return _collect(workers, what)
    finally:
        for process, conn in workers:
            if process.is_alive():
                process.terminate()
            process.join()
            conn.close()


def _send(conn: Connection, obj) -> None:
    """obj pickled, its arrays' memory sent as it is (no copy for the pipe)."""
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    conn.send([buffer.raw().nbytes for buffer in buffers])
    conn.send_bytes(header)
    for buffer in buffers:
        conn.send_bytes(buffer.raw())


def _receive(conn: Connection):
    sizes = conn.recv()
    header = conn.recv_bytes()
    buffers = []
    for size in sizes:
        buffer = bytearray(size)  # writable, as the sender's arrays were
        conn.recv_bytes_into(buffer)
        buffers.append(buffer)
    return pickle.loads(header, buffers=buffers)


def _serve(conn: Connection, work: Callable) -> None:
    """A worker: one thread per library, then work(*args) on the part it is sent."""
    os.environ.update(ONE_THREAD)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)  # not restored: the whole process keeps one thread
    args = _receive(conn)
    try:
        result = ("done", work(*args))
    except BaseException as e:  # sent to the parent, which raises WorkerError
        # A PurlError is a message for the user; anything else is a bug: its traceback follows.
        text = f"{type(e).__name__}: {e}"
        result = ("error", text if isinstance(e, PurlError) else f"{text}\n{traceback.format_exc().rstrip()}")
    conn.send(result)
    conn.close()


def _collect(workers, what: str) -> list:
    results: list = [None] * len(workers)
    pending = {conn: k for k, (_, conn) in enumerate(workers)}
    while pending:
        for conn in wait(list(pending)):
            k = pending.pop(conn)
            try:
                status, value = conn.recv()
            except EOFError:  # the process ended (killed, out of memory) before sending
                raise _ended(what, k, len(workers), workers[k][0]) from None
            if status == "error":
                raise WorkerError(f"{what}: process {k + 1} of {len(workers)} failed: {value}")
            results[k] = value
    return results


def _ended(what: str, k: int, count: int, process) -> WorkerError:
    process.join(10)
    code = process.exitcode
    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"ended with exit status {code}"
    return WorkerError(f"{what}: process {k + 1} of {count} {how} before returning its result "
                       "(out of memory? try fewer processes with --nj)")
