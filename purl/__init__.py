"""PURL: pairwise unlearning with reliability learning for speaker verification."""

import ctypes

# glibc's malloc by default hands large freed blocks back to the kernel and
# serves large requests with fresh mmaps, so the multi-megabyte activations of
# every training or embedding step page-fault all over again (in a VM, expensive:
# 10-20% of a CPU step). Keeping freed memory in the heap avoids that; the cost
# is that a process stays at its peak size. Values are glibc's M_TRIM_THRESHOLD
# (-1) and M_MMAP_THRESHOLD (-3); older glibc caps the mmap threshold at 32 MiB.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _keep_freed_memory() -> None:
    try:  # the symbols already loaded into this process: libc's, no library search
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    if not mallopt(_M_MMAP_THRESHOLD, 256 * 2**20):
        mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
    mallopt(_M_TRIM_THRESHOLD, 2**30)


_keep_freed_memory()
