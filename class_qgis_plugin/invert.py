"""Fundamental-parameters inversion of CLASS spectra: weight fractions of the 8 elements.

For each spectrum the expected counts in the fit channels (default 0.9 to 4.2 keV) are

    m = B + k * ( f * lines(w) @ R_lines + s * scatter(w) @ R_scatter )

with ``B`` the background (a fixed, known term: the background PHA scaled by exposure and
BACKSCAL), ``k = exposure * Omega_eff * norm`` (:mod:`fpmodel`), ``s`` the scatter normalisation
(free), ``f`` the fluorescence normalisation (free by default, ``fit_norm=True``; see below) and
``w`` the weight fractions of O, Na, Mg, Al, Si, Ca, Ti, Fe.

Why the normalisation is free by default: on ISRO's X2ABUNDANCE test pair (2021-08-27, 16 s),
with the response read as XSPEC reads it, the physical model (collimator solid angle, ARF, ISRO's
or our own solar spectrum) predicts 2.6 to 3.2 times the observed line counts (fitted ``f`` =
0.31-0.38, whichever solar spectrum or gain). X2ABUNDANCE does not use a physical normalisation
either: its local model scales the line intensities by ``12.5 km x 12.5 km x (round(T/8) + 1) /
(4 pi h^2 T)`` with an extra ``1/cos(i)`` (the footprint swept in the exposure ``T`` divided by
``T``), which for this pair is 0.35 times our geometry factor, i.e. an empirical scale of the same
size as the one fitted here. The wt% therefore rest on line *ratios*, as in X2ABUNDANCE. Fixing the
norm (``fit_norm=False``) is right for simulated data made with the same model (the round-trip
test checks both); it constrains Fe better there, through the absolute level.

Gain: the model's gain (XSPEC's reading, :mod:`fpmodel`), or fitted (``gain_fit``): per spectrum
(slope and offset are two more parameters of the batched fit, with analytic derivatives of the
folded lines and scatter), or shared by all spectra (an outer damped Gauss-Newton on the profile
likelihood: each spectrum refitted at the trial gain, its own parameters eliminated through the
Schur complement of its Fisher matrix).

Parameterisation (the constraint is exact, not a penalty): the free parameters are the wt% of Na,
Mg, Al, Ca, Ti and Fe; O follows from the cations' oxides (Na2O, MgO, Al2O3, SiO2, CaO, TiO2, FeO)
or is fixed (``oxygen=45.0`` as X2ABUNDANCE); Si closes the sum to 100 %. The map from parameters
to wt% is affine, so the covariance of all 8 wt% follows exactly from that of the parameters.
Bounds [0, 100] are kept by a projected Levenberg-Marquardt with an active set.

Statistic: the Poisson likelihood of the raw counts with the background as a known term (the
C-statistic of Cash 1979, ``C = 2 sum(m - d + d ln(d/m))``), or XSPEC's chi with data variance
(``statistic="chi"``), minimised by the batched Levenberg-Marquardt of :mod:`fitkernel` whose
curvature is the expected Fisher information ``J^T diag(1/m) J``. The Jacobian of the line
intensities is analytic (:meth:`fpmodel.ForwardModel.line_terms`); the scattered continuum is
recomputed at every iteration from the current composition (its shape is held fixed within a
step: the paper's "iterate the scatter with the fitted composition"). Errors: the inverse Fisher
information at the optimum (1 sigma), propagated to all 8 wt%. XSPEC's chi (``chi2``), C and the
degrees of freedom are reported for both.

Fits that failed say so: see :data:`FIT_FLAGS` and :func:`invert_spectra`.

Unconstrained elements: a free cation whose 1-sigma error exceeds ``max_rel_err`` (default 0.5)
times its a-priori value (or whose Fisher information vanishes) is flagged (``ok = False``, error
NaN; greedy, worst first, see :func:`_flag_unconstrained`). Flagged cations are then tied by a
Gaussian prior to the mare-highland mixing line (centre: the mix closest to the constrained
cations of the first fit; width: the scatter of the landing-site soils about that line,
:data:`PRIOR_SIGMA`) and everything is refitted, so noise in an element the data cannot see does
not leak into the others through the closure, while the errors of the others include the prior's
width. A flagged element is NaN (NULL in the layer); its prior-dominated estimate, not a
measurement, is kept apart (``wt_prior``, columns ``X_prior``).
"""
import os
from dataclasses import dataclass, field, fields

import numpy as np

from .choices import FITTED_CATIONS, GAIN_FIT_MODES, STATISTICS
from .composition import ELEMENTS, HIGHLAND_WT, MARE_WT, mix, oxygen_fraction_coefficients
from .errors import ClassXRFError
from .fitkernel import (batched_lm, chi_xspec, cstat, fisher, held_inverse, reduced_statistic, residual_terms,
                        row_inverse, xspec_variance)
from .parallel import map_chunks
from .progress import as_progress, subrange
from .specs import InvertParams as _P

FREE = FITTED_CATIONS
FREE_IDX = np.array([ELEMENTS.index(e) for e in FREE])
SI = ELEMENTS.index("Si")
O = ELEMENTS.index("O")
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


#: bounds of a fitted gain: slope, offset (keV)
GAIN_BOUNDS = ((0.95, 1.05), (-0.1, 0.1))
#: above this reduced statistic (:func:`fitkernel.reduced_statistic`) a fit is flagged and its
#: elements are NULL: XSPEC's ``error`` command refuses to compute errors above a reduced
#: chi-square of 2 (its ``maximum`` default)
MAX_REDCHI = 2.0
#: rows of an observation layer read and inverted together (the memory of one block: ~60 KB a spectrum)
STREAM_BLOCK = 4096


def inversion_model(rmf, arf, solar_energy_keV, solar_flux, e_max_keV=_P.e_max, **kw):
    """The forward model the inversion fits with: :func:`inversion_grid` and float32 line and scatter
    terms (the statistic needs far less than float32's 1e-7); ``kw`` as :class:`fpmodel.ForwardModel`."""
    from .fpmodel import ForwardModel
    return ForwardModel(rmf, arf, solar_energy_keV, solar_flux, grid_step_keV=inversion_grid(e_max_keV),
                        compute_dtype=np.float32, **kw)


def inversion_grid(e_max_keV):
    """The inversion's integration grid (:func:`fpmodel.make_grid` pieces): 0.05 keV bins up to
    0.5 keV above the fit range's top ``e_max_keV``, 0.2 keV bins above, where the photons only
    excite lines and are never seen in the fit channels. The model counts in the 0.9-4.2 keV
    channels stay within 4e-4 (summed |difference| / total) of the 0.01 keV grid the simulation
    uses, far below the Poisson noise of any spectrum, for a fifth of the bins
    (``benchmarks/bench_archive_estimate.py`` prints both)."""
    return ((float(e_max_keV) + 0.5, 0.05), (np.inf, 0.2))
