"""Batched fitting kernel: Poisson and chi-square statistics and a bounded Levenberg-Marquardt.

The kernel knows nothing of X-rays. A caller supplies a model ``model(P, rows, jac) -> (m, J)``:
expected counts ``m`` (k, n_chan) for the parameter rows ``P`` (k, n_par) of the spectra ``rows``,
and, when ``jac`` is true, the Jacobian ``J`` (k, n_chan, n_par). :func:`batched_lm` then minimises
the Cash statistic (plus optional Gaussian priors) of every spectrum at once, each with its own
damping, bounds and active set.

Statistics
----------
* :func:`cstat`: ``C = 2 sum(m - d + d ln(d/m))`` (Cash 1979; XSPEC's ``cstat`` with a known
  background): twice the Poisson deviance, the quantity minimised.
* :func:`chi_xspec`: XSPEC's ``chi`` statistic with its standard weighting (XSPEC manual,
  "Appendix B: Statistics in XSPEC"): ``sum (d - m)^2 / (d + var_B)``, the data variance of the
  source counts plus the variance of the subtracted background scaled to the source (``N_B x
  scale^2``). Bins where that variance is 0 get variance 1, as sherpa's ``chi2xspecvar`` does.
  This is the statistic users compare with XSPEC fits (reduced chi-square). :func:`batched_lm`
  minimises it instead of C with ``statistic="chi"`` (XSPEC's ``statistic chi``, its default);
  at low counts it is biased (a bin below the model gets a smaller variance), which is why C is
  the default.

Levenberg-Marquardt
-------------------
The curvature is the expected Fisher information ``J^T diag(1/m) J`` (plus prior precisions),
damped as Marquardt ``(F + lam diag F) step = grad ln L``; a step is accepted when it does not
raise the statistic (``lam / 3``), otherwise refused (``lam x 10``). Bounds are kept by clipping
and an active set (a parameter on a bound whose gradient points outside is held for that step);
``feasible(P, rows)`` adds constraints that clipping cannot express (the step is shortened by
bisection until it holds). A spectrum has converged when an accepted full step (not one shortened
to stay feasible) lowers its statistic by less than ``tol``, or when no step lowers it any more
(``lam > 1e8``); it has not converged when ``max_iter`` is reached first. ``n_accepted`` counts accepted steps: 0 means the fit never moved
from its start.
"""
from dataclasses import dataclass

import numpy as np

from .choices import STATISTICS
from .progress import as_progress


def cstat(d, m):
    """Cash statistic ``2 sum(m - d + d ln(d/m))`` over the last axis."""
    m = np.maximum(m, 1e-300)
    t = m - d + np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0) / m), 0.0)
    return 2.0 * t.sum(axis=-1)


def _expected_c_exact(mu):
    """E[C] of one bin for Poisson means ``mu`` (<= 20) by the sum over the counts."""
    from scipy.special import gammaln
    mu = np.asarray(mu, float)[None]
    k = np.arange(105, dtype=float)[:, None]          # 20 + 12 sqrt(20) + 30: the tail is < 1e-15
    logk = np.log(np.where(k > 0, k, 1.0))
    pmf = np.exp(k * np.log(mu) - mu - gammaln(k + 1))
    return (pmf * 2.0 * (mu - k + k * (logk - np.log(mu)))).sum(axis=0)


_EC_LOG_MU = np.linspace(np.log(1e-8), np.log(20.0), 4001)
_EC_TABLE = []


def cstat_expected(m):
    """Expected value of C summed over the last axis for Poisson counts of means ``m`` (Kaastra 2017,
    A&A 605, A51: the goodness-of-fit reference of a C-stat fit; about one per bin at high counts,
    less at low counts). Means up to 20: the exact sums over the Poisson probabilities, tabulated
    once on 4,001 log-spaced means and interpolated (within 4e-6 relative); below 1e-8 the leading
    terms ``2 m (m - ln m)``; above 20 the expansion ``1 + 1/(6 m) + 1/(6 m^2)`` (within 1e-4 of the
    sum there)."""
    if not _EC_TABLE:
        _EC_TABLE.append(_expected_c_exact(np.exp(_EC_LOG_MU)))
    m = np.maximum(np.asarray(m, float), 1e-300)
    flat = m.ravel()
    out = 1.0 + 1.0 / (6 * flat) + 1.0 / (6 * flat ** 2)
    small = flat <= 20.0
    if small.any():
        mu = flat[small]
        tab = np.interp(np.log(np.maximum(mu, 1e-8)), _EC_LOG_MU, _EC_TABLE[0])
        out[small] = np.where(mu < 1e-8, 2 * mu * (mu - np.log(mu)), tab)
    return out.reshape(m.shape).sum(axis=-1)


