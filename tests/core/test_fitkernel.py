"""The fitting kernel's linear algebra and the chunk threads, against numpy's LAPACK and by hand."""
import threading
import time

import numpy as np
import pytest

from class_qgis_plugin import fitkernel as K
from class_qgis_plugin.errors import Cancelled
from class_qgis_plugin.parallel import map_chunks
from class_qgis_plugin.progress import Progress


def _spd(rng, n, p):
    X = rng.normal(size=(n, p + 3, p))
    return X.transpose(0, 2, 1) @ X + 1e-3 * np.eye(p)


def test_spd_solve_equals_lapack():
    rng = np.random.default_rng(0)
    A, b = _spd(rng, 50, 9), rng.normal(size=(50, 9))
    x, ok = K.spd_solve(A, b)
    assert ok.all()
    np.testing.assert_allclose(x, np.linalg.solve(A, b[..., None])[..., 0], rtol=1e-9, atol=1e-12)
    # an indefinite matrix is said so, not solved into a number
    A[3] = np.diag([1.0, -1.0] + [1.0] * 7)
    x, ok = K.spd_solve(A, b)
    assert not ok[3] and ok.sum() == 49 and np.isnan(x[3]).all()


def test_held_inverse_is_the_inverse_of_the_free_block():
    rng = np.random.default_rng(1)
    F = _spd(rng, 20, 7)
    free = rng.uniform(size=(20, 7)) > 0.3
    free[:, 0] = True
    F[5] = np.diag([1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])       # singular: the pseudo-inverse
    free[5] = True
    cov = K.held_inverse(F, free)
    for r in range(20):
        fr = np.flatnonzero(free[r])
        ref = np.linalg.pinv(F[r][np.ix_(fr, fr)]) if r == 5 else np.linalg.inv(F[r][np.ix_(fr, fr)])
        np.testing.assert_allclose(cov[r][np.ix_(fr, fr)], ref, rtol=1e-8, atol=1e-12)
        held = ~free[r]
        assert (cov[r][held] == 0).all() and (cov[r][:, held] == 0).all()


def test_solve_held_keeps_held_parameters_at_zero():
    rng = np.random.default_rng(2)
    F, g = _spd(rng, 10, 5), rng.normal(size=(10, 5))
    free = np.ones((10, 5), bool)
    free[:, 2] = False
    x = K.solve_held(F, g, free)
    assert (x[:, 2] == 0).all()
    keep = [0, 1, 3, 4]
    for r in range(10):
        np.testing.assert_allclose(x[r, keep], np.linalg.solve(F[r][np.ix_(keep, keep)], g[r, keep]), rtol=1e-9)


def test_fisher_equals_the_sum_by_hand():
    rng = np.random.default_rng(3)
    J, m = rng.normal(size=(4, 30, 3)), rng.uniform(0.5, 3, (4, 30))
    F = K.fisher(J, m, prior_prec=np.full((4, 3), 2.0))
    ref = np.array([[[sum(J[n, c, p] * J[n, c, q] / m[n, c] for c in range(30)) for q in range(3)]
                     for p in range(3)] for n in range(4)]) + 2.0 * np.eye(3)
    np.testing.assert_allclose(F, ref, rtol=1e-12)


def test_map_chunks_keeps_order_and_honours_a_cancel():
    out = map_chunks(lambda c: (c, threading.get_ident()), 12, threads=3)
    assert [c for c, _ in out] == list(range(12))

    class Stop(Progress):
        cancelled = False
    p, ran = Stop(), []

    def slow(c):
        if c == 2:
            p.cancelled = True
        time.sleep(0.05)
        ran.append(c)
        return c
    with pytest.raises(Cancelled):
        map_chunks(slow, 200, progress=p, threads=2)
    assert len(ran) < 50           # the chunks not started when the cancel came are not run


def test_expected_c_table_equals_the_poisson_sum():
    """The tabulated E[C] per bin against the sum over scipy's Poisson probabilities, from 1e-6 to 25."""
    from scipy import stats
    mu = np.array([1e-6, 3e-4, 0.02, 0.37, 1.0, 2.5, 7.7, 19.9, 25.0])
    k = np.arange(0, 200)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(k > 0, 2 * (mu - k + k * np.log(k / mu)), 2 * mu)
    want = (stats.poisson.pmf(k, mu) * term).sum(axis=0)
    got = np.array([K.cstat_expected(np.array([x])) for x in mu])
    np.testing.assert_allclose(got[:-1], want[:-1], rtol=1e-5)      # the table
    np.testing.assert_allclose(got[-1], want[-1], rtol=1e-4)        # the expansion above 20
