"""Chunks in forked worker processes (class_qgis_plugin/parallel.py): results in order and computed
elsewhere, errors come back whole, a cancel stops the pool and leaves no process, and xraylib
(OpenMP, which does not survive a fork) is never called in a worker."""
import multiprocessing
import os
import time

import numpy as np
import pytest

from class_qgis_plugin import parallel
from class_qgis_plugin.errors import Cancelled, ClassXRFError
from class_qgis_plugin.progress import Progress

pytestmark = pytest.mark.skipif(not parallel.can_fork(), reason="worker processes are forked on Linux only")

BIG = np.arange(1_000_000, dtype=np.int64)       # inherited by the workers, never sent to them


def test_chunks_come_back_in_order_computed_in_other_processes():
    out = parallel.map_chunks(lambda c: (os.getpid(), int(BIG[1000 * c:1000 * (c + 1)].sum())), 10, threads=2,
                              processes=True)
    # sum of k for k = 1000c .. 1000c + 999
    assert [s for _, s in out] == [1000 * 1000 * c + 999 * 1000 // 2 for c in range(10)]
    assert os.getpid() not in {p for p, _ in out}
    assert multiprocessing.active_children() == []


def test_without_processes_the_same_chunks_run_in_this_process(monkeypatch):
    monkeypatch.setenv("CLASSXRF_PROCESSES", "0")
    assert not parallel.can_fork()
    out = parallel.map_chunks(lambda c: os.getpid(), 4, threads=2, processes=True)
    assert out == [os.getpid()] * 4


def test_an_error_in_a_worker_comes_back_whole():
    def fn(c):
        if c == 3:
            raise ClassXRFError("/data/day1/x.pha", "exposure must be positive", key="EXPOSURE")
        return c
    with pytest.raises(ClassXRFError) as e:
        parallel.map_chunks(fn, 6, threads=2, processes=True)
    assert (e.value.path, e.value.key, e.value.problem) == ("/data/day1/x.pha", "EXPOSURE", "exposure must be positive")
    assert str(e.value) == "/data/day1/x.pha: EXPOSURE: exposure must be positive"


class _CancelAfter(Progress):
    def __init__(self, seconds):
        self.at = time.monotonic() + seconds

    @property
    def cancelled(self):
        return time.monotonic() > self.at


def test_a_cancel_stops_the_pool_and_leaves_no_worker(tmp_path):
    def fn(c):
        time.sleep(0.25)
        (tmp_path / f"chunk{c}").write_text("done")
        return c
    with pytest.raises(Cancelled):
        parallel.map_chunks(fn, 40, _CancelAfter(0.6), threads=2, processes=True)
    assert multiprocessing.active_children() == []
    assert 0 < len(list(tmp_path.iterdir())) < 40        # the chunks not yet started never ran


def test_xraylib_is_called_before_the_fork_not_in_a_worker():
    import xraylib
    from class_qgis_plugin.atomic import atomic_data
    from class_qgis_plugin.composition import Z
    ad = atomic_data(np.array([1.5, 3.0, 6.0]))
    with pytest.raises(RuntimeError, match="warm_dcs"):
        parallel.map_chunks(lambda c: ad.scatter_dcs([120.5 + c]), 2, threads=2, processes=True)
    ad.warm_dcs([120.5, 121.5])
    ray = parallel.map_chunks(lambda c: ad.scatter_dcs([120.5 + c])[0][0], 2, threads=2, processes=True)
    # between whole degrees the table is linear: the mean of xraylib's values at the two degrees
    for c, got in enumerate(ray):
        want = [[0.5 * sum(xraylib.DCS_Rayl(int(z), e, np.deg2rad(d)) for d in (120 + c, 121 + c))
                 for e in (1.5, 3.0, 6.0)] for z in Z]
        np.testing.assert_allclose(got, want, rtol=1e-12)