#: a spectrum whose net counts in the fit range are below this many sigma is not fitted
MIN_NET_SIGMA = 3.0

#: fit_flag codes and the reason each stands for (fit_note adds the numbers)
FIT_FLAGS = {0: "ok", 1: "bad input row", 2: "solar spectrum is zero", 3: "response does not cover the fit range",
             4: "no net counts", 5: "fit did not converge", 6: "fit never moved from its start", 7: "poor fit"}


@dataclass
class InversionResult:
    """Per spectrum (n): ``wt`` (n, 8) wt% (NaN where unconstrained or the fit is flagged);
    ``err`` (n, 8) 1 sigma; ``ok`` (n, 8) bool; ``wt_prior`` (n, 8) the prior-dominated value of an
    unconstrained element (NaN elsewhere); ``corr`` (n, 8, 8); ``chi2`` (XSPEC's ``chi``),
    ``dof``, ``cstat``, ``red_stat`` (the minimised statistic per degree of freedom,
    :func:`fitkernel.reduced_statistic`, which the poor-fit flag tests), ``converged``, ``n_iter``, ``scat_norm``, ``fl_norm``, ``gain_slope``,
    ``gain_offset`` and their errors (NaN when not fitted), ``flag`` (:data:`FIT_FLAGS`) and
    ``note`` (the reason, in words); ``model`` (n, n_fit) expected counts and ``data``/
    ``background`` in the fit channels, ``fit_channels`` (bool mask over all channels),
    ``channel_energy`` (lo, hi); ``notes`` what the response reading did (channels, ARF pairing)."""
    wt: np.ndarray
    err: np.ndarray
    ok: np.ndarray
    wt_prior: np.ndarray
    corr: np.ndarray
    chi2: np.ndarray
    dof: np.ndarray
    cstat: np.ndarray
    red_stat: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    scat_norm: np.ndarray
    fl_norm: np.ndarray
    gain_slope: np.ndarray
    gain_offset: np.ndarray
    gain_slope_err: np.ndarray
    gain_offset_err: np.ndarray
    flag: np.ndarray
    note: list
    model: np.ndarray
    data: np.ndarray
    background: np.ndarray
    fit_channels: np.ndarray
    channel_energy: tuple
    notes: list = field(default_factory=list)

    @classmethod
    def concatenate(cls, parts):
        """One result of the results of consecutive blocks of rows (notes without repeats)."""
        first = parts[0]
        out = {}
        for f in fields(cls):
            vals = [getattr(r, f.name) for r in parts]
            if f.name in ("fit_channels", "channel_energy"):
                out[f.name] = vals[0]
            elif f.name == "notes":
                out[f.name] = list(dict.fromkeys(x for v in vals for x in v))
            elif isinstance(getattr(first, f.name), list):
                out[f.name] = [x for v in vals for x in v]
            else:
                out[f.name] = np.concatenate(vals, axis=0)
        return cls(**out)

    def columns(self):
        """The observation-layer columns the inversion adds (dict name -> array)."""
        cols = {}
        for k, el in enumerate(ELEMENTS):
            cols[el] = self.wt[:, k]
            cols[f"{el}_err"] = self.err[:, k]
            cols[f"{el}_ok"] = self.ok[:, k].astype(np.int32)
        for k in FREE_IDX:
            cols[f"{ELEMENTS[k]}_prior"] = self.wt_prior[:, k]
        cols["chi2"] = self.chi2
        cols["dof"] = self.dof.astype(np.int32)
        cols["cstat"] = self.cstat
        cols["red_stat"] = self.red_stat
        cols["converged"] = self.converged.astype(np.int32)
        cols["n_iter"] = self.n_iter.astype(np.int32)
        cols["scat_norm"] = self.scat_norm
        cols["fl_norm"] = self.fl_norm
        cols["gain_slope"] = self.gain_slope
        cols["gain_off"] = self.gain_offset
        cols["gslope_err"] = self.gain_slope_err
        cols["goff_err"] = self.gain_offset_err
        cols["fit_flag"] = self.flag.astype(np.int32)
        cols["fit_note"] = np.array(self.note, dtype=object)
        return cols


def _fold_rows(L, R):
    """``sum_l L[n, l] R[n, l, c]`` (n, c): each spectrum's lines through its own response rows."""
    return np.matmul(L[:, None, :], R)[:, 0, :]


class _Batch:
    """Model pieces of a batch of spectra in their fit channels, one row per spectrum, each with
    its own solar spectrum, geometry, exposure and gain."""

    def __init__(self, fm, I0, cos_i, cos_e, theta, expo, fitmask, slope, offset):
        self.fm = fm
        self.I0 = I0
        self.cos_i, self.cos_e, self.theta = cos_i, cos_e, theta
        self.k = expo * fm.solid_angle_sr * fm.norm
        self.fitmask = fitmask
        self.slope, self.offset = np.asarray(slope, float), np.asarray(offset, float)
        self.dcs = tuple(x.astype(fm.compute_dtype) for x in fm.atomic.scatter_dcs(theta))
        self.bins = fm.compton_bins(theta)
        self.sl = fm.line_slice(I0)
        self._shared = {}

    def _shared_rows(self, slope, offset, grad):
        """Response rows in the fit channels at one gain for every spectrum (cached per gain): lines
        (n_lines, n_fit), integration bins (n_e, n_fit), with ``grad`` their derivatives by slope
        and offset too."""
        key = (float(slope), float(offset), bool(grad))
        if key not in self._shared:
            resp, fm = self.fm.response, self.fm
            got = [resp.line_rows(x, np.array([slope]), np.array([offset]), self.fitmask, grad=grad)
                   for x in (fm.atomic.line_energy, fm.energy)]
            if len(self._shared) > 3:
                self._shared.clear()
            self._shared[key] = [g[0] for g in got] if not grad else [[r[0] for r in g] for g in got]
        return self._shared[key]

    def evaluate(self, W, rows, jacobian, slope=None, offset=None):
        """Line and scatter counts (k, n_fit) of rows ``rows`` for weight fractions ``W`` (k, 8);
        with ``jacobian`` also ``d_lines`` (k, n_fit, 8). ``slope``/``offset`` (k,) replace the
        batch's gains (a gain in the fit); with ``jacobian`` the derivatives of lines and scatter
        by them come back too (``d_gain_lines``, ``d_gain_scatter``: (k, n_fit, 2)). Spectra that
        share one gain are folded by one matrix product; different gains by
        :meth:`fpmodel.Response.line_rows` and :meth:`fpmodel.Response.fold_density`."""
        fm, resp = self.fm, self.fm.response
        lt = fm.line_terms(W, self.cos_i[rows], self.cos_e[rows], self.I0[rows], jacobian=jacobian, sl=self.sl)
        k = self.k[rows]
        L = (lt["primary"] + lt["secondary"]) * k[:, None]
        sc = fm.scatter_photons(W, self.cos_i[rows], self.cos_e[rows], self.I0[rows], self.theta[rows],
                                dcs=(self.dcs[0][rows], self.dcs[1][rows]),
                                bins=(self.bins[0][rows], self.bins[1][rows])) * k[:, None]
        gain_grad = slope is not None and jacobian
        sl_, off_ = (self.slope[rows], self.offset[rows]) if slope is None else (slope, offset)
        out = {}
        if np.ptp(sl_) == 0 and np.ptp(off_) == 0:
            got = self._shared_rows(sl_[0], off_[0], gain_grad)
            if gain_grad:
                (Rl, dls, dlo), (Rs, dss, dso) = got
                out["d_gain_lines"] = np.stack([L @ dls, L @ dlo], axis=2)
                out["d_gain_scatter"] = np.stack([sc @ dss, sc @ dso], axis=2)
            else:
                Rl, Rs = got
            out["lines"], out["scatter"] = L @ Rl, sc @ Rs
            if jacobian:
                out["d_lines"] = np.matmul(np.swapaxes(lt["d_lines"] * k[:, None, None], 1, 2), Rl).swapaxes(1, 2)
            return out
        energy = fm.atomic.line_energy
        if gain_grad:
            Rl, dRs, dRo = resp.line_rows(energy, sl_, off_, self.fitmask, grad=True)
            out["scatter"], dss, dso = resp.fold_density(fm.energy, sc, sl_, off_, self.fitmask, grad=True)
            out["d_gain_lines"] = np.stack([_fold_rows(L, dRs), _fold_rows(L, dRo)], axis=2)
            out["d_gain_scatter"] = np.stack([dss, dso], axis=2)
        else:
            Rl = resp.line_rows(energy, sl_, off_, self.fitmask)
            out["scatter"] = resp.fold_density(fm.energy, sc, sl_, off_, self.fitmask)
        out["lines"] = _fold_rows(L, Rl)
        if jacobian:
            out["d_lines"] = np.matmul(np.swapaxes(lt["d_lines"] * k[:, None, None], 1, 2), Rl).swapaxes(1, 2)
        return out


