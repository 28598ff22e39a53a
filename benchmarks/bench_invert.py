"""FP inversion: spectra inverted per second, against an X2ABUNDANCE-style baseline, and the
round-trip accuracy per element and flare class.

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_invert.py [--n 200] [--baseline 2] [--repeats 3]

* Fast path: :func:`class_qgis_plugin.invert.invert_spectra` on a batch of simulated 96-s CLASS
  spectra (real 2048-channel CLASS RMF/ARF, real long-term background), atomic data cached once
  per grid, batched Levenberg-Marquardt with analytic Jacobians.
* Baseline (same physics, same statistic, same data): like X2ABUNDANCE's XSPEC local model, every
  model evaluation rebuilds its atomic constants with scalar xraylib calls (per energy, per
  element and line), and the fit is a general-purpose bounded minimiser (scipy L-BFGS-B with
  numerical gradients, as XSPEC's Levenberg-Marquardt also differentiates numerically), one
  spectrum at a time.
* Accuracy: median |recovered - true| (wt%), the share of truths inside 1 sigma, and the share of
  spectra where the element is constrained, per element for B, C and M flares.
* ISRO's X2ABUNDANCE test pair: XSPEC's chi, C, the gain, the fitted norm, the Al, Si and Ca line
  centroids of the model against the data's (the same Gaussian fits on both) and the composition,
  for the former response reading (F_CHAN counted from 0, ARF by its labels), for XSPEC's reading
  with ISRO's frozen gain (1.0043, 0.0316 keV) and with a fitted gain, each with ISRO's solar model
  and our own fit of the XSM spectrum of the same 16 s, minimising C or XSPEC's chi.

Solar input: an isothermal bremsstrahlung continuum exp(-E/kT)/(E sqrt(kT)) (Gaunt factor 1) with
the temperature of each class (B 8 MK, C 12 MK, M 16 MK; Feldman et al. 1996) scaled to a GOES
1-8 Angstrom flux of 3e-7, 2e-6 and 2e-5 W m^-2. Lines of the flare plasma are left out.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from class_qgis_plugin import composition  # noqa: E402
from class_qgis_plugin.composition import ELEMENTS, HIGHLAND_WT, MARE_WT  # noqa: E402
from class_qgis_plugin.fpmodel import DEFAULT_SOLID_ANGLE_SR, ForwardModel  # noqa: E402
from class_qgis_plugin.invert import _affine_map, cstat, inversion_model, invert_spectra  # noqa: E402
from class_qgis_plugin.ogip import read_arf, read_pha, read_rmf  # noqa: E402
from class_qgis_plugin.parallel import can_fork  # noqa: E402

DATA = Path(os.environ.get("CLASSXRF_SHARED_DATA", ROOT.parent / "shared" / "data"))
KEV_K = 8.617333e-8          # keV per K
FLARES = {"B": (8.0, 3e-7), "C": (12.0, 2e-6), "M": (16.0, 2e-5)}


def flare_spectrum(energy, t_mk, goes_wm2):
    kt = KEV_K * t_mk * 1e6
    f = np.exp(-energy / kt) / (energy * np.sqrt(kt))
    band = (energy >= 1.55) & (energy <= 12.4)
    de = np.gradient(energy)
    goes = (energy[band] * f[band] * de[band]).sum() * 1.602176634e-9 * 1e-3
    return f * goes_wm2 / goes


def draw(fm, bkg_rate, n, rng, expo=96.0):
    fmix = rng.uniform(0, 1, n)
    cat = (fmix[:, None] * MARE_WT[1:] + (1 - fmix[:, None]) * HIGHLAND_WT[1:]) * rng.normal(1, 0.08, (n, 7))
    truth = composition.with_stoichiometric_oxygen(cat)
    inc = rng.uniform(10, 60, n)
    emi = rng.uniform(0, 3, n)
    lam = fm.counts(truth / 100, inc, emi, expo)
    bkg = bkg_rate * expo
    return truth, inc, emi, rng.poisson(lam + bkg).astype(float), bkg


def _xs(fn, *args):
    try:
        return fn(*args)
    except ValueError:          # below the edge: xraylib raises, the cross section is 0
        return 0.0


class BaselineModel:
    """The same forward model, but its atomic constants are rebuilt with scalar xraylib calls at
    every evaluation (as X2ABUNDANCE's get_constants_xrf inside the XSPEC local model)."""

    def __init__(self, fm, fitmask):
        self.fm = fm
        self.fitmask = fitmask
        keep = fm.energy <= 10.0      # the baseline integrates only to 10 keV (fewer xraylib calls)
        self.keep = keep
        self.E = fm.energy[keep]
        self.de = fm.de[keep]
        self.Rl = fm.line_response[:, fitmask]
        self.Rs = fm.scatter_response[keep][:, fitmask]
        self.lines = [(int(composition.Z[fm.atomic.line_element[l]]), int(fm.atomic.line_macro[l]),
                       int(fm.atomic.line_element[l]), float(fm.atomic.line_energy[l]))
                      for l in range(fm.atomic.n_lines)]
        self.n_eval = 0

    def counts(self, W, inc, emi, theta, I0, k):
        import xraylib
        self.n_eval += 1
        E = self.E
        nE = E.size
        mu_el = np.array([[xraylib.CS_Total(int(z), e) for e in E] for z in composition.Z])
        mu = W @ mu_el
        a, b = 1 / np.cos(np.deg2rad(inc)), 1 / np.cos(np.deg2rad(emi))
        lines = np.zeros(len(self.lines))
        for l, (z, line, j, el) in enumerate(self.lines):
            tau = np.array([_xs(xraylib.CS_FluorLine_Kissel_Cascade, z, line, e) for e in E])
            mul = sum(W[i] * xraylib.CS_Total(int(zz), el) for i, zz in enumerate(composition.Z))
            lines[l] = W[j] * (I0 * self.de * tau / (a * mu + b * mul)).sum() * b / (4 * np.pi)
        th = np.deg2rad(theta)
        ray = np.array([[xraylib.DCS_Rayl(int(z), e, th) for e in E] for z in composition.Z])
        com = np.array([[xraylib.DCS_Compt(int(z), e, th) for e in E] for z in composition.Z])
        sc = I0 * self.de * (W @ (ray + com)) / ((a + b) * mu) * b
        assert sc.size == nE
        return k * (lines @ self.Rl), k * (sc @ self.Rs)


def baseline_fit(bm, d, B, inc, emi, expo, max_fun=400):
    """One spectrum: scipy L-BFGS-B on C over the 6 free cations + scatter norm."""
    from scipy.optimize import minimize
    w0, M = _affine_map("stoichiometric")
    fm = bm.fm
    I0 = fm.solar[0][bm.keep]
    k = expo * fm.solid_angle_sr * fm.norm
    theta = 180.0 - abs(inc - emi)
    x0 = np.concatenate([0.5 * (MARE_WT + HIGHLAND_WT)[[1, 2, 3, 5, 6, 7]], [1.0]])

    def f(x):
        wt = np.clip(w0 + M @ x[:6], 0, None)
        W = wt / wt.sum()
        lc, sc = bm.counts(W, inc, emi, theta, I0, k)
        return cstat(d, B + lc + x[6] * sc)

    bounds = [(1e-4, 100)] * 6 + [(0, 100)]
    r = minimize(f, x0, method="L-BFGS-B", bounds=bounds, options=dict(maxfun=max_fun))
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="spectra per flare class")
    ap.add_argument("--baseline", type=int, default=2, help="spectra fitted by the baseline")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3, help="runs of the per-spectrum-solar batch, each mode")
    args = ap.parse_args()
    rmf = read_rmf(DATA / "class" / "response" / "class_rmf_v1_2048ch.rmf")
    arf = read_arf(DATA / "class" / "response" / "class_arf_v1.arf")
    bkg = read_pha(DATA / "class" / "background" / "background_allevents.fits")
    bkg_rate = bkg.counts / bkg.exposure
    energy = np.arange(0.1, 30.1, 0.01)
    rng = np.random.default_rng(args.seed)
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, cpus={os.cpu_count()}")
    table = {}
    speed = {}
    for cls, (t_mk, goes) in FLARES.items():
        sim = ForwardModel(rmf, arf, energy, flare_spectrum(energy, t_mk, goes))       # the truth: 0.01 keV grid
        t0 = time.perf_counter()
        fm = inversion_model(rmf, arf, energy, flare_spectrum(energy, t_mk, goes))     # as invert_observations
        t_setup = time.perf_counter() - t0
        truth, inc, emi, data, bg = draw(sim, bkg_rate, args.n, rng)
        t0 = time.perf_counter()
        r = invert_spectra(fm, data, bg, inc, emi, 96.0)
        dt = time.perf_counter() - t0
        speed[cls] = (args.n / dt, dt, t_setup, float(np.median(r.n_iter)), float(r.converged.mean()),
                      int((r.flag != 0).sum()))
        # as before the flags existed: unconstrained elements counted at their prior-dominated values
        d = np.where(r.ok, r.wt, r.wt_prior) - truth
        rows = {}
        for k, el in enumerate(ELEMENTS):
            ok = r.ok[:, k]
            rows[el] = (np.median(np.abs(d[:, k])), np.mean(np.abs(d[ok, k]) <= r.err[ok, k]) if ok.any() else np.nan,
                        ok.mean())
        table[cls] = rows
        if cls == "C":
            fm_c, data_c, bg_c, inc_c, emi_c = sim, data, bg, inc, emi      # the baseline: the 0.01 keV grid, as before
            t_fast_c = dt / args.n

    # the real case: every spectrum with its own solar spectrum (C-class temperatures and fluxes spread)
    T = rng.uniform(10, 14, args.n)
    own = np.stack([flare_spectrum(energy, t, 2e-6 * f) for t, f in zip(T, rng.uniform(0.5, 2, args.n))])
    fm_own = inversion_model(rmf, arf, energy, own)
    truth_o, inc_o, emi_o, data_o, bg_o = draw(ForwardModel(rmf, arf, energy, own), bkg_rate, args.n, rng)
    # chunks in worker processes (the default where they can be forked) against threads, alternating
    own_rates = {"processes": [], "threads": []}
    for _ in range(args.repeats):
        for mode, env in (("processes", "1"), ("threads", "0")):
            os.environ["CLASSXRF_PROCESSES"] = env
            t0 = time.perf_counter()
            r = invert_spectra(fm_own, data_o, bg_o, inc_o, emi_o, 96.0)
            own_rates[mode].append(args.n / (time.perf_counter() - t0))
            if mode == "processes":
                r_own = r
    os.environ.pop("CLASSXRF_PROCESSES")
    d_own = np.where(r_own.ok, r_own.wt, r_own.wt_prior) - truth_o

    print("\nFast path (batched LM, atomic data cached per grid, the inversion grid), 96-s spectra, "
          "real CLASS response, simulated on the 0.01 keV grid:")
    print(f"{'class':>5} {'spectra/s':>10} {'time (s)':>9} {'setup (s)':>9} {'median iters':>12} {'converged':>9} "
          f"{'flagged':>7}")
    for cls, (sps, dt, ts, it, cv, nf) in speed.items():
        print(f"{cls:>5} {sps:10.1f} {dt:9.2f} {ts:9.2f} {it:12.0f} {cv:9.2f} {nf:7d}")

    med = {k: float(np.median(v)) for k, v in own_rates.items()}
    ratio = float(np.median(np.array(own_rates["processes"]) / np.array(own_rates["threads"])))
    print(f"  C class, each spectrum its own solar spectrum, median of {args.repeats}: {med['processes']:.1f} "
          f"spectra/s in worker processes (can fork: {can_fork()}), {med['threads']:.1f} in threads, same run "
          f"alternating, ratio {ratio:.2f}; runs " + " ".join(f"{a:.0f}/{b:.0f}" for a, b in
                                                             zip(own_rates["processes"], own_rates["threads"])))
    print(f"  C class, each spectrum its own solar spectrum: {med['processes']:.1f} spectra/s, converged "
          f"{r_own.converged.mean():.2f}, median |error| " +
          ", ".join(f"{el} {np.median(np.abs(d_own[:, k])):.2f}" for k, el in enumerate(ELEMENTS)))

    print(f"\nBaseline (xraylib scalar calls inside every model evaluation, L-BFGS-B per spectrum), "
          f"C class, {args.baseline} spectra:")
    fitmask = fm_c.response.channel_mask(0.9, 4.2)
    bm = BaselineModel(fm_c, fitmask)
    times, evals = [], []
    for i in range(args.baseline):
        bm.n_eval = 0
        t0 = time.perf_counter()
        res = baseline_fit(bm, data_c[i, fitmask], bg_c[fitmask], inc_c[i], emi_c[i], 96.0)
        times.append(time.perf_counter() - t0)
        evals.append(bm.n_eval)
        print(f"  spectrum {i}: {times[-1]:.1f} s, {bm.n_eval} model evaluations, "
              f"{times[-1] / bm.n_eval * 1e3:.1f} ms each, converged={res.success}")
    t_base = float(np.median(times))
    print(f"\nSide by side (C class, same machine, same run): fast {1 / t_fast_c:.1f} spectra/s, "
          f"baseline {1 / t_base:.3f} spectra/s, ratio {t_base / t_fast_c:.0f}x "
          f"(median over {args.baseline} baseline spectra)")

    print("\nRound trip, 96 s, median |recovered - true| wt% / share of truths within 1 sigma / share constrained:")
    print(f"{'el':>3} " + " ".join(f"{c:>22}" for c in FLARES))
    for el in ELEMENTS:
        cells = []
        for cls in FLARES:
            m, cov, okf = table[cls][el]
            cells.append(f"{m:7.2f} / {cov:4.2f} / {okf:4.2f}")
        print(f"{el:>3} " + " ".join(f"{c:>22}" for c in cells))
    isro_pair_table()
    raw_2048_gain()
    daily_norms()