def reduced_statistic(statistic, value, m, n_free, dof):
    """The value of the minimised statistic per degree of freedom: chi / dof for a chi-square fit,
    C / (E[C] - n_free) for a C fit (E[C] from :func:`cstat_expected` at the fitted model, so that
    a good fit scores about 1 at any count level; XSPEC's chi per dof is biased high at low counts)."""
    if statistic == "chi":
        return value / np.maximum(dof, 1)
    return value / np.maximum(cstat_expected(m) - n_free, 1.0)


def xspec_variance(d, background_variance=None):
    """XSPEC's standard-weighting variance of background-subtracted counts: ``d + var_B``, with
    1 where that is 0 (sherpa's ``chi2xspecvar``)."""
    v = np.asarray(d, float) + (0.0 if background_variance is None else np.asarray(background_variance, float))
    return np.where(v > 0, v, 1.0)


def chi_xspec(d, m, background_variance=None):
    """XSPEC's ``chi`` statistic over the last axis (see the module notes)."""
    return (((np.asarray(d, float) - m) ** 2) / xspec_variance(d, background_variance)).sum(axis=-1)


def statistic_value(d, m, statistic="cstat", variance=None):
    """``cstat(d, m)``, or the chi-square ``sum (d - m)^2 / variance`` (``variance`` from
    :func:`xspec_variance` gives XSPEC's ``chi``)."""
    if statistic == "cstat":
        return cstat(d, m)
    return (((d - m) ** 2) / variance).sum(axis=-1)


def residual_terms(d, m, statistic="cstat", variance=None):
    """``(r, v)`` such that the gradient of ``-statistic / 2`` is ``J^T r`` and its expected
    curvature ``J^T diag(1/v) J``: ``(d/m - 1, m)`` for C, ``((d - m)/variance, variance)`` for chi."""
    if statistic == "cstat":
        mm = np.maximum(m, 1e-12)
        return d / mm - 1.0, mm
    return (d - m) / variance, variance


@dataclass
class FitState:
    """Final state of :func:`batched_lm`, one row per spectrum: parameters ``P``, model ``m``,
    Jacobian ``J``, statistic ``C`` (Cash + prior terms), ``converged``, ``n_iter`` (steps tried),
    ``n_accepted`` (steps taken)."""
    P: np.ndarray
    m: np.ndarray
    J: np.ndarray
    C: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    n_accepted: np.ndarray


def fisher(J, m, prior_prec=None):
    """Expected Fisher information ``J^T diag(1/m) J`` (n, p, p), plus prior precisions (n, p).
    For a chi-square fit pass the variance as ``m`` (the second item of :func:`residual_terms`)."""
    Jt = np.swapaxes(J, 1, 2)
    F = np.matmul(Jt * (1.0 / np.maximum(m, 1e-12))[:, None, :], J)     # a matmul: 10x einsum's speed
    if prior_prec is not None:
        ii = np.arange(F.shape[1])
        F[:, ii, ii] += prior_prec
    return F


def _cholesky(A):
    """Cholesky factors ``L`` (n, p, p) of a batch of symmetric matrices, vectorised over the batch,
    and ``ok`` (n,): False where a matrix is not numerically positive definite."""
    n, p, _ = A.shape
    L = np.zeros_like(A)
    ok = np.ones(n, bool)
    for j in range(p):
        s = A[:, j, j] - np.einsum("nk,nk->n", L[:, j, :j], L[:, j, :j])
        good = s > 1e-300
        ok &= good
        dj = np.sqrt(np.where(good, s, 1.0))
        L[:, j, j] = dj
        if j + 1 < p:
            L[:, j + 1:, j] = (A[:, j + 1:, j] - np.einsum("nik,nk->ni", L[:, j + 1:, :j], L[:, j, :j])) / dj[:, None]
    return L, ok


def _cho_solve(L, b):
    """``x`` (n, p, r) with ``L L^T x = b`` (n, p, r)."""
    p = L.shape[1]
    y = np.zeros_like(b)
    for j in range(p):
        y[:, j] = (b[:, j] - np.einsum("nk,nkr->nr", L[:, j, :j], y[:, :j])) / L[:, j, j, None]
    x = np.zeros_like(b)
    for j in range(p - 1, -1, -1):
        x[:, j] = (y[:, j] - np.einsum("nk,nkr->nr", L[:, j + 1:, j], x[:, j + 1:])) / L[:, j, j, None]
    return x