class _Model:
    """Expected counts ``m = B + f lines(w) + s scatter(w)`` of a batch as a function of the
    parameter rows ``P = [free cation wt% (6), s, f (with fit_norm), slope, offset (gain in P)]``,
    in the form :func:`fitkernel.batched_lm` takes."""

    def __init__(self, batch, B, w0, M, fit_norm, gain_in_P):
        self.batch, self.B, self.w0, self.M = batch, B, w0, M
        self.fit_norm, self.gain_in_P = bool(fit_norm), bool(gain_in_P)
        self.npf = M.shape[1]
        self.i_s = self.npf
        self.i_f = self.npf + 1 if fit_norm else None
        self.i_g = self.npf + 1 + int(fit_norm) if gain_in_P else None
        self.npar = self.npf + 1 + int(fit_norm) + 2 * int(gain_in_P)

    def wt(self, P):
        return self.w0[None] + P[:, :self.npf] @ self.M.T

    def norms(self, P):
        f = P[:, self.i_f] if self.fit_norm else np.ones(P.shape[0])
        return P[:, self.i_s], f

    def feasible(self, P, rows):
        """Si (the closure element) and O stay >= 0."""
        return self.wt(P).min(axis=1) >= 0

    def bounds(self, gain_bounds):
        lo = np.full(self.npar, FLOOR)
        hi = np.full(self.npar, 100.0)
        lo[self.i_s], hi[self.i_s] = 0.0, np.inf
        if self.fit_norm:
            lo[self.i_f], hi[self.i_f] = 1e-6, np.inf
        if self.gain_in_P:
            (lo[self.i_g], hi[self.i_g]), (lo[self.i_g + 1], hi[self.i_g + 1]) = gain_bounds
        return lo, hi

    def __call__(self, P, rows, jac):
        wt = self.wt(P)
        W = np.clip(wt, 0.0, None) / 100.0
        W = W / W.sum(axis=1, keepdims=True)
        s, f = self.norms(P)
        gain = (P[:, self.i_g], P[:, self.i_g + 1]) if self.gain_in_P else (None, None)
        ev = self.batch.evaluate(W, rows, jac, *gain)
        m = self.B[rows] + f[:, None] * ev["lines"] + s[:, None] * ev["scatter"]
        if not jac:
            return m, None
        cols = [f[:, None, None] * (ev["d_lines"] @ (self.M / 100.0)), ev["scatter"][:, :, None]]
        if self.fit_norm:
            cols.append(ev["lines"][:, :, None])
        if self.gain_in_P:
            cols.append(f[:, None, None] * ev["d_gain_lines"] + s[:, None, None] * ev["d_gain_scatter"])
        return m, np.concatenate(cols, axis=2)


def _flag_unconstrained(F, free, ref, M, max_rel_err):
    """Free cations the data cannot constrain (n, 6) bool. Greedy: the cation with the largest
    1-sigma error, relative to its a-priori value ``ref`` (not to the noisy fitted value, which would
    favour upward fluctuations), above ``max_rel_err`` (or with no Fisher information) is tied to its
    prior (precision 1/PRIOR_SIGMA^2 added), the errors recomputed, and so on until every
    remaining cation passes. Uses the Fisher matrix of the first fit over the ``free`` parameters
    (n, p); no refit is needed. All rows at once: each round recomputes the rows still tying."""
    n = F.shape[0]
    npf = M.shape[1]
    ii = np.arange(npf)
    info = F[:, ii, ii]
    bad = info <= 1e-12 * np.maximum(info.max(axis=1, keepdims=True), 1e-300)
    todo = np.arange(n)
    for _ in range(npf):
        if not todo.size:
            break
        A = F[todo].copy()
        A[:, ii, ii] += np.where(bad[todo], 1.0 / PRIOR_SIGMA ** 2, 0.0)
        cov = held_inverse(A, free[todo])
        cw = M @ cov[:, :npf, :npf] @ M.T
        e = np.sqrt(np.clip(np.diagonal(cw, axis1=1, axis2=2), 0, None))[:, FREE_IDX]
        rel = e / np.maximum(ref[todo][:, FREE_IDX], 1e-6)
        rel[bad[todo]] = -np.inf
        worst = np.argmax(rel, axis=1)
        top = rel[np.arange(todo.size), worst]
        go = np.isfinite(top) & (top > max_rel_err)
        bad[todo[go], worst[go]] = True
        todo = todo[go]
    return bad


def _covariance(F, free, M):
    """Inverse Fisher information over the ``free`` parameters (n, p, p; 0 for held ones) and the
    wt% covariance (n, 8, 8)."""
    cov = held_inverse(F, free)
    npf = M.shape[1]
    return cov, M @ cov[:, :npf, :npf] @ M.T