def line_centroids(rmf, y):
    """Al, Si, Ca K alpha centroids (keV) of counts per channel (:func:`evaluate.line_centroids`)."""
    from class_qgis_plugin.evaluate import line_centroids as measure
    return measure(rmf.e_min, rmf.e_max, y)


def isro_pair_table():
    """ISRO's X2ABUNDANCE test pair (2021-08-27, 16 s, 1024 channels), channels 35-155 (0.9-4.2 keV):
    XSPEC's chi, C, gain, norm, line centroids and composition for the former response reading, for
    XSPEC's reading with ISRO's frozen gain, and for a fitted gain (XSPEC's gain fit), each with ISRO's
    solar model and with our own fit of the XSM spectrum of the same 16 s, minimising C or XSPEC's chi."""
    import copy
    from class_qgis_plugin.ogip import ARF
    from class_qgis_plugin.solar_table import read_solar_table
    from class_qgis_plugin.solarfit import fit_spectrum
    d = DATA / "class" / "x2abund_test"
    flare = DATA / "xsm" / "windows" / "ch2_xsm_20210827_l1.pha"
    if not d.is_dir() or not flare.exists():
        print("\nISRO test pair: ../shared/data not found, skipped")
        return
    src = read_pha(next(d.glob("ch2_cla_l1_20210827T*_1024.fits")))
    bkg = read_pha(next(d.glob("ch2_cla_l1_20210826T*_1024.fits")))
    rmf, arf = read_rmf(d / "class_rmf_v1.rmf"), read_arf(d / "class_arf_v1.arf")
    e, f_isro = read_solar_table(next(d.glob("modelop_*.txt")))
    sf = fit_spectrum(flare)
    solar = {"ISRO": f_isro, "own": np.interp(e, sf.energy_keV, sf.i0)}
    zen, emi, alt, expo = (float(x) for x in (d / "static_par_localmodel.txt").read_text().split("\n")[1:5])
    scale = src.exposure / bkg.exposure
    B, V = bkg.counts * scale, bkg.counts * scale ** 2
    observed = line_centroids(rmf, src.counts - B)
    old = copy.copy(rmf)
    old.matrix = np.zeros_like(rmf.matrix)
    old.matrix[:, 1:] = rmf.matrix[:, :-1]
    amid = 0.5 * (arf.energ_lo + arf.energ_hi)
    by_label = ARF(rmf.energ_lo, rmf.energ_hi, np.interp(rmf.energy_mid, amid[1:], arf.specresp[1:]))
    print("\nISRO test pair 2021-08-27 (16 s), channels 35-155 (0.9-4.2 keV), norm free; chi2 = XSPEC's chi "
          "(data + scaled background variance), C = Cash")
    print(f"  response notes: {'; '.join(rmf.notes)}")
    print("  data line centroids (keV): " + ", ".join(f"{k} {v:.4f}" for k, v in observed.items()))
    print(f"  X2ABUNDANCE's empirical scale / our geometric one: "
          f"{(12.5 ** 2 * (round(expo / 8) + 1)) / (expo * alt ** 2) / np.cos(np.deg2rad(zen)) / DEFAULT_SOLID_ANGLE_SR:.3f}")
    head = (f"  {'reading':8} {'I0':5} {'gain':22} {'min.':5} {'chi2/dof':>12} {'red':>5} {'C':>6} {'norm':>5} "
            f"{'dAl':>4} {'dSi':>4} {'dCa':>4}  composition (wt%, * = not constrained)")
    print(head)
    rows = [("former", "ISRO", "none", "cstat", old, by_label)]
    for gf in ("none", "spectrum"):
        for sol in ("ISRO", "own"):
            for stat in ("cstat", "chi"):
                rows.append(("XSPEC", sol, gf, stat, rmf, arf))
    for reading, sol, gf, stat, r_m, a_m in rows:
        fm = ForwardModel(r_m, a_m, e, solar[sol], gain_slope=1.0043, gain_offset=0.0316)
        r = invert_spectra(fm, src.counts[None], B, zen, emi, expo, gain_fit=gf, statistic=stat,
                           background_variance=V)
        lm = np.zeros(rmf.n_channels)
        lm[r.fit_channels] = r.model[0] - r.background[0]
        c = line_centroids(rmf, lm)
        gain = (f"{r.gain_slope[0]:.4f}/{r.gain_offset[0]:.4f} keV" if gf == "none" else
                f"{r.gain_slope[0]:.4f}/{r.gain_offset[0]:.4f}+-{r.gain_offset_err[0]:.4f}")
        comp = " ".join(f"{el} {w:.1f}" + ("" if ok else "*") for el, w, ok in
                        zip(ELEMENTS, np.where(r.ok[0], r.wt[0], r.wt_prior[0]), r.ok[0]))
        print(f"  {reading:8} {sol:5} {gain:22} {stat:5} {r.chi2[0]:7.1f}/{r.dof[0]:<4d} {r.chi2[0] / r.dof[0]:5.2f} "
              f"{r.cstat[0]:6.1f} {r.fl_norm[0]:5.2f} " + " ".join(f"{1000 * (c[k] - observed[k]):+4.0f}" for k in c)
              + f"  {comp}" + ("" if r.flag[0] == 0 else f"  [flag {r.flag[0]}: {r.note[0]}]"))
    print("  (dAl, dSi, dCa: model - data line centroid, eV, the same Gaussian fits on both)")


