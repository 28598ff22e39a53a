"""Fit XSM spectra with the solar model and produce the incident spectrum I0(E) per observation.

The counts of 1.2-7.2 keV (the band of the paper's XSPEC fits) are fitted through the response
(:mod:`.xsm`) with the Poisson likelihood; the reported statistic is the Cash statistic in
XSPEC's form ``C = 2 sum(mu - n + n ln(n/mu))``. Parameters (:class:`.solar.SolarModel`) are
fitted in log space by a damped Fisher-scoring (Levenberg-Marquardt) iteration that runs on a
whole batch of spectra at once: model, Jacobian, Fisher matrices and the linear solves are
vectorised over spectra (NumPy), so many spectra fit together in about the time of a few.
Errors (1 sigma) come from the inverse Fisher matrix at the optimum.

Output per spectrum (:class:`SolarFitResult`): I0(E) on the fixed 0.01 keV grid 0.1-30.1 keV
(photons cm^-2 s^-1 keV^-1, bin-averaged, labelled by the bin's lower edge like ISRO's
``modelop_*.txt``), temperature and emission measure with errors, line fluxes, the statistic,
the GOES 1-8 A flux and class, and which response was used. :func:`fit_observations` does this
for an observation layer's time windows (contract 4 columns).
"""
import json
import math
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .errors import ClassXRFError
from .fitkernel import batched_lm, cstat, fisher
from .parallel import map_chunks
from .progress import as_progress, subrange
from .solar import (EM_UNIT, LINE_COMPLEXES, SolarModel, energy_grid, goes_class, goes_flux, power_law,
                    thermal_table)
from .xsm import (XSMSpectrum, load_response, read_xsm_pha, read_xsm_typeii, sum_time_window,
                  utc_to_met)

__all__ = ["SolarFitResult", "fit_spectra", "fit_spectrum", "fit_observations",
           "write_fit_outputs", "fit_plot", "FIT_BAND_KEV", "cash"]

FIT_BAND_KEV = (1.2, 7.2)
_T_GRID_MK = np.array([1.5, 2.0, 2.7, 3.5, 4.5, 6.0, 8.0, 10.0, 13.0, 17.0, 22.0, 30.0])
_LN_T_BOUNDS = (math.log(0.8), math.log(120.0))
_INDEX_BOUNDS = (1.0, 12.0)
_LN_FLOOR = -45.0
CHUNK = 64                  # spectra per vectorised fit (a chunk of work for parallel.map_chunks)
#: starts of the power law, times the start's continuum at 1 keV: every spectrum is fitted from each
#: and keeps the fit of lower C. From one start (1e-6) 17 of 80 96-s windows of the daily XSM spectra
#: stopped at a minimum of C higher by 1 to 649 than from another start, from 0.1 alone 5 (by up to
#: 23) (benchmarks/bench_solarfit.py prints the count for these two)
POWER_LAW_STARTS = (0.1, 1e-6)


def cash(n, mu):
    """XSPEC's Cash statistic ``2 sum(mu - n + n ln(n/mu))`` over the last axis
    (:func:`fitkernel.cstat`)."""
    return cstat(np.asarray(n, float), np.asarray(mu, float))


@dataclass
class SolarFitResult:
    """One fitted spectrum."""
    T_MK: float
    T_err: float
    EM: float
    EM_err: float
    params: dict
    errors: dict
    cstat: float
    dof: int
    n_counts: float
    converged: bool
    n_iter: int
    response_kind: str
    response: str
    energy_keV: np.ndarray
    i0: np.ndarray
    goes_flux: float
    goes_class: str
    spectrum_path: Optional[str] = None
    tstart: float = float("nan")
    tstop: float = float("nan")
    exposure: float = float("nan")
    theta: np.ndarray = field(default=None, repr=False)
    cov: np.ndarray = field(default=None, repr=False)
    channel_energy: np.ndarray = field(default=None, repr=False)
    counts: np.ndarray = field(default=None, repr=False)
    model_counts: np.ndarray = field(default=None, repr=False)

    def summary(self):
        """JSON-serialisable parameters, errors and statistics."""
        return {"T_MK": self.T_MK, "T_err_MK": self.T_err, "EM_cm3": self.EM,
                "EM_err_cm3": self.EM_err, "params": self.params, "errors": self.errors,
                "cstat": self.cstat, "dof": self.dof, "n_counts": self.n_counts,
                "converged": self.converged, "n_iter": self.n_iter,
                "response_kind": self.response_kind, "response": self.response,
                "goes_flux_Wm2": self.goes_flux, "goes_class": self.goes_class,
                "spectrum": self.spectrum_path, "tstart_met": self.tstart,
                "tstop_met": self.tstop, "exposure_s": self.exposure,
                "fit_band_keV": list(FIT_BAND_KEV),
                "i0_grid": "0.01 keV bins from 0.1 keV, labelled by lower edge"}


