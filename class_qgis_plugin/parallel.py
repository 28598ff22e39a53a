"""Threads over independent chunks of a batch (the inversion's and the solar fit's chunks).

numpy releases the interpreter lock inside its array loops and matrix products, so chunks of a
batch fitted in threads use the machine's cores without copying the data to other processes.
Results come back in chunk order and do not depend on the number of threads (each chunk is
computed alone). ``CLASSXRF_THREADS`` sets the number of threads (default: the cores this process
may use). While chunks run in threads, OpenBLAS (numpy's matrix products) is held to one thread of
its own: its threads and ours would otherwise compete for the same cores (measured: 650 against
776 spectra/s on 2 cores, ``benchmarks/bench_invert.py``).
"""
import contextlib
import ctypes
import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from .progress import as_progress


def n_threads():
    """Threads for chunked work: ``CLASSXRF_THREADS`` or the cores this process may use."""
    env = os.environ.get("CLASSXRF_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                   # not on Linux
        return max(1, os.cpu_count() or 1)


_BLAS_NAMES = (("openblas_set_num_threads", "openblas_get_num_threads"),
               ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
               ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
               ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"))
_BLAS = []


def _openblas():
    """(set, get) thread functions of every OpenBLAS this process has loaded (Linux: found in
    /proc/self/maps; elsewhere none)."""
    if not _BLAS:
        found = []
        try:
            with open("/proc/self/maps") as fh:
                libs = sorted({line.split()[-1] for line in fh if "openblas" in line.lower() and ".so" in line})
        except OSError:
            libs = []
        for path in libs:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for set_name, get_name in _BLAS_NAMES:
                if hasattr(lib, set_name) and hasattr(lib, get_name):
                    found.append((getattr(lib, set_name), getattr(lib, get_name)))
                    break
        _BLAS.append(found)
    return _BLAS[0]


@contextlib.contextmanager
def blas_threads(n):
    """Hold OpenBLAS to ``n`` threads inside the block, then restore what it had."""
    libs = _openblas()
    before = [get() for _, get in libs]
    for set_, _ in libs:
        set_(int(n))
    try:
        yield
    finally:
        for (set_, _), k in zip(libs, before):
            set_(int(k))


def map_chunks(fn, n, progress=None, lo=0.0, hi=1.0, message=None, threads=None):
    """``[fn(0), ..., fn(n - 1)]``, in threads. Progress moves from ``lo`` to ``hi`` as chunks finish
    (``message(c)``: the text for chunk ``c``); a cancel stops the chunks not yet started and is
    raised once the running ones return (about one chunk's time)."""
    p = as_progress(progress)
    k = min(threads or n_threads(), n)
    out = [None] * n
    if k <= 1:
        for c in range(n):
            p.check()
            p.set(lo + (hi - lo) * c / max(n, 1), message(c) if message else None)
            out[c] = fn(c)
        return out
    with blas_threads(1):
        return _threaded(fn, n, p, lo, hi, message, k, out)


def _threaded(fn, n, p, lo, hi, message, k, out):
    ex = ThreadPoolExecutor(max_workers=k)
    try:
        futures = {ex.submit(fn, c): c for c in range(n)}
        pending, done = set(futures), 0
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            p.check()
            for f in finished:
                c = futures[f]
                out[c] = f.result()
                done += 1
                p.set(lo + (hi - lo) * done / n, message(c) if message else None)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    return out