def raw_2048_gain():
    """The gain of the 2048-channel RMF on the brightest raw 8-s flare (2024-01-23, 20 frames
    summed): where the RMF (read XSPEC's way) puts delta lines of Mg, Al, Si, Ca K alpha, where the
    data's lines are (the same Gaussian fits), the gain that maps one onto the other, and the gain an
    inversion fits (I0: ISRO's 2021-08-27 solar model as a stand-in shape, norm free; no XSM data of
    that day is in ../shared/data)."""
    import glob
    from class_qgis_plugin.solar_table import read_solar_table
    day = DATA / "class" / "raw8s" / "20240123"
    if not day.is_dir():
        return
    rmf = read_rmf(DATA / "class" / "response" / "class_rmf_v1_2048ch.rmf")
    arf = read_arf(DATA / "class" / "response" / "class_arf_v1.arf")
    bkg = read_pha(DATA / "class" / "background" / "background_allevents.fits")
    phas = [read_pha(f) for f in sorted(glob.glob(str(day / "*.fits")))]
    expo = sum(p.exposure for p in phas)
    scale = expo / bkg.exposure
    counts = sum(p.counts for p in phas)
    true = {"Al": 1.4866, "Si": 1.7398, "Ca": 3.6917}
    observed = line_centroids(rmf, counts - bkg.counts * scale)
    resp = ForwardModel(rmf, arf, np.arange(0.1, 20, 0.01), np.ones(1990)).response
    folded = {}
    for k, e in true.items():
        row = resp.redistribution(np.array([e]))[0]
        folded[k] = line_centroids(rmf, 1e4 * row + 1.0)[k]
    nominal = np.array([observed[k] - (folded[k] - true[k]) for k in true])
    A = np.vstack([list(true.values()), np.ones(len(true))]).T
    (sl, b), *_ = np.linalg.lstsq(A, nominal, rcond=None)
    print(f"\nRaw 8-s flare 2024-01-23 ({len(phas)} frames, 2048-channel RMF read XSPEC's way): line centroid - true "
          f"energy (eV), data " + ", ".join(f"{k} {1000 * (observed[k] - true[k]):+.0f}" for k in true)
          + "; delta line through the RMF " + ", ".join(f"{k} {1000 * (folded[k] - true[k]):+.0f}" for k in true))
    print(f"  gain implied by the centroids: slope {sl:.4f}, offset {b / sl:.4f} keV (ISRO's for 2021, 1024 channels: "
          f"1.0043, 0.0316)")
    e, f = read_solar_table(next((DATA / "class" / "x2abund_test").glob("modelop_*.txt")))
    inc = float(np.mean([p.header["SOLARANG"] for p in phas]))
    fm = ForwardModel(rmf, arf, e, f)
    r = invert_spectra(fm, counts[None], bkg.counts * scale, inc, 0.0, expo, gain_fit="spectrum",
                       background_variance=bkg.counts * scale ** 2)
    print(f"  gain fitted by the inversion: slope {r.gain_slope[0]:.4f} +- {r.gain_slope_err[0]:.4f}, offset "
          f"{r.gain_offset[0]:.4f} +- {r.gain_offset_err[0]:.4f} keV (flag {r.flag[0]}: {r.note[0]})")