class _Batch:
    """Spectra sharing one redistribution matrix, restricted to the fit band."""

    def __init__(self, spectra, responses, band, backgrounds=None):
        rmf = responses[0].rmf
        lo = np.asarray(rmf.energ_lo, float)
        hi = np.asarray(rmf.energ_hi, float)
        emid = 0.5 * (rmf.e_min + rmf.e_max)
        chan_sel = (emid >= band[0]) & (emid <= band[1])
        if not np.any(chan_sel):
            raise ClassXRFError(responses[0].rmf_path, f"no channel lies in {band} keV",
                                key="EBOUNDS")
        M = np.asarray(rmf.matrix, float)
        rows = np.any(M[:, chan_sel] > 1e-7, axis=1) & (hi > 0.5)
        self.R = M[rows][:, chan_sel]
        self.lo, self.hi = lo[rows], hi[rows]
        self.chan_sel = chan_sel
        self.chan_energy = emid[chan_sel]
        self.n = np.stack([np.asarray(s.counts, float)[chan_sel] for s in spectra])
        self.A = np.stack([r.specresp[rows] * (self.hi - self.lo) * s.exposure
                           for s, r in zip(spectra, responses)])
        if backgrounds is None:
            self.bkg = np.zeros_like(self.n)
        else:
            self.bkg = np.stack([np.zeros(self.n.shape[1]) if b is None else
                                 np.asarray(b, float)[chan_sel] for b in backgrounds])

    def fold(self, x, rows=None):
        """x (B, ..., E) photon flux density of the spectra ``rows`` (all by default) -> counts (B, ..., C)."""
        A = self.A if rows is None else self.A[rows]
        if x.ndim == 2:
            return (x * A) @ self.R
        return (x * A[:, None, :]) @ self.R


def _folded_model(model, batch):
    """The model counts of the batch and their Jacobian, ``counts(theta, rows, jac) -> (mu (k, C),
    J (k, C, P))`` for :func:`fitkernel.batched_lm`. The thermal continuum and its temperature
    derivative come from the temperature table (:meth:`SolarModel.thermal`); the line complexes
    enter linearly, so each complex is folded through each spectrum's response once."""
    line_fold = batch.fold(np.broadcast_to(model.lines, (batch.n.shape[0],) + model.lines.shape))  # (B, L, C)
    minus_ln_e = -np.log(model.energy)[None, :]
    nl = model.n_lines

    def counts(th, rows, jac):
        f1, df1 = model.thermal(th[:, 1])
        em1 = np.exp(th[:, 0])[:, None]
        pl = power_law(model.energy, np.exp(th[:, 2]), th[:, 3])
        cols = [em1 * f1, em1 * df1, pl, minus_ln_e * pl]
        if model.two_temp:
            j = 4 + nl
            f2, df2 = model.thermal(th[:, j + 1])
            em2 = np.exp(th[:, j])[:, None]
            cols += [em2 * f2, em2 * df2]
        fl = np.exp(th[:, 4:4 + nl])                                         # (k, L)
        lines = line_fold[rows] * fl[:, :, None]                              # (k, L, C)
        Jc = batch.fold(np.stack(cols, axis=1), rows)                         # (k, 4 or 6, C)
        # the model is linear in the thermal and power-law components: their folded sum
        mu = Jc[:, 0] + Jc[:, 2] + (Jc[:, 4] if model.two_temp else 0.0) + lines.sum(axis=1) + batch.bkg[rows] + 1e-12
        if not jac:
            return mu, None
        J = np.concatenate([Jc[:, :4], lines, Jc[:, 4:]], axis=1)
        return mu, np.swapaxes(J, 1, 2)                                       # (k, C, P)
    return counts