def spd_solve(A, b):
    """Solve ``A x = b`` for a batch of symmetric positive definite ``A`` (n, p, p), ``b`` (n, p),
    by Cholesky vectorised over the batch -> (x (n, p), ok (n,) bool; False where ``A`` is not
    numerically positive definite, x NaN there).

    Written out rather than ``np.linalg.solve``: for the small systems of a fit (p <= 12) a LAPACK
    call costs more than the arithmetic, and with a multi-threaded BLAS on a busy machine far more
    (``benchmarks/bench_archive_estimate.py`` measures both)."""
    L, ok = _cholesky(A)
    x = _cho_solve(L, b[..., None])[..., 0]
    x[~ok] = np.nan
    return x, ok


def _held(F, free):
    """``F`` with the rows and columns of held parameters (outside ``free``) replaced by the identity."""
    p = F.shape[1]
    A = F.copy()
    off = ~free
    A[off[:, :, None] | off[:, None, :]] = 0.0
    ii = np.arange(p)
    A[:, ii, ii] = np.where(off, 1.0, A[:, ii, ii])
    return A


def row_inverse(A):
    """Inverse of one matrix; the pseudo-inverse where it is singular or its inverse has a
    non-positive diagonal (not a covariance)."""
    try:
        inv = np.linalg.inv(A)
        if not np.all(np.isfinite(inv)) or np.any(np.diag(inv) <= 0):
            raise np.linalg.LinAlgError
        return inv
    except np.linalg.LinAlgError:
        return np.linalg.pinv(A)


def held_inverse(F, free):
    """Per row the inverse of ``F`` (n, p, p) over its ``free`` (n, p) parameters, 0 in the rows and
    columns of the held ones (a covariance). Cholesky for the batch; a row that is not positive
    definite by :func:`row_inverse` of its free block."""
    A = _held(F, free)
    n, p, _ = A.shape
    L, ok = _cholesky(A)
    cov = _cho_solve(L, np.broadcast_to(np.eye(p), (n, p, p)).copy())
    for r in np.flatnonzero(~ok):
        fr = np.flatnonzero(free[r])
        cov[r] = 0.0
        cov[r][np.ix_(fr, fr)] = row_inverse(F[r][np.ix_(fr, fr)])
    cov[~(free[:, :, None] & free[:, None, :])] = 0.0
    return cov


def solve_held(F, g, free):
    """Solve ``F x = g`` per row with the parameters outside ``free`` held at ``x = 0`` (Cholesky,
    :func:`spd_solve`; a row whose matrix is not positive definite by the pseudo-inverse)."""
    A = _held(F, free)
    b = np.where(free, g, 0.0)
    x, ok = spd_solve(A, b)
    if not ok.all():
        bad = ~ok
        x[bad] = np.einsum("nij,nj->ni", np.linalg.pinv(A[bad]), b[bad])
    return x


def _bisect_feasible(feasible, P0, P1, rows):
    """Shorten the steps P0 -> P1 of the rows where ``feasible`` fails, by bisection. Returns the
    steps and which rows were shortened."""
    ok = feasible(P1, rows)
    if ok.all():
        return P1, ~ok
    P1 = P1.copy()
    for r in np.flatnonzero(~ok):
        lo, hi = 0.0, 1.0
        for _ in range(30):
            mid = 0.5 * (lo + hi)
            if feasible((P0[r] + mid * (P1[r] - P0[r]))[None], rows[r:r + 1])[0]:
                lo = mid
            else:
                hi = mid
        P1[r] = P0[r] + lo * (P1[r] - P0[r])
    return P1, ~ok