def daily_norms():
    """The fitted fluorescence norm of real CLASS frames whose day an XSM whole-day spectrum covers:
    frames of that day summed, I0 from our fit of the day's average XSM spectrum, gain fitted. The
    norm then measures the flare's flux at the frames' time over the day's mean, not the instrument."""
    import glob
    from class_qgis_plugin.class_l1 import read_class_l1
    from class_qgis_plugin.solarfit import fit_spectrum
    raw, daily = DATA / "class" / "raw8s", DATA / "xsm" / "daily"
    if not raw.is_dir() or not daily.is_dir():
        return
    rmf = read_rmf(DATA / "class" / "response" / "class_rmf_v1_2048ch.rmf")
    arf = read_arf(DATA / "class" / "response" / "class_arf_v1.arf")
    bkg = read_pha(DATA / "class" / "background" / "background_allevents.fits")
    e = np.arange(0.1, 30.0, 0.01)
    print("\nReal CLASS frames of days an XSM whole-day spectrum covers (I0 = fit of the day's average; gain "
          "fitted): fitted fluorescence norm")
    norms = []
    for day in sorted(p.name for p in raw.iterdir()):
        xsm = daily / f"ch2_xsm_{day}_l1.pha"
        files = sorted(glob.glob(str(raw / day / "*.fits")))
        if not xsm.exists() or not files:
            continue
        fr = [read_class_l1(f) for f in files]
        expo = sum(f.exposure for f in fr)
        sf = fit_spectrum(xsm)
        fm = ForwardModel(rmf, arf, e, np.interp(e, sf.energy_keV, sf.i0))
        scale = expo / bkg.exposure
        r = invert_spectra(fm, sum(f.counts for f in fr)[None], bkg.counts * scale,
                           np.mean([f.solar_angle for f in fr]), np.mean([f.emission_angle for f in fr]), expo,
                           gain_fit="spectrum", background_variance=bkg.counts * scale ** 2)
        if r.flag[0] == 0:
            norms.append(r.fl_norm[0])
        print(f"  {day} {len(fr):2d} frames: " + (f"norm {r.fl_norm[0]:7.3f}, reduced statistic {r.red_stat[0]:.2f}"
                                               if r.flag[0] == 0 else f"flag {r.flag[0]} ({r.note[0]})"))
    if norms:
        print(f"  unflagged: norm {min(norms):.2f} to {max(norms):.2f} over {len(norms)} days (the ISRO pair, whose "
              f"XSM spectrum covers exactly its 16 s: 0.31-0.38)")


if __name__ == "__main__":
    main()