def _bounds(model):
    """Lower and upper bounds of the parameters (log emission measure free; log temperature, power
    law, line fluxes bounded)."""
    lo, hi = np.full(model.n_params, -np.inf), np.full(model.n_params, np.inf)
    lo[1], hi[1] = _LN_T_BOUNDS
    lo[2], hi[2] = _LN_FLOOR, 30.0
    lo[3], hi[3] = _INDEX_BOUNDS
    lo[4:4 + model.n_lines], hi[4:4 + model.n_lines] = _LN_FLOOR, 30.0
    if model.two_temp:
        j = 4 + model.n_lines
        lo[j], hi[j] = _LN_FLOOR, 30.0
        lo[j + 1], hi[j + 1] = _LN_T_BOUNDS
    return lo, hi


def _clip(model, theta):
    return np.clip(theta, *_bounds(model))


def _initial(model, batch, power_law=POWER_LAW_STARTS[0]):
    """Start: best single temperature of a grid (continuum scaled to the counts), lines at a few
    per cent of the continuum, the power law at ``power_law`` times the continuum at 1 keV (each
    spectrum from its own numbers)."""
    B = batch.n.shape[0]
    cont = model.continuum(_T_GRID_MK)              # (T, E)
    folded = (cont[None, :, :] * batch.A[:, None, :]) @ batch.R    # (B, T, C), one matrix product
    tot_n = batch.n.sum(axis=1)
    scale = np.maximum(tot_n - batch.bkg.sum(axis=1), 1.0)[:, None] / np.maximum(
        folded.sum(axis=2), 1e-300)
    mu = scale[:, :, None] * folded + batch.bkg[:, None, :] + 1e-9
    c = cash(batch.n[:, None, :], mu)
    k = np.argmin(c, axis=1)
    theta = np.zeros((B, model.n_params))
    theta[:, 0] = np.log(scale[np.arange(B), k])
    theta[:, 1] = np.log(_T_GRID_MK[k])
    c_at = scale[np.arange(B), k][:, None] * cont[k]   # (B, E)
    at_1kev = np.array([np.interp(1.0, model.energy, c_at[b]) for b in range(B)])   # each spectrum's own
    theta[:, 2] = np.log(np.maximum(power_law * at_1kev, 1e-30))
    theta[:, 3] = 4.0
    for i, name in enumerate(model.complexes):
        e0 = LINE_COMPLEXES[name][2][0][0]
        dens = np.array([np.interp(e0, model.energy, c_at[b]) for b in range(B)])
        theta[:, 4 + i] = np.log(np.maximum(0.03 * dens, 1e-30))
    if model.two_temp:
        j = 4 + model.n_lines
        theta[:, j] = theta[:, 0] - 3.0
        theta[:, j + 1] = np.log(np.clip(2.0 * _T_GRID_MK[k], 3.0, 60.0))
    return _clip(model, theta)


def _lm(model, batch, theta, max_iter=80, tol=1e-6, progress=None):
    """The batched Levenberg-Marquardt of :mod:`fitkernel` on the Poisson likelihood
    (:func:`_folded_model`; steps capped at 3 in log space, relative convergence).
    Returns theta, C, converged, iters, Fisher matrices and the model counts."""
    lo, hi = _bounds(model)
    st = batched_lm(_folded_model(model, batch), theta, batch.n, lo, hi, max_iter=max_iter, tol=tol, lam0=1e-2,
                    lam_up=4.0, lam_min=1e-7, max_step=3.0, rel_tol=True, progress=progress)
    return st.P, st.C, st.converged, st.n_iter, fisher(st.J, st.m), st.m


def _covariance(F, theta, model):
    """Inverse Fisher matrix; parameters at their floor (lines/power law switched off) are held
    fixed (their variance is reported as NaN)."""
    B, P = theta.shape
    cov = np.full((B, P, P), np.nan)
    for b in range(B):
        free = np.ones(P, bool)
        free[2] = theta[b, 2] > _LN_FLOOR + 5
        free[3] = free[2]
        free[4:4 + model.n_lines] = theta[b, 4:4 + model.n_lines] > _LN_FLOOR + 5
        Fb = F[b][np.ix_(free, free)]
        try:
            cb = np.linalg.pinv(Fb, rcond=1e-12, hermitian=True)
        except np.linalg.LinAlgError:
            continue
        cov[b][np.ix_(free, free)] = cb
    return cov


