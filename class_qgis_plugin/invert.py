"""Fundamental-parameters inversion of CLASS spectra: weight fractions of the 8 elements.

For each spectrum the expected counts in the fit channels (default 0.9 to 4.2 keV) are

    m = B + k * ( f * lines(w) @ R_lines + s * scatter(w) @ R_scatter )

with ``B`` the background (a fixed, known term: the background PHA scaled by exposure and
BACKSCAL), ``k = exposure * Omega_eff * norm`` (:mod:`fpmodel`), ``s`` the scatter normalisation
(free), ``f`` the fluorescence normalisation (free by default, ``fit_norm=True``; see below) and
``w`` the weight fractions of O, Na, Mg, Al, Si, Ca, Ti, Fe.

Why the normalisation is free by default: on ISRO's X2ABUNDANCE test pair (2021-08-27, 16 s) the
physical model (collimator solid angle, ARF, ISRO's or our own solar spectrum) predicts 2.6 to 3.6
times the observed line counts (fitted ``f`` = 0.28-0.38, whichever solar spectrum or gain is
used). With ``f`` fixed at 1 the fit drives the composition to absurd values to absorb the excess
(Fe near 47 wt%, O 31 wt%). X2ABUNDANCE does not use a physical normalisation either: its local
model scales the line intensities by ``12.5 km x 12.5 km x (round(T/8) + 1) / (4 pi h^2 T)`` with an
extra ``1/cos(i)`` (the footprint swept in the exposure ``T`` divided by ``T``), which for this pair
is 0.35 times our geometry factor, i.e. an empirical scale of the same size as the one fitted here.
The wt% therefore rest on line *ratios*, as in X2ABUNDANCE. Fixing the norm (``fit_norm=False``)
is right for simulated data made with the same model (the round-trip test checks both); it
constrains Fe better there, through the absolute level.

Parameterisation (the constraint is exact, not a penalty): the free parameters are the wt% of Na,
Mg, Al, Ca, Ti and Fe; O follows from the cations' oxides (Na2O, MgO, Al2O3, SiO2, CaO, TiO2, FeO)
or is fixed (``oxygen=45.0`` as X2ABUNDANCE); Si closes the sum to 100 %. The map from parameters
to wt% is affine, so the covariance of all 8 wt% follows exactly from that of the parameters.
Bounds [0, 100] are kept by a projected Levenberg-Marquardt with an active set.

Statistic: the Poisson likelihood of the raw counts with the background as a known term (the
C-statistic of Cash 1979, ``C = 2 sum(m - d + d ln(d/m))``), minimised by a batched
Levenberg-Marquardt whose curvature is the expected Fisher information ``J^T diag(1/m) J``. The
Jacobian of the line intensities is analytic (:meth:`fpmodel.ForwardModel.line_terms`); the
scattered continuum is recomputed at every iteration from the current composition (its shape is
held fixed within a step: the paper's "iterate the scatter with the fitted composition").
Errors: the inverse Fisher information at the optimum (1 sigma), propagated to all 8 wt%.
Pearson chi-square ``sum (d - m)^2 / m`` and the degrees of freedom are reported too.

Unconstrained elements: a free cation whose 1-sigma error exceeds ``max_rel_err`` (default 0.5)
times its a-priori value (or whose Fisher information vanishes) is flagged (``ok = False``, error
NaN; greedy, worst first, see :func:`_flag_unconstrained`). Flagged cations are then tied by a
Gaussian prior to the mare-highland mixing line (centre: the mix closest to the constrained
cations of the first fit; width: the scatter of the landing-site soils about that line,
:data:`PRIOR_SIGMA`) and everything is refitted, so noise in an element the data cannot see does
not leak into the others through the closure, while the errors of the others include the prior's
width. The reported value of a flagged element is that prior-dominated estimate, not a measurement.
"""
import os
from dataclasses import dataclass, field

import numpy as np

from .composition import (ELEMENTS, HIGHLAND_WT, MARE_WT, oxygen_fraction_coefficients)
from .errors import ClassXRFError
from .progress import as_progress, subrange

FREE = ("Na", "Mg", "Al", "Ca", "Ti", "Fe")
FREE_IDX = np.array([ELEMENTS.index(e) for e in FREE])
SI = ELEMENTS.index("Si")
O = ELEMENTS.index("O")
CATION_IDX = np.arange(1, 8)
FLOOR = 1e-4          # wt%: lower bound used for the free cations