def _a_priori_start(batch, d, B, w0, M, fit_norm):
    """The best of five mare/highland mixes per spectrum (fluorescence norm scaled to the net
    counts when it is fitted): (wt% (n, 8), f0 (n,))."""
    nb = d.shape[0]
    rows = np.arange(nb)
    best_c = np.full(nb, np.inf)
    apri = np.zeros((nb, 8))
    f0 = np.ones(nb)
    net = np.maximum(d - B, 0).sum(axis=1)
    for fx in np.linspace(0.0, 1.0, 5):
        cw = mix(fx)
        wt = w0[None] + np.broadcast_to(_params_from_wt(cw), (nb, M.shape[1])) @ M.T
        ev = batch.evaluate(wt / wt.sum(axis=1, keepdims=True), rows, False)
        tot = ev["lines"] + ev["scatter"]
        fn = np.maximum(net / np.maximum(tot.sum(axis=1), 1e-30), 1e-3) if fit_norm else np.ones(nb)
        c = cstat(d, B + fn[:, None] * tot)
        better = c < best_c
        best_c[better], apri[better], f0[better] = c[better], wt[better], fn[better]
    return apri, f0


def _fit_batch(batch, d, B, V, w0, M, fit_norm, gain_mode, gain_bounds, P0, apri, max_rel_err, max_iter, tol,
               statistic="cstat", prior=None):
    """Fit one batch; returns a dict of per-spectrum results (see :func:`invert_spectra`). ``V``:
    variance of the subtracted background (for XSPEC's chi). Without ``prior`` the unconstrained
    cations are found after a first fit and tied to their prior in a refit; with ``prior`` (the
    ``"prior"`` item of an earlier result: which cations, prior centres and precisions) that
    choice is kept and one fit is made (the outer loop of a shared gain)."""
    model = _Model(batch, B, w0, M, fit_norm, gain_mode != "none")
    var = xspec_variance(d, V)
    lo, hi = model.bounds(gain_bounds)
    free = np.ones((d.shape[0], model.npar), bool)
    if gain_mode == "shared":
        free[:, model.i_g:] = False
    npf = model.npf

    def fit(rows, P_start, mu=None, prec=None):
        sub = lambda P, r, jac: model(P, rows[r], jac)  # noqa: E731
        feas = lambda P, r: model.feasible(P, rows[r])  # noqa: E731
        kw = dict(prior_mu=mu, prior_prec=prec, feasible=feas, max_iter=max_iter, tol=tol, variance=var[rows])
        if statistic == "chi":
            # XSPEC's chi weights a bin below the model by its small count: from a poor start it can
            # pull the fit far away, so it starts from the Poisson optimum
            P_start = batched_lm(sub, P_start, d[rows], lo, hi, free[rows], statistic="cstat", **kw).P
        return batched_lm(sub, P_start, d[rows], lo, hi, free[rows], statistic=statistic, **kw)

    def curvature(st, prec=None):
        return fisher(st.J, residual_terms(d, st.m, statistic, var)[1], prec)

    everyone = np.arange(d.shape[0])
    if prior is not None:
        bad, prior_mu, prior_prec = prior
        st = fit(everyone, P0, prior_mu, prior_prec)
        n_iter = st.n_iter
    else:
        st = fit(everyone, P0)
        n_iter = st.n_iter.copy()
        bad = _flag_unconstrained(curvature(st), free, apri, M, max_rel_err)
        prior_mu, prior_prec = st.P.copy(), np.zeros_like(st.P)
        rows = np.flatnonzero(bad.any(axis=1))
        if rows.size:
            # tie the unconstrained to their a-priori value (Gaussian prior of the lunar soils'
            # scatter about the mare-highland mixing line: centre the mix closest, in the
            # constrained cations weighted by their errors, to the first fit) and refit everything
            _, cw = _covariance(curvature(st), free, M)
            err = np.sqrt(np.clip(np.einsum("nii->ni", cw), 0, None))
            dvec = (MARE_WT - HIGHLAND_WT)[FREE_IDX]
            wts = np.where(bad, 0.0, 1.0 / np.maximum(err[:, FREE_IDX], 1e-3) ** 2)
            resid = model.wt(st.P)[:, FREE_IDX] - HIGHLAND_WT[FREE_IDX][None]
            fmix = np.clip((wts * resid * dvec).sum(1) / np.maximum((wts * dvec ** 2).sum(1), 1e-30), 0.0, 1.0)
            centre = HIGHLAND_WT[None] + fmix[:, None] * (MARE_WT - HIGHLAND_WT)[None]
            prior_mu[:, :npf] = np.clip(_params_from_wt(centre), FLOOR, 100.0)
            prior_prec[:, :npf] = np.where(bad, 1.0 / PRIOR_SIGMA[None, :] ** 2, 0.0)
            st2 = fit(rows, st.P[rows], prior_mu[rows], prior_prec[rows])
            for key in ("P", "m", "J", "C", "converged"):
                getattr(st, key)[rows] = getattr(st2, key)
            st.n_accepted[rows] += st2.n_accepted
            n_iter[rows] += st2.n_iter
    F = curvature(st, prior_prec)
    cov, cw = _covariance(F, free, M)
    s, f = model.norms(st.P)
    gain = model.gain_in_P
    slope = st.P[:, model.i_g] if gain else batch.slope
    offset = st.P[:, model.i_g + 1] if gain else batch.offset
    nan = np.full(d.shape[0], np.nan)
    per_spectrum = gain_mode == "spectrum"
    return dict(P=st.P, m=st.m, J=st.J, C=st.C, F=F, free=free, i_g=model.i_g, bad=bad, wt=model.wt(st.P), cw=cw,
                converged=st.converged, n_iter=n_iter, n_accepted=st.n_accepted, s=s, f=f, slope=slope,
                offset=offset, statistic=statistic, var=var, prior=(bad, prior_mu, prior_prec),
                slope_err=np.sqrt(np.clip(cov[:, model.i_g, model.i_g], 0, None)) if per_spectrum else nan,
                offset_err=np.sqrt(np.clip(cov[:, model.i_g + 1, model.i_g + 1], 0, None)) if per_spectrum else nan,
                nfree=free.sum(axis=1))