def batched_lm(model, P0, d, lower, upper, free=None, prior_mu=None, prior_prec=None, feasible=None,
               max_iter=60, tol=0.01, lam0=1e-4, statistic="cstat", variance=None, progress=None,
               lam_up=10.0, lam_min=1e-9, max_step=None, rel_tol=False):
    """Minimise ``cstat(d, model(P)) + sum prior_prec (P - prior_mu)^2`` for every row (or, with
    ``statistic="chi"``, the chi-square with the fixed ``variance`` (n, n_chan) in place of C).

    ``P0`` (n, p) start; ``d`` (n, n_chan) counts; ``lower``/``upper`` bounds (p,) or (n, p);
    ``free`` (n, p) bool, False holds a parameter at its start; ``prior_mu``/``prior_prec`` (n, p)
    Gaussian priors (precision 0 = none); ``feasible(P, rows) -> bool (k,)`` extra constraints.
    Damping: ``lam0`` to start, divided by 3 on an accepted step (not below ``lam_min``), times
    ``lam_up`` on a refused one; ``max_step`` caps each component of a step; with ``rel_tol`` the
    convergence test is ``dC < tol * max(1, |C|)``. Returns a :class:`FitState`."""
    prog = as_progress(progress)
    P = np.array(P0, float)
    n, npar = P.shape
    lower = np.broadcast_to(np.asarray(lower, float), (n, npar))
    upper = np.broadcast_to(np.asarray(upper, float), (n, npar))
    free = np.ones((n, npar), bool) if free is None else np.asarray(free, bool)
    prior_mu = np.zeros((n, npar)) if prior_mu is None else np.asarray(prior_mu, float)
    prior_prec = np.zeros((n, npar)) if prior_prec is None else np.asarray(prior_prec, float)
    all_rows = np.arange(n)

    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    var = None if variance is None else np.broadcast_to(np.asarray(variance, float), d.shape)

    def stat(Pr, mr, rows):
        return (statistic_value(d[rows], mr, statistic, None if var is None else var[rows])
                + ((Pr - prior_mu[rows]) ** 2 * prior_prec[rows]).sum(axis=1))

    m, J = model(P, all_rows, True)
    m, J = np.array(m, float), np.array(J, float)
    C = stat(P, m, all_rows)
    lam = np.full(n, float(lam0))
    active = np.ones(n, bool)
    converged = np.zeros(n, bool)
    n_iter = np.zeros(n, int)
    n_acc = np.zeros(n, int)
    ii = np.arange(npar)
    for _ in range(max_iter):
        prog.check()
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        res, v = residual_terms(d[rows], m[rows], statistic, None if var is None else var[rows])
        Jr = J[rows]
        g = np.matmul(res[:, None, :], Jr)[:, 0, :]
        g -= (P[rows] - prior_mu[rows]) * prior_prec[rows]
        F = fisher(Jr, v, prior_prec[rows])
        fr = free[rows].copy()
        lo_r, hi_r = lower[rows], upper[rows]
        with np.errstate(invalid="ignore"):
            fr &= ~(np.isfinite(lo_r) & (P[rows] <= lo_r + 1e-12 * np.maximum(np.abs(lo_r), 1.0)) & (g < 0))
            fr &= ~(np.isfinite(hi_r) & (P[rows] >= hi_r - 1e-12 * np.maximum(np.abs(hi_r), 1.0)) & (g > 0))
        Fl = F.copy()
        Fl[:, ii, ii] += lam[rows, None] * np.maximum(F[:, ii, ii], 1e-12)
        step = solve_held(Fl, g, fr)
        if max_step is not None:
            step = np.clip(step, -max_step, max_step)
        Pn = np.clip(P[rows] + step, lower[rows], upper[rows])
        Pn = np.where(free[rows], Pn, P[rows])
        short = np.zeros(rows.size, bool)
        if feasible is not None:
            Pn, short = _bisect_feasible(feasible, P[rows], Pn, rows)
        mn, Jn = model(Pn, rows, True)
        Cn = stat(Pn, mn, rows)
        n_iter[rows] += 1
        better = Cn <= C[rows] + 1e-9
        acc = rows[better]
        if acc.size:
            dC = C[acc] - Cn[better]
            P[acc], C[acc], m[acc], J[acc] = Pn[better], Cn[better], mn[better], Jn[better]
            lam[acc] = np.maximum(lam[acc] / 3.0, lam_min)
            n_acc[acc] += 1
            limit = tol * np.maximum(1.0, np.abs(C[acc])) if rel_tol else tol
            done = acc[(dC < limit) & ~short[better]]
            converged[done] = True
            active[done] = False
        rej = rows[~better]
        if rej.size:
            lam[rej] *= lam_up
            stuck = rej[lam[rej] > 1e8]
            converged[stuck] = True      # no step lowers the statistic: at the optimum
            active[stuck] = False
        prog.set(float(n_iter.max()) / max_iter, f"iteration {int(n_iter.max())}: {int(active.sum())} still moving")
    return FitState(P=P, m=m, J=J, C=C, converged=converged, n_iter=n_iter, n_accepted=n_acc)
