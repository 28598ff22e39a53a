"""Threads over independent chunks of a batch (the inversion's and the solar fit's chunks).

numpy releases the interpreter lock inside its array loops and matrix products, so chunks of a
batch fitted in threads use the machine's cores without copying the data to other processes.
Results come back in chunk order and do not depend on the number of threads (each chunk is
computed alone). ``CLASSXRF_THREADS`` sets the number of threads (default: the cores this process
may use).
"""
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