def _schur_gain(res, d):
    """The shared gain's profile curvature and gradient summed over the spectra of a batch: per
    spectrum ``F_gg - F_ga F_aa^-1 F_ag`` and ``g_g - F_ga F_aa^-1 g_a`` (a: its own free
    parameters, g: slope and offset), at its optimum for the current gain."""
    F, J, m = res["F"], res["J"], res["m"]
    ig = np.arange(res["i_g"], res["i_g"] + 2)
    grad = np.matmul(residual_terms(d, m, res["statistic"], res["var"])[0][:, None, :], J)[:, 0, :]
    X = np.matmul(F[:, ig, :], held_inverse(F, res["free"]))        # F_ga F_aa^-1, 0 at held columns
    H = (F[:, ig][:, :, ig] - np.matmul(X, F[:, :, ig])).sum(axis=0)
    G = (grad[:, ig] - np.matmul(X, grad[:, :, None])[:, :, 0]).sum(axis=0)
    return H, G


def _row_checks(fm, d, inc, emi, phase, expo, notes, flags):
    """Rows that cannot be fitted: bad counts, angles or exposure (flag 1), a zero solar
    spectrum (flag 2). Sets ``flags``/``notes`` in place."""
    def mark(rows, code, text):
        for r in np.flatnonzero(rows & (flags == 0)):
            flags[r] = code
            notes[r] = text(r)
    mark(~np.all(np.isfinite(d), axis=1) | np.any(d < 0, axis=1), 1, lambda r: "counts must be finite and >= 0")
    mark(~np.isfinite(inc) | (inc < 0) | (inc >= 90), 1,
         lambda r: f"incidence angle (SOLARANG) {inc[r]:g} deg outside [0, 90)")
    mark(~np.isfinite(emi) | (emi < 0) | (emi >= 90), 1,
         lambda r: f"emission angle (EMISNANG) {emi[r]:g} deg outside [0, 90)")
    if phase is not None:
        mark(~np.isfinite(phase), 1, lambda r: "phase angle is not a number")
    mark(~np.isfinite(expo) | (expo <= 0), 1, lambda r: f"exposure {expo[r]:g} s is not positive")
    solar_total = (fm.solar * fm.de).sum(axis=1)
    zero = solar_total[0] <= 0 if fm.solar.shape[0] == 1 else solar_total <= 0
    mark(np.broadcast_to(zero, flags.shape), 2, lambda r: "the solar spectrum I0 has no photons in the model's energy range")


def _response_coverage(fm, fitmask, e_range):
    """None when the response covers the fit range, else the reason: too few channels, channels
    that do not reach the range's ends, or fit channels no energy of the model reaches."""
    lo, hi = fm.channel_energy()
    n = int(fitmask.sum())
    if n < 10:
        return f"{n} channels of the response lie in {e_range[0]:g}-{e_range[1]:g} keV (at least 10 are needed)"
    width = float(np.median(hi - lo))
    if lo[fitmask].min() > e_range[0] + width or hi[fitmask].max() < e_range[1] - width:
        return (f"the response's channels span {lo[fitmask].min():g}-{hi[fitmask].max():g} keV of the fit range "
                f"{e_range[0]:g}-{e_range[1]:g} keV")
    reach = fm.response.counts_per_photon(fm.energy)[:, fitmask].sum(axis=0)
    dead = int((reach <= 0).sum())
    if dead:
        return f"{dead} of {n} fit channels receive no counts from any energy of the model ({fm.energy[0]:.2f}-{fm.energy[-1]:.2f} keV)"
    return None


def invert_spectra(fm, counts, background, incidence_deg, emission_deg, exposure_s, phase_deg=None,
                   e_range=(_P.e_min, _P.e_max), oxygen=_P.oxygen, fit_norm=_P.fit_norm, gain_fit=_P.gain_fit,
                   gain_bounds=GAIN_BOUNDS, background_variance=None, statistic=_P.statistic, max_rel_err=0.5,
                   max_redchi=MAX_REDCHI, max_iter=60, tol=0.01, chunk=128, start=None, bad_rows=None,
                   progress=None):
    """Invert a batch of spectra.

    ``fm``: :class:`fpmodel.ForwardModel` whose solar spectra are one shared row or one row per
    spectrum. ``counts`` (n, n_chan) observed counts; ``background`` (n, n_chan) or (n_chan,)
    expected background counts in each spectrum (already scaled to its exposure and area) and
    ``background_variance`` their variance (the background PHA's counts times the scale squared;
    0 when not given), which only XSPEC's ``chi`` uses; angles (deg from the normal) and exposure
    (s) per spectrum. ``gain_fit``: ``"none"`` (the model's gain), ``"spectrum"`` (slope and offset
    fitted per spectrum, within ``gain_bounds``) or ``"shared"`` (one slope and offset for all
    spectra, maximising their joint likelihood), XSPEC's ``gain fit`` started from the model's
    gain. ``statistic``: what is minimised, ``"cstat"`` (the Poisson likelihood, default) or
    ``"chi"`` (XSPEC's chi with data variance, what an XSPEC fit with ``statistic chi`` minimises);
    both are reported. ``start``: optional (n, 8) wt% start; by default the best of five
    mare/highland mixes. ``bad_rows``: {row: reason} of rows the caller could not read (flag 1).

    Spectra that cannot be inverted are flagged, not fitted or not trusted (:data:`FIT_FLAGS`):
    bad rows, a zero solar spectrum, a response that does not cover the range, net counts below
    :data:`MIN_NET_SIGMA` sigma, a fit that did not converge or never moved from its start, or a
    reduced statistic above ``max_redchi`` (``chi / dof`` for a chi fit; for a C fit ``C`` over
    its expected value at the fitted model, about 1 for a good fit at any count level, where
    XSPEC's chi per dof of a correct model can exceed 2 on faint 96-s spectra); their elements
    are NaN. Returns
    :class:`InversionResult`.
    """
    if statistic not in STATISTICS:
        raise ClassXRFError(None, f"statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}",
                            key="statistic")
    if gain_fit not in GAIN_FIT_MODES:
        raise ClassXRFError(None, f"gain_fit must be one of {', '.join(GAIN_FIT_MODES)}, got {gain_fit!r}",
                            key="gain_fit")
    p = as_progress(progress)
    d_all = np.atleast_2d(np.asarray(counts, float))
    n, nch = d_all.shape
    if nch != fm.n_channels:
        raise ClassXRFError(None, f"spectra have {nch} channels but the response has {fm.n_channels}",
                            key="CHANNEL")
    if fm.solar.shape[0] not in (1, n):
        raise ClassXRFError(None, f"{fm.solar.shape[0]} solar spectra for {n} spectra", key="solar_flux")
    from .fpmodel import _as_angles
    B_all = np.broadcast_to(np.asarray(background, float), (n, nch))
    V_all = np.zeros((n, nch)) if background_variance is None else np.broadcast_to(
        np.asarray(background_variance, float), (n, nch))
    inc, emi = _as_angles(incidence_deg, n, "incidence_deg", finite=False), _as_angles(emission_deg, n, "emission_deg", finite=False)
    phase = None if phase_deg is None else _as_angles(phase_deg, n, "phase_deg", finite=False)
    expo = _as_angles(exposure_s, n, "exposure_s", finite=False)
    flags, notes = np.zeros(n, int), [""] * n
    for r, why in (bad_rows or {}).items():        # rows the caller could not read (named there)
        flags[r], notes[r] = 1, why
    _row_checks(fm, d_all, inc, emi, phase, expo, notes, flags)
    fitmask = fm.response.channel_mask(*e_range)
    why = _response_coverage(fm, fitmask, e_range)
    if why:
        for r in np.flatnonzero(flags == 0):
            flags[r], notes[r] = 3, why
    d_fit = np.where(np.isfinite(d_all[:, fitmask]), d_all[:, fitmask], 0.0)
    B_fit = np.maximum(B_all[:, fitmask], 0.0)
    V_fit = np.maximum(V_all[:, fitmask], 0.0)
    net = (d_fit - B_fit).sum(axis=1)
    sigma = np.sqrt(d_fit.sum(axis=1) + V_fit.sum(axis=1))
    for r in np.flatnonzero((flags == 0) & (net <= MIN_NET_SIGMA * np.maximum(sigma, 1.0))):
        flags[r] = 4
        notes[r] = (f"no net counts: {net[r]:.0f} counts above the background in {e_range[0]:g}-{e_range[1]:g} keV "
                    f"({net[r] / max(sigma[r], 1.0):.1f} sigma; at least {MIN_NET_SIGMA:g} needed)")
    w0, M = _affine_map(oxygen)
    fit_rows = np.flatnonzero(flags == 0)
    results = _fit_rows(fm, fit_rows, d_fit, B_fit, V_fit, inc, emi, phase, expo, fitmask, w0, M, fit_norm,
                        gain_fit, gain_bounds, statistic, start, max_rel_err, max_iter, tol, chunk, p)
    return _assemble(fm, results, flags, notes, d_fit, B_fit, V_fit, fitmask, gain_fit, statistic, max_redchi)


