"""The process's memory allocator, tuned for training and embedding.

glibc's malloc by default hands large freed blocks back to the kernel and
serves large requests with fresh mmaps, so the multi-megabyte activations of
every training or embedding step page-fault all over again (in a VM, expensive:
10-20% of a CPU step). Keeping freed memory in the heap avoids that; the cost
is that a process stays at its peak size. That is a choice for a program, not
for a library: entry points that train or embed (steps/train.py,
steps/extract_embeddings.py, the ``purl`` command, bench/) call
``keep_freed_memory()``; ``import purl`` changes nothing.
"""

import ctypes

# glibc's M_TRIM_THRESHOLD (-1) and M_MMAP_THRESHOLD (-3); older glibc caps the
# mmap threshold at 32 MiB.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Tells glibc's malloc to keep freed memory in the process; returns whether
    it could (False where the C library is not glibc: nothing is changed)."""
    try:  # the symbols already loaded into this process: libc's, no library search
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    if not mallopt(_M_MMAP_THRESHOLD, 256 * 2**20):
        mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
    mallopt(_M_TRIM_THRESHOLD, 2**30)
    return True