def _fit_chunk(spectra, responses, two_temp, band, backgrounds, max_iter):
    """Fit spectra that share one redistribution matrix in one vectorised batch -> a list of
    :class:`SolarFitResult` in their order."""
    batch = _Batch(spectra, responses, band, backgrounds)
    model = SolarModel(batch.lo, batch.hi, two_temp=two_temp, tabulated=True)
    best = None
    for pl in POWER_LAW_STARTS:     # the likelihood has more than one minimum: the lower C of each start
        fit = _lm(model, batch, _initial(model, batch, pl), max_iter)
        if best is None:
            best = list(fit)
            continue
        better = fit[1] < best[1]
        for k in range(len(best)):
            best[k] = np.where(better.reshape((-1,) + (1,) * (np.ndim(best[k]) - 1)), fit[k], best[k])
    theta, C, conv, n_it, F, mu = best
    cov = _covariance(F, theta, model)
    out_lo, out_hi = energy_grid()
    i0 = SolarModel(out_lo, out_hi, two_temp=two_temp, tabulated=True).evaluate(theta)
    gflux = goes_flux(out_lo, out_hi, i0)
    names = model.names
    out = []
    for k, (spec, resp) in enumerate(zip(spectra, responses)):
        sd = np.sqrt(np.diagonal(cov[k]))
        T = math.exp(theta[k, 1])
        EM = math.exp(theta[k, 0]) * EM_UNIT
        n_free = int(np.sum(np.isfinite(sd)))
        out.append(SolarFitResult(
            T_MK=T, T_err=T * sd[1], EM=EM, EM_err=EM * sd[0],
            params={nm: float(v) for nm, v in zip(names, theta[k])},
            errors={nm: float(v) for nm, v in zip(names, sd)},
            cstat=float(C[k]), dof=int(batch.n.shape[1] - n_free),
            n_counts=float(batch.n[k].sum()), converged=bool(conv[k]), n_iter=int(n_it[k]),
            response_kind=resp.kind, response=resp.description,
            energy_keV=out_lo.copy(), i0=i0[k], goes_flux=float(gflux[k]),
            goes_class=goes_class(gflux[k]), spectrum_path=spec.path,
            tstart=float(spec.tstart), tstop=float(spec.tstop),
            exposure=float(spec.exposure), theta=theta[k].copy(), cov=cov[k],
            channel_energy=batch.chan_energy, counts=batch.n[k], model_counts=mu[k]))
    return out


def fit_spectra(spectra, responses, two_temp=False, band=FIT_BAND_KEV, backgrounds=None,
                max_iter=80, progress=None):
    """Fit a list of :class:`.xsm.XSMSpectrum` with their :class:`.xsm.XSMResponse` in bulk.

    Spectra sharing an RMF object are fitted together in one vectorised batch. ``backgrounds``
    (optional, per spectrum): expected background counts per channel for that exposure.
    Returns a list of :class:`SolarFitResult` in input order.
    """
    p = as_progress(progress)
    if len(spectra) != len(responses):
        raise ClassXRFError(None, f"{len(spectra)} spectra but {len(responses)} responses",
                            key="responses")
    for s, r in zip(spectra, responses):
        if np.size(s.counts) != r.rmf.n_channels:
            raise ClassXRFError(s.path, f"spectrum has {np.size(s.counts)} channels, response "
                                f"{r.rmf_path or 'approximate'} {r.rmf.n_channels}",
                                key="DETCHANS")
        if not s.exposure > 0:
            raise ClassXRFError(s.path, "exposure must be positive", key="EXPOSURE")
    groups = {}
    for i, r in enumerate(responses):
        groups.setdefault(id(r.rmf), []).append(i)
    # spectra sharing a response fitted together, in chunks of CHUNK (in worker processes where
    # they can be forked, parallel.map_chunks); each fit is independent of the others in its chunk
    chunks = [idx[c:c + CHUNK] for idx in groups.values() for c in range(0, len(idx), CHUNK)]
    # the temperature tables (each response's grid and the output grid) built once, here, not in
    # each worker process
    thermal_table(SolarModel(*energy_grid()).energy)
    for idx in groups.values():
        b = _Batch([spectra[idx[0]]], [responses[idx[0]]], band)
        thermal_table(SolarModel(b.lo, b.hi).energy)

    def one(c):
        return _fit_chunk([spectra[i] for i in chunks[c]], [responses[i] for i in chunks[c]], two_temp, band,
                          None if backgrounds is None else [backgrounds[i] for i in chunks[c]], max_iter)

    results = [None] * len(spectra)
    got = map_chunks(one, len(chunks), p, 0.0, 1.0,
                     lambda c: f"solar fits {sum(map(len, chunks[:c + 1]))} of {len(spectra)}", processes=True)
    for idx, res in zip(chunks, got):
        for i, r in zip(idx, res):
            results[i] = r
    p.set(1.0, "solar fits done")
    return results