def _fit_rows(fm, fit_rows, d_fit, B_fit, V_fit, inc, emi, phase, expo, fitmask, w0, M, fit_norm, gain_fit,
              gain_bounds, statistic, start, max_rel_err, max_iter, tol, chunk, progress):
    """Fit the rows ``fit_rows`` in chunks (with the outer loop of a shared gain); a list of
    (rows, result dict) per chunk."""
    chunks = [fit_rows[c:c + chunk] for c in range(0, fit_rows.size, chunk)]
    n_all = max(fit_rows.size, 1)
    slope0, offset0 = fm.response.gain_slope, fm.response.gain_offset

    def prepare(c):
        """The batch of chunk ``c`` and its start (P0, a-priori wt%)."""
        rows = chunks[c]
        cos_i, cos_e = np.cos(np.deg2rad(inc[rows])), np.cos(np.deg2rad(emi[rows]))
        ph = np.abs(inc[rows] - emi[rows]) if phase is None else phase[rows]
        I0 = fm.solar[rows] if fm.solar.shape[0] > 1 else np.broadcast_to(fm.solar, (rows.size, fm.solar.shape[1]))
        b = _Batch(fm, I0, cos_i, cos_e, 180.0 - ph, expo[rows], fitmask, np.full(rows.size, slope0),
                   np.full(rows.size, offset0))
        if start is None:
            apri, f0 = _a_priori_start(b, d_fit[rows], B_fit[rows], w0, M, fit_norm)
        else:
            st = np.atleast_2d(np.asarray(start, float))
            apri, f0 = (st[rows] if st.shape[0] > 1 else np.broadcast_to(st, (rows.size, 8))), np.ones(rows.size)
        P0 = [np.clip(_params_from_wt(apri), FLOOR, 100.0), np.ones((rows.size, 1))]
        if fit_norm:
            P0.append(f0[:, None])
        if gain_fit != "none":
            P0.append(np.column_stack([np.full(rows.size, slope0), np.full(rows.size, offset0)]))
        return b, (np.concatenate(P0, axis=1), apri)

    def fit(c, prepared, P0, prior):
        rows = chunks[c]
        b, (P_start, apri) = prepared
        return _fit_batch(b, d_fit[rows], B_fit[rows], V_fit[rows], w0, M, fit_norm, gain_fit, gain_bounds,
                          P_start if P0 is None else P0, apri, max_rel_err, max_iter, tol, statistic, prior)

    def message(c):
        return f"inverted spectra {chunks[c][0] + 1}-{chunks[c][-1] + 1} of {n_all}"

    # xraylib (OpenMP) only here, before any fork: the scattering angles' cross sections
    fm.atomic.warm_dcs(180.0 - (np.abs(inc[fit_rows] - emi[fit_rows]) if phase is None else phase[fit_rows]))
    if gain_fit != "shared":
        # each chunk set up and fitted in one go, in worker processes where they can be forked
        res = map_chunks(lambda c: fit(c, prepare(c), None, None), len(chunks), progress, 0.0, 1.0, message,
                         processes=True)
        return list(zip(chunks, res))

    # a shared gain: the chunks are refitted at each trial gain from the batches set up once
    prepared = map_chunks(prepare, len(chunks), subrange(progress, 0.0, 0.05), message=lambda c: "starting values")

    def run(P_starts, priors, lo, hi):
        return map_chunks(lambda c: fit(c, prepared[c], P_starts[c], None if priors is None else priors[c]),
                          len(chunks), progress, lo, hi, message, processes=True)

    P_starts = [st[0] for _, st in prepared]
    res = []
    if chunks:
        g_err, res = _shared_gain(run, chunks, P_starts, d_fit, gain_bounds)
        for r in res:
            r["slope_err"], r["offset_err"] = np.full(r["P"].shape[0], g_err[0]), np.full(r["P"].shape[0], g_err[1])
            r["nfree"] = r["nfree"] + (2 if fit_rows.size == 1 else 0)
    return list(zip(chunks, res))


def _shared_gain(run, chunks, P_starts, d_fit, gain_bounds, max_outer=20, tol=0.01):
    """One slope and offset for all spectra: damped Gauss-Newton steps on the profile likelihood
    (each spectrum refitted at each trial gain, its own parameters eliminated by the Schur
    complement of its Fisher matrix; which cations are tied to priors is chosen in the first fit
    and kept). Stops when a step lowers the total statistic by less than ``tol``. Returns the
    gain's 1-sigma errors and the fits at the best gain."""
    lo = np.array([b[0] for b in gain_bounds])
    hi = np.array([b[1] for b in gain_bounds])
    g = P_starts[0][0, -2:].copy()
    res = run(P_starts, None, 0.0, 0.1)
    priors = [r["prior"] for r in res]
    total = sum(r["C"].sum() for r in res)
    lam = 1e-3
    for it in range(max_outer):
        H, G = np.zeros((2, 2)), np.zeros(2)
        for rows, r in zip(chunks, res):
            h, gg = _schur_gain(r, d_fit[rows])
            H, G = H + h, G + gg
        frac = 0.1 + 0.9 * (it + 1) / max_outer
        gained = None
        while lam < 1e8:
            g_new = np.clip(g + np.linalg.solve(H + lam * np.diag(np.maximum(np.diag(H), 1e-12)), G), lo, hi)
            starts = [r["P"].copy() for r in res]
            for P in starts:
                P[:, -2:] = g_new
            res_new = run(starts, priors, frac, frac)
            total_new = sum(r["C"].sum() for r in res_new)
            if total_new <= total + 1e-9:
                gained, g, res, total = total - total_new, g_new, res_new, total_new
                lam = max(lam / 3.0, 1e-9)
                break
            lam *= 10.0
        if gained is None or gained < tol:
            break
    H = sum(_schur_gain(r, d_fit[rows])[0] for rows, r in zip(chunks, res))
    return np.sqrt(np.clip(np.diag(row_inverse(H)), 0, None)), res


