"""Chunks of a batch (the inversion's and the solar fit's) computed in threads or in processes.

numpy releases the interpreter lock inside its array loops and matrix products, so chunks of a
batch fitted in threads use the machine's cores without copying the data to other processes.
Results come back in chunk order and do not depend on the number of threads (each chunk is
computed alone). ``CLASSXRF_THREADS`` sets the number of threads (default: the cores this process
may use). While chunks run in threads, OpenBLAS (numpy's matrix products) is held to one thread of
its own: its threads and ours would otherwise compete for the same cores (measured: 650 against
776 spectra/s on 2 cores, ``benchmarks/bench_invert.py``).

A fit of 128 rows is thousands of small numpy operations, and between them each thread holds the
interpreter lock: two threads reach 1.25-1.4x one thread, two processes 1.9x (measured on this
2-core machine: 756 spectra/s in threads, 595 + 545 in two processes side by side). With
``processes=True`` the chunks go to forked worker processes instead, which inherit the batch as it is
in memory (nothing is copied or pickled on the way in; the results come back pickled). Fork is used
only where it is safe and available: Linux, a process that is not itself a daemon (a Dask worker
is one: there the cluster's processes already share out the work), and not inside such a worker
process; elsewhere threads. ``CLASSXRF_PROCESSES=0`` turns processes off.
"""
import contextlib
import ctypes
import multiprocessing
import os
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait

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


def map_chunks(fn, n, progress=None, lo=0.0, hi=1.0, message=None, threads=None, processes=False):
    """``[fn(0), ..., fn(n - 1)]``, in threads (or, with ``processes``, in forked processes where
    :func:`can_fork`; ``fn``'s results must then pickle). Progress moves from ``lo`` to ``hi`` as
    chunks finish (``message(c)``: the text for chunk ``c``); a cancel stops the chunks not yet
    started and is raised once the running ones return (about one chunk's time)."""
    p = as_progress(progress)
    k = min(threads or n_threads(), n)
    out = [None] * n
    if k <= 1 or _CHILD:
        for c in range(n):
            p.check()
            p.set(lo + (hi - lo) * c / max(n, 1), message(c) if message else None)
            out[c] = fn(c)
        return out
    with blas_threads(1):
        if processes and can_fork() and _FORK_LOCK.acquire(blocking=False):
            try:
                return _forked(fn, n, p, lo, hi, message, k, out)
            finally:
                _FORK_LOCK.release()
        return _collect(ThreadPoolExecutor(max_workers=k), fn, n, p, lo, hi, message, out)


def can_fork():
    """Whether chunks may go to forked processes here (see the module notes)."""
    if os.environ.get("CLASSXRF_PROCESSES", "").strip() == "0":
        return False
    if not sys.platform.startswith("linux") or _CHILD:
        return False
    try:
        return not multiprocessing.current_process().daemon
    except Exception:                        # no multiprocessing state: be safe
        return False


_CHILD = False                 # True inside a worker process of map_chunks: no further pools there
_FORK_JOB = [None]             # the function the forked workers call (inherited at the fork)
_FORK_LOCK = threading.Lock()  # one process pool at a time (the job is a module global)


def in_child():
    """True inside a worker process forked by :func:`map_chunks`."""
    return _CHILD


def _child_start():
    global _CHILD
    _CHILD = True
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_DFL)    # a parent's cancel handler is not the child's
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C goes to the parent, which stops the pool
    try:    # die with the parent (a worker killed by QGIS after its cancel timeout leaves no orphans)
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    for set_, _ in _openblas():
        set_(1)


def _fork_call(c):
    return _FORK_JOB[0](c)


def _forked(fn, n, p, lo, hi, message, k, out):
    _FORK_JOB[0] = fn
    try:
        ex = ProcessPoolExecutor(max_workers=k, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_child_start)
        return _collect(ex, _fork_call, n, p, lo, hi, message, out)
    finally:
        _FORK_JOB[0] = None


def _collect(ex, fn, n, p, lo, hi, message, out):
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