def fit_spectrum(spectrum, arf=None, rmf=None, two_temp=False, background=None, progress=None):
    """Fit one spectrum (an :class:`.xsm.XSMSpectrum` or a type I file path)."""
    if not isinstance(spectrum, XSMSpectrum):
        spectrum = read_xsm_pha(spectrum)
    resp = load_response(spectrum, arf=arf, rmf=rmf)
    bk = None if background is None else [background]
    return fit_spectra([spectrum], [resp], two_temp=two_temp, backgrounds=bk,
                       progress=progress)[0]


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------

def _atomic_text(path, text):
    from .geo import atomic_output
    with atomic_output(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(text)


def fit_plot(result, path):
    """Counts and model in the fit band with residuals (PNG), written atomically. Returns the
    path, or ``None`` when matplotlib is not available."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    e = result.channel_energy
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True,
                                 gridspec_kw={"height_ratios": [3, 1]})
    a1.errorbar(e, result.counts, yerr=np.sqrt(np.maximum(result.counts, 1)), fmt=".",
                ms=3, label="XSM counts")
    a1.plot(e, result.model_counts, "-", label=f"model T={result.T_MK:.2f} MK")
    a1.set_yscale("log")
    a1.set_ylabel("counts / channel")
    a1.set_title(f"{os.path.basename(str(result.spectrum_path))}  C={result.cstat:.1f}/"
                 f"{result.dof}  {result.goes_class}\n{result.response_kind} response", fontsize=9)
    a1.legend(fontsize=8)
    a2.plot(e, (result.counts - result.model_counts) / np.sqrt(np.maximum(result.model_counts, 1e-9)), ".")
    a2.axhline(0, color="k", lw=0.5)
    a2.set_xlabel("energy (keV)")
    a2.set_ylabel("(n - mu)/sqrt(mu)")
    from .geo import save_figure
    return save_figure(fig, path)


def write_fit_outputs(result, stem, plot=False, place=None):
    """Write ``<stem>.txt`` (I0 table, :func:`.solar_table.write_solar_table`), ``<stem>.json``
    (parameters, errors, statistic, response) and, on request, ``<stem>.png``; each at
    ``place(path)`` when given (a :class:`transact.Transaction`'s staging path). Returns the
    (final) table path."""
    from .solar_table import write_solar_table
    place = place or (lambda path: path)
    table = stem + ".txt"
    write_solar_table(place(table), result.energy_keV, result.i0)
    _atomic_text(place(stem + ".json"), json.dumps(result.summary(), indent=1, default=float))
    if plot:
        fit_plot(result, place(stem + ".png"))
    return table


# --------------------------------------------------------------------------------------------
# Observation layer
# --------------------------------------------------------------------------------------------

def _is_typeii(path):
    """True when the SPECTRUM table's COUNTS/RATE column is a vector (one spectrum per row)."""
    from astropy.io import fits
    try:
        with fits.open(path, memmap=False) as h:
            for x in h[1:]:
                if str(x.header.get("EXTNAME", "")).strip().upper() != "SPECTRUM":
                    continue
                for c in x.columns:
                    if c.name.upper() in ("COUNTS", "RATE"):
                        rep = c.format.repeat if hasattr(c.format, "repeat") else 1
                        return int(rep or 1) > 1
    except Exception:
        return False
    return False


def fit_observations(t_start, t_end, xsm, out_dir, arf=None, rmf=None, two_temp=False,
                     plot=False, obs_ids=None, progress=None, place=None):
    """Solar fit for each observation window (contract 4: ``t_start``/``t_end`` ISO UTC).

    ``xsm``: a folder of type I spectra (the one whose TSTART..TSTOP covers most of each window
    is used; several observations sharing a spectrum share its fit), a type II file (summed over
    each window), or one type I file (used for all). Writes per observation
    ``solar_<id>.txt/.json(/.png)`` in ``out_dir`` and returns a dict of columns: ``solar_file``,
    ``sol_T_MK``, ``sol_EM``, ``flare_cls``, ``goes_flux``, ``sol_stat`` (C-stat / dof);
    observations without XSM data get ``""`` / NaN. ``place``: see :func:`write_fit_outputs`.
    """
    p = as_progress(progress)
    t_start = list(t_start)
    t_end = list(t_end)
    if len(t_start) != len(t_end):
        raise ClassXRFError(None, "t_start and t_end differ in length", key="t_end")
    n = len(t_start)
    ids = list(range(n)) if obs_ids is None else list(obs_ids)
    os.makedirs(out_dir, exist_ok=True)
    xsm = os.fspath(xsm)
    spectra, keys = {}, [None] * n
    p.set(0.0, "selecting XSM data")
    if os.path.isdir(xsm):
        from .xsm import scan_xsm_folder
        table = scan_xsm_folder(xsm, subrange(p, 0.0, 0.1))
        if not table:
            raise ClassXRFError(xsm, "no XSM spectra (*.pha) in the folder")
        ref = read_xsm_pha(table[0][0])
        t0 = utc_to_met(t_start, ref.mjdref, ref.timesys)
        t1 = utc_to_met(t_end, ref.mjdref, ref.timesys)
        starts = np.array([t[1] for t in table])
        stops = np.array([t[2] for t in table])
        for i in range(n):
            ov = np.clip(np.minimum(stops, t1[i]) - np.maximum(starts, t0[i]), 0, None)
            j = int(np.argmax(ov))
            if ov[j] > 0:
                keys[i] = table[j][0]
                if keys[i] not in spectra:
                    spectra[keys[i]] = read_xsm_pha(keys[i])
    elif _is_typeii(xsm):
        s2 = read_xsm_typeii(xsm)
        t0 = utc_to_met(t_start, s2.mjdref, s2.timesys)
        t1 = utc_to_met(t_end, s2.mjdref, s2.timesys)
        for i in range(n):
            p.check()
            try:
                spectra[i] = sum_time_window(s2, float(t0[i]), float(t1[i]))
                keys[i] = i
            except ClassXRFError:
                keys[i] = None
    else:
        s = read_xsm_pha(xsm)
        spectra[xsm] = s
        keys = [xsm] * n
    order = list(spectra)
    responses = [load_response(spectra[k], arf=arf, rmf=rmf) for k in order]
    results = fit_spectra([spectra[k] for k in order], responses, two_temp=two_temp,
                          progress=subrange(p, 0.1, 0.9))
    res = dict(zip(order, results))
    cols = {"solar_file": [], "sol_T_MK": [], "sol_EM": [], "flare_cls": [], "goes_flux": [],
            "sol_stat": []}
    written = {}
    for i in range(n):
        p.check()
        k = keys[i]
        if k is None:
            cols["solar_file"].append("")
            for c in ("sol_T_MK", "sol_EM", "goes_flux", "sol_stat"):
                cols[c].append(float("nan"))
            cols["flare_cls"].append("")
            continue
        r = res[k]
        if k not in written:
            stem = os.path.join(out_dir, f"solar_{ids[i]}")
            written[k] = write_fit_outputs(r, stem, plot=plot, place=place)
        cols["solar_file"].append(written[k])
        cols["sol_T_MK"].append(r.T_MK)
        cols["sol_EM"].append(r.EM)
        cols["flare_cls"].append(r.goes_class)
        cols["goes_flux"].append(r.goes_flux)
        cols["sol_stat"].append(r.cstat / max(r.dof, 1))
        p.set(0.9 + 0.1 * (i + 1) / n, f"observation {ids[i]}")
    return cols
