"""Timing helpers shared by the benchmark scripts.

The headline numbers are taken in the user's setting: the C library's allocator as
it comes, and one BLAS thread (``threadpoolctl``; several libraries' thread pools in
one process on a 2-core machine starve each other).  ``--tuned-malloc`` re-runs a
script with glibc's heap trimming off, as the earlier benchmarks did, for comparison.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import scipy

import jacobian_np as jn

#: glibc returns freed heap memory to the system when more than this is free at its
#: top, so code that frees a few MiB per call can page-fault them back in on the next.
#: ``--tuned-malloc`` raises both thresholds to 1 GiB; users do not, so the default
#: runs leave them alone (the library's execution plans reuse their buffers instead).
_ALLOCATOR = {"MALLOC_TRIM_THRESHOLD_": str(2**30), "MALLOC_MMAP_THRESHOLD_": str(2**30)}

_blas_limits = None  # the threadpoolctl limiter, kept alive for the run


def tuned_allocator_requested():
    return "--tuned-malloc" in sys.argv


def steady_allocator():
    """With ``--tuned-malloc``, re-run this script once with heap trimming off (``_ALLOCATOR``)."""
    if not tuned_allocator_requested() or all(os.environ.get(k) == v for k, v in _ALLOCATOR.items()):
        return
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **_ALLOCATOR})


def allocator_note():
    if all(os.environ.get(k) == v for k, v in _ALLOCATOR.items()):
        return "glibc heap trimming off (MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_: --tuned-malloc)"
    return "system allocator as it comes (no malloc variables); --tuned-malloc turns heap trimming off"


def one_blas_thread():
    """Limit NumPy's BLAS to one thread (threadpoolctl); a note saying what was done."""
    global _blas_limits
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return "threadpoolctl not installed: NumPy's BLAS threads as configured"
    _blas_limits = threadpool_limits(1)
    return "NumPy's BLAS limited to 1 thread (threadpoolctl)"


def argument_parser(doc, repeats, repeats_help="interleaved repeats (default %(default)s)"):
    """The options every benchmark takes: ``--tuned-malloc`` and ``--repeats``."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--tuned-malloc", action="store_true",
                        help="re-run with glibc's heap trimming off (not the user's setting)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="the default allocator (the default; kept for old command lines)")
    parser.add_argument("--repeats", type=int, default=repeats, help=repeats_help)
    return parser


def start(repeats, detail=""):
    """Re-run with the tuned allocator if asked, limit BLAS to one thread, print the settings."""
    steady_allocator()
    threads = one_blas_thread()
    print(environment())
    print(allocator_note())
    print(threads)
    print(f"medians of {repeats} interleaved repeats{detail}\n")


def environment():
    """One line naming the versions, the machine and the thread settings."""
    threads = {
        k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ
    }
    return (
        f"jacobian_np {jn.__version__}, NumPy {np.__version__}, SciPy {scipy.__version__}, "
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"thread settings {threads or 'default'}"
    )


def calls_per_block(f, x, target=2e-3):
    """Enough calls that one block takes about ``target`` seconds."""
    start = time.perf_counter()
    f(x)
    once = time.perf_counter() - start
    return max(1, min(1000, int(target / max(once, 1e-7))))


def interleaved_medians(functions, x, repeats):
    """Median seconds per call of each function, timing them in turn in every repeat."""
    blocks = {name: calls_per_block(f, x) for name, f in functions.items()}
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, f in functions.items():
            k = blocks[name]
            start = time.perf_counter()
            for _ in range(k):
                f(x)
            times[name].append((time.perf_counter() - start) / k)
    return {name: float(np.median(t)) for name, t in times.items()}