def _soil_scatter():
    """RMS (wt%) of the landing-site soils (composition.SOIL_WT) about the mare-highland mixing
    line, per free cation: the prior width for elements the data cannot constrain."""
    from .composition import SOIL_WT
    X = np.array([np.array(v) / np.sum(v) * 100.0 for v in SOIL_WT.values()])
    dvec = MARE_WT - HIGHLAND_WT
    f = np.clip((X - HIGHLAND_WT) @ dvec / (dvec @ dvec), 0.0, 1.0)
    res = X - (HIGHLAND_WT[None] + f[:, None] * dvec[None])
    return np.sqrt((res ** 2).mean(axis=0))[FREE_IDX]


PRIOR_SIGMA = _soil_scatter()


def _affine_map(oxygen):
    """(w0 (8,), M (8, 6)): wt% = w0 + M p for the free cation wt% p."""
    k = oxygen_fraction_coefficients()            # O per unit mass of each cation (7,)
    M = np.zeros((8, len(FREE)))
    w0 = np.zeros(8)
    kk = dict(zip(ELEMENTS[1:], k))
    for j, el in enumerate(FREE):
        M[ELEMENTS.index(el), j] = 1.0
    if isinstance(oxygen, str):
        if oxygen != "stoichiometric":
            raise ClassXRFError(None, f"oxygen must be 'stoichiometric' or a wt%, got {oxygen!r}", key="oxygen")
        # Si (1 + k_Si) = 100 - sum_j p_j (1 + k_j); O = sum_i k_i c_i
        ksi = kk["Si"]
        w0[SI] = 100.0 / (1.0 + ksi)
        for j, el in enumerate(FREE):
            M[SI, j] = -(1.0 + kk[el]) / (1.0 + ksi)
        w0[O] = ksi * w0[SI]
        for j, el in enumerate(FREE):
            M[O, j] = kk[el] + ksi * M[SI, j]
    else:
        ox = float(oxygen)
        if not 0 < ox < 100:
            raise ClassXRFError(None, "fixed oxygen must be a wt% in (0, 100)", key="oxygen")
        w0[O] = ox
        w0[SI] = 100.0 - ox
        M[SI, :] = -1.0
    return w0, M


def _params_from_wt(wt):
    return np.asarray(wt, float)[..., FREE_IDX]


@dataclass
class InversionResult:
    """Per spectrum (n): ``wt`` (n, 8) wt%; ``err`` (n, 8) 1 sigma (NaN where unconstrained);
    ``ok`` (n, 8) bool; ``corr`` (n, 8, 8); ``chi2``, ``dof``, ``cstat``, ``converged``, ``n_iter``,
    ``scat_norm``, ``fl_norm``; ``model`` (n, n_fit) expected counts and ``data``/``background`` in
    the fit channels, ``fit_channels`` (bool mask over all channels), ``channel_energy`` (lo, hi)."""
    wt: np.ndarray
    err: np.ndarray
    ok: np.ndarray
    corr: np.ndarray
    chi2: np.ndarray
    dof: np.ndarray
    cstat: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    scat_norm: np.ndarray
    fl_norm: np.ndarray
    model: np.ndarray
    data: np.ndarray
    background: np.ndarray
    fit_channels: np.ndarray
    channel_energy: tuple
    extra: dict = field(default_factory=dict)

    def columns(self):
        """The observation-layer columns of contract 4 (dict name -> array)."""
        cols = {}
        for k, el in enumerate(ELEMENTS):
            cols[el] = self.wt[:, k]
            cols[f"{el}_err"] = self.err[:, k]
            cols[f"{el}_ok"] = self.ok[:, k].astype(np.int32)
        cols["chi2"] = self.chi2
        cols["dof"] = self.dof.astype(np.int32)
        cols["cstat"] = self.cstat
        cols["converged"] = self.converged.astype(np.int32)
        cols["n_iter"] = self.n_iter.astype(np.int32)
        cols["scat_norm"] = self.scat_norm
        cols["fl_norm"] = self.fl_norm
        return cols


def cstat(d, m):
    """Cash statistic 2 sum(m - d + d ln(d/m)) over the last axis."""
    m = np.maximum(m, 1e-300)
    t = m - d + np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0) / m), 0.0)
    return 2.0 * t.sum(axis=-1)


class _Batch:
    """Model pieces of a batch of spectra in their fit channels."""

    def __init__(self, fm, idx, cos_i, cos_e, theta, expo, fitmask):
        self.fm = fm
        self.I0 = fm.solar if fm.solar.shape[0] == 1 else fm.solar[idx]
        if self.I0.shape[0] == 1 and len(idx) > 1:
            self.I0 = np.broadcast_to(self.I0, (len(idx), self.I0.shape[1]))
        self.cos_i, self.cos_e, self.theta = cos_i, cos_e, theta
        self.k = expo * fm.solid_angle_sr * fm.norm
        self.Rl = fm.line_response[:, fitmask]
        self.Rs = fm.scatter_response[:, fitmask]
        self.dcs = fm.atomic.scatter_dcs(theta)
        self.sl = fm.line_slice(self.I0)

    def evaluate(self, W, jacobian):
        fm = self.fm
        lt = fm.line_terms(W, self.cos_i, self.cos_e, self.I0, jacobian=jacobian, sl=self.sl)
        lines = lt["primary"] + lt["secondary"]
        sc = fm.scatter_photons(W, self.cos_i, self.cos_e, self.I0, self.theta, dcs=self.dcs)
        lc = self.k[:, None] * (lines @ self.Rl)
        scc = self.k[:, None] * (sc @ self.Rs)
        out = {"lines": lc, "scatter": scc}
        if jacobian:
            out["d_lines"] = self.k[:, None, None] * np.einsum("nlm,lc->ncm", lt["d_lines"], self.Rl)
        return out