def _assemble(fm, results, flags, notes, d_fit, B_fit, V_fit, fitmask, gain_fit, statistic, max_redchi):
    """Per-spectrum arrays of :class:`InversionResult` from the chunk results, with the post-fit
    flags (not converged, never moved, poor fit) and NaN elements where a row is flagged."""
    n, nfit = d_fit.shape
    nan = lambda *shape: np.full(shape, np.nan)  # noqa: E731
    wt, err, wt_prior, corr = nan(n, 8), nan(n, 8), nan(n, 8), nan(n, 8, 8)
    ok = np.zeros((n, 8), bool)
    chi2, cst, red, s, f, gs, go, gse, goe = (nan(n) for _ in range(9))
    dof, conv, nit = np.zeros(n, int), np.zeros(n, bool), np.zeros(n, int)
    model = B_fit.copy()
    for rows, r in results:
        m = r["m"]
        model[rows] = m
        cst[rows] = cstat(d_fit[rows], m)
        chi2[rows] = chi_xspec(d_fit[rows], m, V_fit[rows])
        dof[rows] = nfit - r["nfree"]
        red[rows] = reduced_statistic(statistic, chi2[rows] if statistic == "chi" else cst[rows], m, r["nfree"],
                                      dof[rows])
        conv[rows], nit[rows] = r["converged"], r["n_iter"]
        s[rows], f[rows] = r["s"], r["f"]
        gs[rows], go[rows], gse[rows], goe[rows] = r["slope"], r["offset"], r["slope_err"], r["offset_err"]
        e = np.sqrt(np.clip(np.einsum("nii->ni", r["cw"]), 0, None))
        okr = np.ones((rows.size, 8), bool)
        okr[:, FREE_IDX] = ~r["bad"]
        wt[rows] = np.where(okr, r["wt"], np.nan)
        wt_prior[rows] = np.where(okr, np.nan, r["wt"])
        err[rows] = np.where(okr, e, np.nan)
        ok[rows] = okr
        with np.errstate(invalid="ignore", divide="ignore"):
            c = r["cw"] / (e[:, :, None] * e[:, None, :])
        corr[rows] = np.where(okr[:, :, None] & okr[:, None, :], c, np.nan)
        what = "chi-square (XSPEC chi) per degree of freedom" if statistic == "chi" else "C / expected C"
        for j, row in enumerate(rows):
            if not r["converged"][j]:
                flags[row], notes[row] = 5, f"fit did not converge in {r['n_iter'][j]} steps"
            elif r["n_accepted"][j] == 0:
                flags[row], notes[row] = 6, "fit never moved from its start (no step lowered the statistic)"
            elif red[row] > max_redchi:
                flags[row], notes[row] = 7, f"poor fit: {what} {red[row]:.2f} above {max_redchi:g}"
            else:
                un = [ELEMENTS[k] for k in FREE_IDX[r["bad"][j]]]
                notes[row] = "ok" + (f"; {', '.join(un)} not constrained (prior-dominated value in "
                                     f"{', '.join(u + '_prior' for u in un)})" if un else "")
    bad = flags != 0
    wt[bad], err[bad], wt_prior[bad], corr[bad] = np.nan, np.nan, np.nan, np.nan
    ok[bad] = False
    if gain_fit == "none":
        gs[:], go[:] = fm.response.gain_slope, fm.response.gain_offset
    return InversionResult(wt=wt, err=err, ok=ok, wt_prior=wt_prior, corr=corr, chi2=chi2, dof=dof, cstat=cst, red_stat=red,
                           converged=conv, n_iter=nit, scat_norm=s, fl_norm=f, gain_slope=gs, gain_offset=go,
                           gain_slope_err=gse, gain_offset_err=goe, flag=flags, note=notes, model=model, data=d_fit,
                           background=B_fit, fit_channels=fitmask, channel_energy=fm.channel_energy(),
                           notes=list(fm.response.notes))


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
    shown = np.where(result.ok[i], result.wt[i], result.wt_prior[i])
    txt = ", ".join(f"{el} {w:.1f}" + ("" if ok else "*") for el, w, ok in zip(ELEMENTS, shown, result.ok[i]))
    if result.flag[i]:
        txt = f"flag {result.flag[i]}: {result.note[i]}"
    ax.set_title(title or f"C = {result.cstat[i]:.1f}, chi2 (XSPEC chi) = {result.chi2[i]:.1f} / {result.dof[i]} dof",
                 fontsize=9)
    ax.text(0.01, 0.02, txt + "  (* unconstrained)", transform=ax.transAxes, fontsize=7)
    rx.axhline(0, color="0.5", lw=0.8)
    rx.step(e, (d - m) / np.sqrt(np.maximum(d, 1.0)), where="mid", color="k", lw=0.8)
    rx.set_ylabel("(d - m) / sigma")
    rx.set_xlabel("energy (keV)")
    fig.tight_layout()
    from .geo import save_figure
    return save_figure(fig, path)


def _resolve(path, base):
    p = os.fspath(path)
    if not os.path.isabs(p) and base is not None:
        cand = os.path.join(base, p)
        if os.path.exists(cand):
            return cand
    return p


def _solar_rows(paths, progress):
    """Solar tables of the rows (one per distinct path), on one energy grid: ``(energy, flux (n,
    n_e), note)``. Tables on another grid than the first one's are rebinned onto it, conserving
    photons (the note says how many)."""
    from .fpmodel import bins_from_points, rebin_density
    from .solar_table import read_solar_table
    tables = {}
    for path in paths:
        if path not in tables:
            if len(tables) % 50 == 0:
                progress.check()
            tables[path] = read_solar_table(path)
    keys = list(tables)
    e0 = tables[keys[0]][0]
    edges0 = bins_from_points(e0)
    flux, moved = [], 0
    for k in keys:
        e, f = tables[k]
        if e.size == e0.size and np.allclose(e, e0, rtol=0, atol=1e-9):
            flux.append(f)
        else:
            flux.append(rebin_density(bins_from_points(e), f, edges0[:-1], edges0[1:]))
            moved += 1
    pos = {k: i for i, k in enumerate(keys)}
    F = np.stack(flux)[[pos[p_] for p_ in paths]]
    note = f"{moved} solar tables rebinned onto the energy grid of {os.path.basename(keys[0])}" if moved else None
    return e0, F, note


