"""Timing helpers shared by the benchmark scripts."""

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
#: top, so code that frees a few MiB per call page-faults them back in on the next.
#: On the virtual machines we benchmark on, that costs ~2 us per 4 KiB page and
#: swamps the arithmetic (W3's Jacobian: 2.3 ms instead of 0.5 ms); benchmarks run
#: with it raised unless --system-malloc is given.
_ALLOCATOR = {"MALLOC_TRIM_THRESHOLD_": str(2**30), "MALLOC_MMAP_THRESHOLD_": str(2**30)}


def steady_allocator():
    """Re-run this script with heap trimming off (see ``_ALLOCATOR``), once."""
    if "--system-malloc" in sys.argv or all(os.environ.get(k) == v for k, v in _ALLOCATOR.items()):
        return
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **_ALLOCATOR})


def allocator_note():
    if all(os.environ.get(k) == v for k, v in _ALLOCATOR.items()):
        return "glibc heap trimming off (MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_); --system-malloc for defaults"
    return "system malloc settings"


def argument_parser(doc, repeats, repeats_help="interleaved repeats (default %(default)s)"):
    """The options every benchmark takes: ``--system-malloc`` and ``--repeats``."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--system-malloc", action="store_true", help="keep glibc's heap trimming")
    parser.add_argument("--repeats", type=int, default=repeats, help=repeats_help)
    return parser


def start(repeats, detail=""):
    """Re-run with the steady allocator if needed, then print the run's settings."""
    steady_allocator()
    print(environment())
    print(allocator_note())
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