def _solve_batch(F, g, free):
    """Solve F x = g per spectrum with parameters outside ``free`` held (x = 0)."""
    n, p, _ = F.shape
    A = F.copy()
    b = np.where(free, g, 0.0)
    off = ~free
    A[off[:, :, None] | off[:, None, :]] = 0.0
    ii = np.arange(p)
    A[:, ii, ii] = np.where(off, 1.0, A[:, ii, ii])
    try:
        return np.linalg.solve(A, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.einsum("nij,nj->ni", np.linalg.pinv(A), b)


def _fit(batch, d, B, p0, s0, f0, fixed, w0, M, fit_norm, max_iter, tol, prior_mu=None, prior_prec=None):
    """Batched projected Levenberg-Marquardt on C (+ Gaussian prior terms). Returns dict of final state."""
    n = d.shape[0]
    npar = M.shape[1] + 1 + int(fit_norm)
    P = np.concatenate([p0, s0[:, None]] + ([f0[:, None]] if fit_norm else []), axis=1)

    def unpack(P):
        p = P[:, :M.shape[1]]
        s = P[:, M.shape[1]]
        f = P[:, M.shape[1] + 1] if fit_norm else np.ones(P.shape[0])
        return p, s, f

    def model_of(P, jac):
        p, s, f = unpack(P)
        wt = w0[None] + p @ M.T
        W = np.clip(wt, 0.0, None) / 100.0
        W = W / W.sum(axis=1, keepdims=True)
        ev = batch.evaluate(W, jac)
        m = B + f[:, None] * ev["lines"] + s[:, None] * ev["scatter"]
        return m, ev, wt

    free_base = np.ones((n, npar), bool)
    free_base[:, :M.shape[1]] = ~fixed
    npf = M.shape[1]
    if prior_prec is None:
        prior_mu = np.zeros((n, npf))
        prior_prec = np.zeros((n, npf))

    def prior_term(Pp, rows):
        return ((Pp[:, :npf] - prior_mu[rows]) ** 2 * prior_prec[rows]).sum(axis=1)

    lam = np.full(n, 1e-4)
    m, ev, wt = model_of(P, True)
    C = cstat(d, m) + prior_term(P, np.arange(n))
    active = np.ones(n, bool)
    converged = np.zeros(n, bool)
    n_iter = np.zeros(n, int)
    for it in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        p, s, f = unpack(P[idx])
        # Jacobian (n, nch, npar)
        Jp = f[:, None, None] * np.einsum("ncm,mj->ncj", ev["d_lines"][idx], M / 100.0)
        cols = [Jp, ev["scatter"][idx][:, :, None]]
        if fit_norm:
            cols.append(ev["lines"][idx][:, :, None])
        J = np.concatenate(cols, axis=2)
        mi = np.maximum(m[idx], 1e-12)
        r = d[idx] / mi - 1.0
        g = np.einsum("ncp,nc->np", J, r)
        F = np.einsum("ncp,nc,ncq->npq", J, 1.0 / mi, J)
        # Gaussian prior (C adds (p - mu)^2 / sigma^2; g is d lnL/dp, F its curvature)
        g[:, :npf] -= (P[idx, :npf] - prior_mu[idx]) * prior_prec[idx]
        F[:, np.arange(npf), np.arange(npf)] += prior_prec[idx]
        free = free_base[idx].copy()
        # active set: free cations at the floor pushing down, and s at 0 pushing down
        at_floor = (P[idx, :M.shape[1]] <= FLOOR * 1.0001) & (g[:, :M.shape[1]] < 0)
        free[:, :M.shape[1]] &= ~at_floor
        free[:, M.shape[1]] &= ~((P[idx, M.shape[1]] <= 0) & (g[:, M.shape[1]] < 0))
        diag = np.einsum("npp->np", F)
        Fl = F.copy()
        ii = np.arange(npar)
        Fl[:, ii, ii] += lam[idx, None] * np.maximum(diag, 1e-12)
        step = _solve_batch(Fl, g, free)
        Pn = P[idx] + step
        Pn[:, :M.shape[1]] = np.where(fixed[idx], P[idx, :M.shape[1]],
                                      np.clip(Pn[:, :M.shape[1]], FLOOR, 100.0))
        Pn[:, M.shape[1]] = np.clip(Pn[:, M.shape[1]], 0.0, None)
        if fit_norm:
            Pn[:, M.shape[1] + 1] = np.clip(Pn[:, M.shape[1] + 1], 1e-6, None)
        # Si (the closure element) and O must stay >= 0: shrink the step if needed
        wt_n = w0[None] + Pn[:, :M.shape[1]] @ M.T
        bad = wt_n.min(axis=1) < 0
        if bad.any():
            for r_ in np.flatnonzero(bad):
                lo, hi = 0.0, 1.0
                for _ in range(30):
                    mid = 0.5 * (lo + hi)
                    trial = P[idx[r_]] + mid * (Pn[r_] - P[idx[r_]])
                    if (w0 + trial[:M.shape[1]] @ M.T).min() >= 0:
                        lo = mid
                    else:
                        hi = mid
                Pn[r_] = P[idx[r_]] + lo * (Pn[r_] - P[idx[r_]])
        sub = _Sub(batch, idx)
        mn, evn, wtn = _model_sub(sub, Pn, w0, M, fit_norm, B[idx])
        Cn = cstat(d[idx], mn) + prior_term(Pn, idx)
        better = Cn <= C[idx] + 1e-9
        n_iter[idx] += 1
        # accept
        acc = idx[better]
        if acc.size:
            dC = C[acc] - Cn[better]
            P[acc] = Pn[better]
            C[acc] = Cn[better]
            m[acc] = mn[better]
            for key in ev:
                ev[key][acc] = evn[key][better]
            lam[acc] = np.maximum(lam[acc] / 3.0, 1e-9)
            done = dC < tol
            converged[acc[done]] = True
            active[acc[done]] = False
        rej = idx[~better]
        if rej.size:
            lam[rej] *= 10.0
            stuck = lam[rej] > 1e8
            converged[rej[stuck]] = True   # no descent direction left: at the optimum
            active[rej[stuck]] = False
    return dict(P=P, m=m, ev=ev, C=C, converged=converged, n_iter=n_iter, free_base=free_base)


class _Sub:
    """A view of a _Batch restricted to some spectra."""

    def __init__(self, batch, idx):
        self.b = batch
        self.idx = idx

    def evaluate(self, W, jac):
        b, i = self.b, self.idx
        fm = b.fm
        cos_i, cos_e, theta, I0 = b.cos_i[i], b.cos_e[i], b.theta[i], b.I0[i]
        lt = fm.line_terms(W, cos_i, cos_e, I0, jacobian=jac, sl=b.sl)
        lines = lt["primary"] + lt["secondary"]
        sc = fm.scatter_photons(W, cos_i, cos_e, I0, theta, dcs=(b.dcs[0][i], b.dcs[1][i]))
        out = {"lines": b.k[i, None] * (lines @ b.Rl), "scatter": b.k[i, None] * (sc @ b.Rs)}
        if jac:
            out["d_lines"] = b.k[i, None, None] * np.einsum("nlm,lc->ncm", lt["d_lines"], b.Rl)
        return out


def _model_sub(sub, P, w0, M, fit_norm, B):
    p = P[:, :M.shape[1]]
    s = P[:, M.shape[1]]
    f = P[:, M.shape[1] + 1] if fit_norm else np.ones(P.shape[0])
    wt = w0[None] + p @ M.T
    W = np.clip(wt, 0.0, None) / 100.0
    W = W / W.sum(axis=1, keepdims=True)
    ev = sub.evaluate(W, True)
    return B + f[:, None] * ev["lines"] + s[:, None] * ev["scatter"], ev, wt


def _flag_unconstrained(F, ref, M, max_rel_err):
    """Free cations the data cannot constrain (n, 6) bool. Greedy: the cation with the largest
    1-sigma error, relative to its a-priori value ``ref`` (not to the noisy fitted value, which would
    favour upward fluctuations), above ``max_rel_err`` (or with no Fisher information) is tied to its
    prior (precision 1/PRIOR_SIGMA^2 added), the errors recomputed, and so on until every
    remaining cation passes. Uses the Fisher matrix of the first fit; no refit is needed."""
    n, npar, _ = F.shape
    npf = M.shape[1]
    bad = np.zeros((n, npf), bool)
    for r in range(n):
        Fr = F[r].copy()
        info = np.diag(Fr)[:npf]
        bad[r] = info <= 1e-12 * max(info.max(), 1e-300)
        for _ in range(npf):
            A = Fr.copy()
            A[np.arange(npf), np.arange(npf)] += np.where(bad[r], 1.0 / PRIOR_SIGMA ** 2, 0.0)
            try:
                cov = np.linalg.inv(A)
            except np.linalg.LinAlgError:
                cov = np.linalg.pinv(A)
            cw = M @ cov[:npf, :npf] @ M.T
            e = np.sqrt(np.clip(np.diag(cw), 0, None))[FREE_IDX]
            rel = e / np.maximum(ref[r, FREE_IDX], 1e-6)
            rel[bad[r]] = -np.inf
            worst = int(np.argmax(rel))
            if not np.isfinite(rel[worst]) or rel[worst] <= max_rel_err:
                break
            bad[r, worst] = True
    return bad


def _covariance(ev, m, P, f, M, free, fit_norm, prior_prec=None):
    """Inverse Fisher information of the free parameters, and wt% covariance (n, 8, 8)."""
    npf = M.shape[1]
    Jp = f[:, None, None] * np.einsum("ncm,mj->ncj", ev["d_lines"], M / 100.0)
    cols = [Jp, ev["scatter"][:, :, None]] + ([ev["lines"][:, :, None]] if fit_norm else [])
    J = np.concatenate(cols, axis=2)
    F = np.einsum("ncp,nc,ncq->npq", J, 1.0 / np.maximum(m, 1e-12), J)
    n, npar, _ = F.shape
    if prior_prec is not None:
        F[:, np.arange(M.shape[1]), np.arange(M.shape[1])] += prior_prec
    cov = np.full((n, npar, npar), np.nan)
    for r in range(n):
        fr = np.flatnonzero(free[r])
        sub = F[r][np.ix_(fr, fr)]
        try:
            inv = np.linalg.inv(sub)
            if not np.all(np.isfinite(inv)) or np.any(np.diag(inv) <= 0):
                raise np.linalg.LinAlgError
        except np.linalg.LinAlgError:
            inv = np.linalg.pinv(sub)
        c = np.zeros((npar, npar))
        c[np.ix_(fr, fr)] = inv
        cov[r] = c
    cpp = cov[:, :npf, :npf]
    cw = np.einsum("ij,njk,lk->nil", M, cpp, M)
    return cov, cw, F


def invert_spectra(fm, counts, background, incidence_deg, emission_deg, exposure_s, phase_deg=None,
                   e_range=(0.9, 4.2), oxygen="stoichiometric", fit_norm=True, max_rel_err=0.5,
                   max_iter=60, tol=0.01, chunk=64, start=None, progress=None):
    """Invert a batch of spectra.

    ``fm``: :class:`fpmodel.ForwardModel` whose solar spectra are one shared row or one row per
    spectrum. ``counts`` (n, n_chan) observed counts; ``background`` (n, n_chan) or (n_chan,)
    expected background counts in each spectrum (already scaled to its exposure and area);
    angles (deg from the normal) and exposure (s) per spectrum. ``start``: optional (n, 8) wt%
    start; by default the best of five mare/highland mixes. Returns :class:`InversionResult`.
    """
    p = as_progress(progress)
    d_all = np.atleast_2d(np.asarray(counts, float))
    n, nch = d_all.shape
    if nch != fm.n_channels:
        raise ClassXRFError(None, f"spectra have {nch} channels but the response has {fm.n_channels}",
                            key="CHANNEL")
    B_all = np.asarray(background, float)
    B_all = np.broadcast_to(B_all if B_all.ndim == 2 else B_all[None], (n, nch))
    if np.any(~np.isfinite(d_all)) or np.any(d_all < 0):
        raise ClassXRFError(None, "counts must be finite and >= 0", key="COUNTS")
    fitmask = fm.response.channel_mask(*e_range)
    if fitmask.sum() < 10:
        raise ClassXRFError(None, f"fewer than 10 channels in {e_range} keV", key="e_range")
    cos_i, cos_e, theta = fm.geometry(n, incidence_deg, emission_deg, phase_deg)
    from .fpmodel import _as_angles
    expo = _as_angles(exposure_s, n, "exposure_s")
    if np.any(expo <= 0):
        raise ClassXRFError(None, "exposure must be positive", key="EXPOSURE")
    if fm.solar.shape[0] not in (1, n):
        raise ClassXRFError(None, f"{fm.solar.shape[0]} solar spectra for {n} spectra", key="solar_flux")
    w0, M = _affine_map(oxygen)
    npf = M.shape[1]
    d_fit = d_all[:, fitmask]
    B_fit = np.maximum(B_all[:, fitmask], 0.0)

    res = {k: [] for k in ("wt", "err", "ok", "corr", "chi2", "dof", "cstat", "conv", "nit", "s", "f", "m")}
    mixes = np.linspace(0.0, 1.0, 5)
    cand = np.array([fx * MARE_WT + (1 - fx) * HIGHLAND_WT for fx in mixes])
    for c0 in range(0, n, chunk):
        p.check()
        p.set(c0 / n, f"inverting spectra {c0 + 1}-{min(n, c0 + chunk)} of {n}")
        idx = np.arange(c0, min(n, c0 + chunk))
        nb = idx.size
        batch = _Batch(fm, idx, cos_i[idx], cos_e[idx], theta[idx], expo[idx], fitmask)
        d = d_fit[idx]
        B = B_fit[idx]
        # a-priori start: the best of the mixes, with the scatter norm solved per mix
        if start is None:
            best_c = np.full(nb, np.inf)
            apri = np.zeros((nb, 8))
            s0 = np.ones(nb)
            f0 = np.ones(nb)
            for cw in cand:
                pc = np.broadcast_to(_params_from_wt(cw), (nb, npf))
                wt = w0[None] + pc @ M.T
                W = wt / wt.sum(axis=1, keepdims=True)
                ev = batch.evaluate(W, False)
                net = np.maximum(d - B, 0).sum(axis=1)
                if fit_norm:
                    fn = np.maximum(net / np.maximum((ev["lines"] + ev["scatter"]).sum(axis=1), 1e-30), 1e-3)
                else:
                    fn = np.ones(nb)
                m = B + fn[:, None] * (ev["lines"] + ev["scatter"])
                Cc = cstat(d, m)
                better = Cc < best_c
                best_c[better] = Cc[better]
                apri[better] = wt[better]
                f0[better] = fn[better]
        else:
            apri = np.atleast_2d(np.asarray(start, float))[idx if np.ndim(start) == 2 else [0] * nb]
            s0 = np.ones(nb)
            f0 = np.ones(nb)
        p0 = np.clip(_params_from_wt(apri), FLOOR, 100.0)
        fixed = np.zeros((nb, npf), bool)
        sub = subrange(p, c0 / n, (c0 + 0.6 * nb) / n)
        st = _fit(batch, d, B, p0, s0, f0, fixed, w0, M, fit_norm, max_iter, tol)
        sub.check()
        n_iter = st["n_iter"].copy()
        fcur = st["P"][:, npf + 1] if fit_norm else np.ones(nb)
        free = st["free_base"].copy()
        cov, cw, F = _covariance(st["ev"], st["m"], st["P"], fcur, M, free, fit_norm)
        wt = w0[None] + st["P"][:, :npf] @ M.T
        err = np.sqrt(np.clip(np.einsum("nii->ni", cw), 0, None))
        bad = _flag_unconstrained(F, apri, M, max_rel_err)
        if bad.any():
            # tie the unconstrained to their a-priori value (Gaussian prior of the lunar soils'
            # scatter about the mare-highland mixing line) and refit everything
            rows = np.flatnonzero(bad.any(axis=1))
            # prior centre: the point of the mixing line closest (in the constrained cations,
            # weighted by their errors) to the first fit
            dvec = (MARE_WT - HIGHLAND_WT)[FREE_IDX]
            wts = np.where(bad, 0.0, 1.0 / np.maximum(err[:, FREE_IDX], 1e-3) ** 2)
            resid = wt[:, FREE_IDX] - HIGHLAND_WT[FREE_IDX][None]
            fmix = np.clip((wts * resid * dvec).sum(1) / np.maximum((wts * dvec ** 2).sum(1), 1e-30), 0.0, 1.0)
            apri = HIGHLAND_WT[None] + fmix[:, None] * (MARE_WT - HIGHLAND_WT)[None]
            pa = np.clip(_params_from_wt(apri), FLOOR, 100.0)
            prec = np.where(bad, 1.0 / PRIOR_SIGMA[None, :] ** 2, 0.0)
            P1 = st["P"]
            st2 = _fit(_SubBatch(batch, rows), d[rows], B[rows], P1[rows, :npf], P1[rows, npf],
                       (P1[rows, npf + 1] if fit_norm else np.ones(rows.size)), fixed[rows], w0, M,
                       fit_norm, max_iter, tol, prior_mu=pa[rows], prior_prec=prec[rows])
            st["P"][rows] = st2["P"]
            st["m"][rows] = st2["m"]
            st["C"][rows] = cstat(d[rows], st2["m"])
            for key in st["ev"]:
                st["ev"][key][rows] = st2["ev"][key]
            st["converged"][rows] = st2["converged"]
            n_iter[rows] += st2["n_iter"]
            fcur = st["P"][:, npf + 1] if fit_norm else np.ones(nb)
            cov, cw, F = _covariance(st["ev"], st["m"], st["P"], fcur, M, free, fit_norm, prec)
            wt = w0[None] + st["P"][:, :npf] @ M.T
            err = np.sqrt(np.clip(np.einsum("nii->ni", cw), 0, None))
        ok = np.ones((nb, 8), bool)
        ok[:, FREE_IDX] = ~bad
        err = np.where(ok, err, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = np.sqrt(np.einsum("nii->ni", cw))
            corr = cw / (sd[:, :, None] * sd[:, None, :])
        corr[~ok[:, :, None] | ~ok[:, None, :]] = np.nan
        m = st["m"]
        chi2 = (((d - m) ** 2) / np.maximum(m, 1e-12)).sum(axis=1)
        nfree = free.sum(axis=1)
        res["wt"].append(wt)
        res["err"].append(err)
        res["ok"].append(ok)
        res["corr"].append(corr)
        res["chi2"].append(chi2)
        res["dof"].append(fitmask.sum() - nfree)
        res["cstat"].append(st["C"])
        res["conv"].append(st["converged"])
        res["nit"].append(n_iter)
        res["s"].append(st["P"][:, npf])
        res["f"].append(fcur)
        res["m"].append(m)
        p.set(min(n, c0 + chunk) / n)
    cat = {k: np.concatenate(v, axis=0) for k, v in res.items()}
    return InversionResult(wt=cat["wt"], err=cat["err"], ok=cat["ok"], corr=cat["corr"], chi2=cat["chi2"],
                           dof=cat["dof"], cstat=cat["cstat"], converged=cat["conv"], n_iter=cat["nit"],
                           scat_norm=cat["s"], fl_norm=cat["f"], model=cat["m"], data=d_fit, background=B_fit,
                           fit_channels=fitmask, channel_energy=fm.channel_energy())


class _SubBatch(_Batch):
    """A _Batch restricted to some rows (for the refit)."""

    def __init__(self, batch, rows):
        self.fm = batch.fm
        self.I0 = batch.I0[rows]
        self.cos_i, self.cos_e, self.theta = batch.cos_i[rows], batch.cos_e[rows], batch.theta[rows]
        self.k = batch.k[rows]
        self.Rl, self.Rs = batch.Rl, batch.Rs
        self.dcs = (batch.dcs[0][rows], batch.dcs[1][rows])
        self.sl = batch.sl


# ------------------------------------------------------------------------------------------------
# observation layer and plots
# ------------------------------------------------------------------------------------------------

def plot_fit(path, result, i, title=None):
    """Write a fit plot (data, model, background; residuals in sigma) of spectrum ``i`` of an
    :class:`InversionResult` as PNG, atomically. Returns the path, or None when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except Exception:
        return None
    lo, hi = result.channel_energy
    sel = result.fit_channels
    e = 0.5 * (lo + hi)[sel]
    d, m, b = result.data[i], result.model[i], result.background[i]
    fig, (ax, rx) = plt.subplots(2, 1, sharex=True, figsize=(7, 5), gridspec_kw=dict(height_ratios=[3, 1]))
    ax.errorbar(e, d, yerr=np.sqrt(np.maximum(d, 1)), fmt=".", ms=3, color="k", lw=0.6, label="data")
    ax.step(e, m, where="mid", color="C3", label="model")
    ax.step(e, b, where="mid", color="C0", lw=0.8, label="background")
    ax.set_yscale("log")
    ax.set_ylabel("counts / channel")
    ax.legend(fontsize=8)
    txt = ", ".join(f"{el} {w:.1f}" + ("" if ok else "*") for el, w, ok in zip(ELEMENTS, result.wt[i], result.ok[i]))
    ax.set_title(title or f"C = {result.cstat[i]:.1f}, chi2 = {result.chi2[i]:.1f} / {result.dof[i]} dof", fontsize=9)
    ax.text(0.01, 0.02, txt + "  (* unconstrained)", transform=ax.transAxes, fontsize=7)
    rx.axhline(0, color="0.5", lw=0.8)
    rx.step(e, (d - m) / np.sqrt(np.maximum(m, 1e-9)), where="mid", color="k", lw=0.8)
    rx.set_ylabel("(d - m) / sigma")
    rx.set_xlabel("energy (keV)")
    fig.tight_layout()
    from .geo import atomic_output
    path = os.fspath(path)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)
    return path


def _resolve(path, base):
    p = os.fspath(path)
    if not os.path.isabs(p) and base is not None:
        cand = os.path.join(base, p)
        if os.path.exists(cand):
            return cand
    return p


def invert_layer(layer, rmf, arf, background, solar=None, gain_slope=1.0, gain_offset=0.0, e_range=(0.9, 4.2),
                 oxygen="stoichiometric", fit_norm=True, plot_dir=None, progress=None, gain_convention="xspec",
                 **fit_kw):
    """Invert every spectrum of an observation layer (contract 4).

    Reads ``pha_path``, ``solar_ang``, ``emis_ang``, ``exposure`` (and ``solar_file``, ``phase_ang``
    when present) with :func:`geo.read_vector`; ``rmf``/``arf``/``background`` are paths or
    loaded objects; ``solar`` the default solar table for rows without ``solar_file``. Relative
    paths are taken from the layer's folder. ``gain_slope``/``gain_offset`` follow XSPEC's ``gain``
    command (:mod:`fpmodel`); ``fit_norm`` (default True) frees the fluorescence normalisation (see
    the module notes). Returns the columns to add (dict name -> array): per element X, X_err, X_ok,
    and chi2, dof, cstat, converged, n_iter, scat_norm, fl_norm (the fitted normalisation). With
    ``plot_dir`` a fit plot ``fit_<obs_id>.png`` is written per spectrum.
    """
    from . import geo, ogip
    from .fpmodel import ForwardModel
    from .solar_table import read_solar_table
    p = as_progress(progress)
    _, attrs, _ = geo.read_vector(layer)
    geo.require_columns(layer, attrs, ["pha_path", "solar_ang", "emis_ang", "exposure"])
    base = os.path.dirname(os.path.abspath(os.fspath(layer)))
    n = len(attrs["pha_path"])
    rmf = rmf if hasattr(rmf, "matrix") else ogip.read_rmf(_resolve(rmf, base))
    arf = arf if (arf is None or hasattr(arf, "specresp")) else ogip.read_arf(_resolve(arf, base))
    bkg = background if hasattr(background, "counts") else ogip.read_pha(_resolve(background, base))
    if bkg.n_channels != rmf.n_channels:
        raise ClassXRFError(bkg.path, f"background has {bkg.n_channels} channels, the RMF {rmf.n_channels}",
                            key="CHANNEL")
    solar_files = attrs.get("solar_file")
    keys = []
    for r in range(n):
        sf = solar_files[r] if solar_files is not None else None
        sf = sf if (sf is not None and str(sf).strip() not in ("", "None", "nan")) else solar
        if sf is None:
            raise ClassXRFError(layer, f"row {r}: no solar_file and no default solar table given", key="solar_file")
        keys.append(_resolve(str(sf), base))
    counts = np.zeros((n, rmf.n_channels))
    bk = np.zeros((n, rmf.n_channels))
    expo = np.asarray(attrs["exposure"], float)
    for r in range(n):
        if r % 50 == 0:
            p.set(0.1 * r / max(n, 1), "reading spectra")
            p.check()
        pha = ogip.read_pha(_resolve(str(attrs["pha_path"][r]), base))
        if pha.n_channels != rmf.n_channels:
            raise ClassXRFError(pha.path, f"spectrum has {pha.n_channels} channels, the RMF {rmf.n_channels}",
                                key="CHANNEL")
        counts[r] = pha.counts
        scale = (pha.exposure * np.asarray(pha.backscal, float)) / (bkg.exposure * np.asarray(bkg.backscal, float))
        bk[r] = bkg.counts * scale
        if not np.isfinite(expo[r]) or expo[r] <= 0:
            expo[r] = pha.exposure
    inc = np.asarray(attrs["solar_ang"], float)
    emi = np.asarray(attrs["emis_ang"], float)
    phase = np.asarray(attrs["phase_ang"], float) if "phase_ang" in attrs else None
    out = None
    groups = {}
    for r, k in enumerate(keys):
        groups.setdefault(k, []).append(r)
    done = 0
    for k, rows in groups.items():
        rows = np.array(rows)
        e, f = read_solar_table(k)
        fm = ForwardModel(rmf, arf, e, f, gain_slope=gain_slope, gain_offset=gain_offset,
                          gain_convention=gain_convention)
        sub = subrange(p, 0.1 + 0.85 * done / n, 0.1 + 0.85 * (done + rows.size) / n)
        ph = None if phase is None or not np.all(np.isfinite(phase[rows])) else phase[rows]
        res = invert_spectra(fm, counts[rows], bk[rows], inc[rows], emi[rows], expo[rows], phase_deg=ph,
                             e_range=e_range, oxygen=oxygen, fit_norm=fit_norm, progress=sub, **fit_kw)
        cols = res.columns()
        if out is None:
            out = {c: np.full(n, np.nan) if v.dtype.kind == "f" else np.zeros(n, v.dtype) for c, v in cols.items()}
        for c, v in cols.items():
            out[c][rows] = v
        if plot_dir is not None:
            ids = attrs.get("obs_id", np.arange(n))
            for j, r in enumerate(rows):
                plot_fit(os.path.join(os.fspath(plot_dir), f"fit_{ids[r]}.png"), res, j)
        done += rows.size
    p.set(1.0, "inversion done")
    return out