def invert_observations(attrs, rmf, arf, background, solar=None, gain_slope=_P.gain_slope,
                        gain_offset=_P.gain_offset, e_range=(_P.e_min, _P.e_max), oxygen=_P.oxygen,
                        fit_norm=_P.fit_norm, gain_fit=_P.gain_fit, plot_dir=None, progress=None, place=None,
                        base=None, source=None, block=STREAM_BLOCK, **fit_kw):
    """Invert every spectrum of an observation layer's rows (the co-add output, with the solar fit's columns).

    ``attrs``: the layer's columns (:func:`obslayer.read` for the invert stage): ``pha_path``,
    ``solar_ang``, ``emis_ang``, ``exposure`` (and ``solar_file``, ``phase_ang``, ``obs_id`` when
    present); ``rmf``/``arf``/``background`` are paths or loaded objects; ``solar`` the default
    solar table for rows without ``solar_file``. Relative paths are taken from ``base`` (the
    layer's folder); ``source`` (the layer) is named in errors. ``gain_slope``/``gain_offset``
    follow XSPEC's ``gain`` command (:mod:`fpmodel`) and are the start of a fitted gain
    (``gain_fit``: ``"none"``, ``"spectrum"`` or ``"shared"`` by all spectra of the layer);
    ``fit_norm`` (default True) frees the fluorescence normalisation (see the module notes).
    Every spectrum is inverted with its own solar spectrum in one batched fit. Returns
    ``(columns, result)``: the columns to add (dict name -> array, :meth:`InversionResult.columns`)
    and the :class:`InversionResult`. With ``plot_dir`` a fit plot ``fit_<obs_id>.png`` is written
    per spectrum (at ``place(path)`` when given: a :class:`transact.Transaction`'s staging path). A
    row whose spectrum cannot be read is flagged (1, the file and the problem in its note, named by
    its obs_id) and the others are inverted. The rows stream through in blocks of ``block`` (read,
    inverted, their results kept: the same results as one block to rounding, each spectrum being
    fitted alone), except with a gain shared by all spectra, which needs them together.
    """
    from . import obslayer, ogip
    p = as_progress(progress)
    obslayer.require(source, attrs, obslayer.NEEDS["invert"], "invert")
    n = len(attrs["pha_path"])
    rmf = rmf if hasattr(rmf, "matrix") else ogip.read_rmf(_resolve(rmf, base))
    arf = arf if (arf is None or hasattr(arf, "specresp")) else ogip.read_arf(_resolve(arf, base))
    bkg = background if hasattr(background, "counts") else ogip.read_pha(_resolve(background, base))
    if block and n > block and gain_fit != "shared":
        parts = []
        for b0 in range(0, n, block):
            rows = slice(b0, min(n, b0 + block))
            sub = {k: (v[rows] if np.ndim(v) else v) for k, v in attrs.items()}
            if "obs_id" not in sub:
                sub["obs_id"] = np.arange(1, n + 1)[rows]
            parts.append(invert_observations(
                sub, rmf, arf, bkg, solar, gain_slope, gain_offset, e_range, oxygen, fit_norm, gain_fit, plot_dir,
                subrange(p, b0 / n, rows.stop / n), place, base, source, block=None, **fit_kw)[1])
        res = InversionResult.concatenate(parts)
        return res.columns(), res
    bkg_counts = bkg.counts_on_response(rmf.n_channels)
    solar_files = attrs.get("solar_file")
    keys = []
    for r in range(n):
        sf = solar_files[r] if solar_files is not None else None
        sf = sf if (sf is not None and str(sf).strip() not in ("", "None", "nan")) else solar
        if sf is None:
            raise ClassXRFError(source, f"row {r}: no solar_file and no default solar table given", key="solar_file")
        keys.append(_resolve(str(sf), base))
    counts = np.zeros((n, rmf.n_channels))
    bk = np.zeros((n, rmf.n_channels))
    bk_var = np.zeros((n, rmf.n_channels))
    expo = np.asarray(attrs["exposure"], float)
    ids = attrs.get("obs_id", np.arange(1, n + 1))
    bad_rows = {}
    for r in range(n):
        if r % 50 == 0:
            p.set(0.1 * r / max(n, 1), "reading spectra")
            p.check()
        name = str(attrs["pha_path"][r]).strip()
        try:
            if name in ("", "None", "nan"):
                raise ClassXRFError(source, "pha_path is empty", key="pha_path")
            pha = ogip.read_pha(_resolve(name, base))
            counts[r] = pha.counts_on_response(rmf.n_channels)
        except ClassXRFError as exc:         # a bad row is flagged and skipped; the others go on
            bad_rows[r] = f"obs_id {ids[r]}: {exc}"
            continue
        scale = (pha.exposure * np.asarray(pha.backscal, float)) / (bkg.exposure * np.asarray(bkg.backscal, float))
        bk[r] = bkg_counts * scale
        bk_var[r] = bkg_counts * scale ** 2
        if not np.isfinite(expo[r]) or expo[r] <= 0:
            expo[r] = pha.exposure
    p.set(0.1, "reading solar spectra")
    e, flux, note = _solar_rows(keys, p)
    inc = np.asarray(attrs["solar_ang"], float)
    emi = np.asarray(attrs["emis_ang"], float)
    phase = np.asarray(attrs["phase_ang"], float) if "phase_ang" in attrs else None
    if phase is not None:
        phase = np.where(np.isfinite(phase), phase, np.abs(inc - emi))
    fm = inversion_model(rmf, arf, e, flux, e_range[1], gain_slope=gain_slope, gain_offset=gain_offset)
    res = invert_spectra(fm, counts, bk, inc, emi, expo, phase_deg=phase, e_range=e_range, oxygen=oxygen,
                         fit_norm=fit_norm, gain_fit=gain_fit, background_variance=bk_var, bad_rows=bad_rows,
                         progress=subrange(p, 0.15, 0.95), **fit_kw)
    if note:
        res.notes.append(note)
    if plot_dir is not None:
        for r in range(n):
            p.check()
            p.set(0.95 + 0.05 * r / max(n, 1), f"fit plot {r + 1}/{n}")
            final = os.path.join(os.fspath(plot_dir), f"fit_{ids[r]}.png")
            plot_fit(place(final) if place else final, res, r)
    p.set(1.0, "inversion done")
    return res.columns(), res
