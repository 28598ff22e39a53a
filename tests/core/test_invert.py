"""FP inversion: compositions, solar tables, statistic, round trip through the real CLASS response,
and ISRO's X2ABUNDANCE test pair."""
import csv

import numpy as np
import pytest
from scipy import stats

from conftest import shared_data
from class_qgis_plugin import composition
from class_qgis_plugin.composition import ELEMENTS, HIGHLAND_WT, MARE_WT, LUNAR_RANGE
from class_qgis_plugin.errors import ClassXRFError
from class_qgis_plugin.fpmodel import DEFAULT_SOLID_ANGLE_SR
from class_qgis_plugin.invert import _affine_map, cstat, invert_spectra
from class_qgis_plugin.solar_table import read_solar_table, write_solar_table


def test_reference_compositions_from_the_soil_table():
    path = shared_data("reference", "lunar_soils_element_wt.csv")
    rows = {r["site"]: r for r in csv.DictReader(open(path))}
    for sites, ref in ((("A11", "A12", "A15", "A17", "L16", "L24"), MARE_WT), (("A16", "AFHT_FLM"), HIGHLAND_WT)):
        x = np.array([[float(rows[s][f"{e}_wt%"]) for e in ELEMENTS] for s in sites]).mean(axis=0)
        assert np.allclose(100 * x / x.sum(), ref, atol=1e-6)
    # stoichiometric oxygen of each soil's cations reproduces its O column (within rounding; Mn, K left out)
    for r in rows.values():
        if not r["source"].startswith("Lunar Sourcebook"):
            continue
        cat = np.array([float(r[f"{e}_wt%"]) for e in ELEMENTS[1:]])
        assert composition.oxygen_from_cations(cat) == pytest.approx(float(r["O_wt%"]), abs=0.25)


@pytest.mark.parametrize("oxygen", ["stoichiometric", 45.0])
def test_affine_parameterisation_sums_to_100(oxygen):
    w0, M = _affine_map(oxygen)
    p = np.random.default_rng(3).uniform(0, 10, (20, 6))
    wt = w0[None] + p @ M.T
    assert np.allclose(wt.sum(axis=1), 100.0)
    if oxygen == "stoichiometric":
        assert np.allclose(wt[:, 0], composition.oxygen_from_cations(wt[:, 1:]))
    else:
        assert np.allclose(wt[:, 0], 45.0)


def test_solar_table_round_trip_and_errors(tmp_path):
    e = np.arange(0.1, 2.0, 0.01)
    f = np.exp(-e)
    p = tmp_path / "sun.txt"
    write_solar_table(p, e, f)
    e2, f2 = read_solar_table(p)
    assert np.allclose(e2, e) and np.allclose(f2, f, rtol=1e-9)
    bad = tmp_path / "bad.txt"
    bad.write_text("0.1 0 1\n0.1 0 2\n")
    with pytest.raises(ClassXRFError, match="increasing"):
        read_solar_table(bad)
    with pytest.raises(ClassXRFError, match="not found"):
        read_solar_table(tmp_path / "missing.txt")


def test_cstat_is_twice_the_poisson_deviance():
    rng = np.random.default_rng(0)
    m = rng.uniform(0.1, 20, 200)
    d = rng.poisson(m).astype(float)
    want = 2 * (stats.poisson.logpmf(d, d) - stats.poisson.logpmf(d, m)).sum()
    assert cstat(d, m) == pytest.approx(want, rel=1e-10)


def test_expected_cstat_matches_poisson_draws():
    """E[C] of :func:`fitkernel.cstat_expected` (exact Poisson sums below a mean of 20, an expansion
    above) against the mean C of 40,000 Poisson draws per mean (Kaastra 2017's curve: 0.47 at 0.1,
    1.15 at 1, -> 1 at high counts)."""
    from class_qgis_plugin.fitkernel import cstat_expected
    rng = np.random.default_rng(11)
    for mu in (0.1, 0.5, 1.0, 3.0, 19.0, 21.0, 300.0):
        d = rng.poisson(mu, (40000, 1)).astype(float)
        mc = cstat(d, np.full_like(d, mu)).mean()
        assert cstat_expected(np.array([mu])) == pytest.approx(mc, abs=4 * cstat(d, np.full_like(d, mu)).std() / 200)


@pytest.mark.realdata
def test_faint_correct_fits_are_not_flagged(class_setup):
    """B-class-like 96-s spectra (a tenth of the C-class flux): the model is exact, yet XSPEC's chi per
    degree of freedom is biased high at these counts; the poor-fit flag tests C over its expected
    value instead, which stays near 1, so no correct fit is flagged."""
    fm0, bkg_rate = class_setup
    from class_qgis_plugin.fpmodel import ForwardModel
    resp = fm0.response
    e, f = fm0.solar_table
    fm = ForwardModel(resp.rmf, dict(energ_lo=resp.energ_lo, energ_hi=resp.energ_hi, specresp=resp.area_rows), e,
                      0.1 * f)
    rng = np.random.default_rng(3)
    n = 24
    truth = composition.with_stoichiometric_oxygen(
        (0.5 * (MARE_WT + HIGHLAND_WT))[1:] * rng.normal(1, 0.05, (n, 7)))
    lam = fm.counts(truth / 100, 40.0, 1.0, 96.0) + bkg_rate * 96.0
    r = invert_spectra(fm, rng.poisson(lam).astype(float), bkg_rate * 96.0, 40.0, 1.0, 96.0)
    assert np.all(r.flag == 0), r.note
    assert np.all(np.abs(r.red_stat - 1) < 0.35)
    assert np.median(r.chi2 / r.dof) > np.median(r.red_stat)


@pytest.fixture(scope="module")
def class_setup():
    from class_qgis_plugin.fpmodel import ForwardModel
    from class_qgis_plugin.ogip import read_arf, read_pha, read_rmf
    resp = shared_data("class", "response")
    x2 = shared_data("class", "x2abund_test")
    e, f = read_solar_table(x2 / "modelop_20210827T210316000_20210827T210332000.txt")
    # scale ISRO's 2021-08-27 solar model to a C2 flare: 2e-6 W m^-2 in 1-8 Angstrom (1.55-12.4 keV)
    band = (e >= 1.55) & (e <= 12.4)
    goes = (e[band] * f[band] * 0.01).sum() * 1.602176634e-9 * 1e-3
    fm = ForwardModel(read_rmf(resp / "class_rmf_v1_2048ch.rmf"), read_arf(resp / "class_arf_v1.arf"), e,
                      f * 2e-6 / goes)
    fm.solar_table = (e, f * 2e-6 / goes)
    bkg = read_pha(shared_data("class", "background", "background_allevents.fits"))
    return fm, bkg.counts / bkg.exposure


@pytest.mark.parametrize("fit_norm", [True, False])
def test_round_trip_c_class_96s(class_setup, fit_norm):
    fm, bkg_rate = class_setup
    rng = np.random.default_rng(2024)
    n = 24
    fmix = rng.uniform(0, 1, n)
    cations = (fmix[:, None] * MARE_WT[1:] + (1 - fmix[:, None]) * HIGHLAND_WT[1:]) * rng.normal(1, 0.08, (n, 7))
    truth = composition.with_stoichiometric_oxygen(cations)
    inc = rng.uniform(10, 60, n)
    emi = rng.uniform(0, 3, n)
    expo = 96.0
    lam = fm.counts(truth / 100, inc, emi, expo)
    bkg = bkg_rate * expo
    data = rng.poisson(lam + bkg).astype(float)
    r = invert_spectra(fm, data, bkg, inc, emi, expo, fit_norm=fit_norm)
    assert r.converged.all() and np.all(r.flag == 0)
    # unconstrained elements are NaN, their prior-dominated values kept apart; together they close
    assert np.all(np.isnan(r.wt[~r.ok])) and np.all(np.isfinite(r.wt_prior[~r.ok]))
    assert np.all(np.isnan(r.wt_prior[r.ok]))
    full = np.where(r.ok, r.wt, r.wt_prior)
    assert np.allclose(full.sum(axis=1), 100.0)
    assert np.all(full >= -1e-9)
    d = full - truth
    med = {el: np.median(np.abs(d[:, k])) for k, el in enumerate(ELEMENTS)}
    for el in ("Mg", "Al", "Si"):
        assert med[el] <= 1.0, med
    for el in ("Ca", "Fe"):
        assert med[el] <= 2.0, med
    # errors calibrated: about 68 % of the constrained truths within 1 sigma
    ok = r.ok
    inside = np.abs(d)[ok] <= r.err[ok]
    assert 0.55 <= inside.mean() <= 0.85, inside.mean()
    # Mg, Al, Si are always constrained by a C-class flare; unconstrained ones have NaN errors
    for el in ("Mg", "Al", "Si"):
        assert r.ok[:, ELEMENTS.index(el)].all()
    assert np.all(np.isnan(r.err[~r.ok])) and np.all(np.isfinite(r.err[r.ok]))
    # XSPEC's chi (data variance) of a good Poisson fit: about 1 per degree of freedom
    assert np.all(np.abs(r.chi2 / r.dof - 1) < 0.5)
    assert np.allclose(np.median(r.scat_norm), 1.0, atol=0.2)
    c = r.corr[0]
    okk = r.ok[0]
    assert np.allclose(np.diag(c)[okk], 1.0) and np.allclose(c[np.ix_(okk, okk)], c[np.ix_(okk, okk)].T)


@pytest.fixture(scope="module")
def isro_pair():
    """ISRO's X2ABUNDANCE test pair: the 16-s flare spectrum of 2021-08-27 with its 1024-channel
    RMF/ARF and the 1780-s night-side background, geometry from ISRO's static_par_localmodel.txt,
    ISRO's solar model and our own fit of the XSM spectrum of the same 16 s."""
    from class_qgis_plugin.ogip import read_arf, read_pha, read_rmf
    from class_qgis_plugin.solarfit import fit_spectrum
    d = shared_data("class", "x2abund_test")
    flare = shared_data("xsm", "windows", "ch2_xsm_20210827_l1.pha")
    lines = (d / "static_par_localmodel.txt").read_text().split("\n")
    zen, emi, alt, expo = (float(x) for x in lines[1:5])
    src = read_pha(d / "ch2_cla_l1_20210827T210316000_20210827T210332000_1024.fits")
    bkg = read_pha(d / "ch2_cla_l1_20210826T220355000_20210826T223335000_1024.fits")
    assert zen == pytest.approx(float(src.header["SOLARANG"])) and expo == pytest.approx(src.exposure)
    assert alt == pytest.approx(float(src.header["SAT_ALT"])) and emi < 1e-3
    e, f_isro = read_solar_table(d / "modelop_20210827T210316000_20210827T210332000.txt")
    sf = fit_spectrum(flare)
    scale = (src.exposure * src.backscal) / (bkg.exposure * bkg.backscal)
    return dict(src=src, rmf=read_rmf(d / "class_rmf_v1.rmf"), arf=read_arf(d / "class_arf_v1.arf"), e=e,
                isro=f_isro, own=np.interp(e, sf.energy_keV, sf.i0), B=bkg.counts * scale,
                V=bkg.counts * scale ** 2, zen=zen, emi=emi, alt=alt, expo=expo)


def _line_centroids(rmf, y):
    from class_qgis_plugin.evaluate import line_centroids
    return line_centroids(rmf.e_min, rmf.e_max, y)


def _isro_fit(pair, solar, **kw):
    from class_qgis_plugin.fpmodel import ForwardModel
    rmf = kw.pop("rmf", pair["rmf"])
    fm = ForwardModel(rmf, kw.pop("arf", pair["arf"]), pair["e"], pair[solar], gain_slope=1.0043, gain_offset=0.0316)
    r = invert_spectra(fm, pair["src"].counts[None], pair["B"], pair["zen"], pair["emi"], pair["expo"],
                       background_variance=pair["V"], **kw)
    line_model = np.zeros(rmf.n_channels)
    line_model[r.fit_channels] = r.model[0] - r.background[0]
    return r, _line_centroids(rmf, line_model)


@pytest.mark.realdata
def test_isro_pair_fitted_as_xspec_fits_it(isro_pair):
    """The ISRO pair read with XSPEC's OGIP conventions (RMF channels from TLMIN of F_CHAN, 1 when
    absent; ARF paired by row; effective area at the true energy under a gain), ISRO's frozen gain
    (1.0043, 0.0316 keV) and solar model, channels 35-155 (0.9-4.2 keV): XSPEC's chi per degree of
    freedom <= 1.75 (X2ABUNDANCE with XSPEC reaches < 1.5 there), line centroids of the model within
    10 eV of the data's (measured by the same Gaussian fits on both); the former reading (F_CHAN
    counted from 0, ARF matched by its energy labels) is reproduced and is far worse (chi2 ~ 496, lines
    ~30 eV high: what issue 12 measured)."""
    import copy
    from class_qgis_plugin.ogip import ARF
    pair = isro_pair
    rmf = pair["rmf"]
    assert rmf.first_channel == 1 and any("TLMIN" in n for n in rmf.notes)
    observed = _line_centroids(rmf, pair["src"].counts - pair["B"])
    assert observed["Al"] == pytest.approx(1.4776, abs=0.003) and observed["Si"] == pytest.approx(1.7347, abs=0.002)
    for statistic in ("cstat", "chi"):
        r, model = _isro_fit(pair, "isro", statistic=statistic)
        # 0.9-4.2 keV by the nominal EBOUNDS: rows 34..154 of the spectrum, XSPEC's channels 35-155
        assert np.array_equal(np.flatnonzero(r.fit_channels), np.arange(34, 155))
        assert r.flag[0] == 0 and r.converged[0] and r.dof[0] == 113, r.note[0]
        assert r.chi2[0] / r.dof[0] <= 1.75, (statistic, r.chi2[0])
        for line in ("Al", "Si", "Ca"):
            assert abs(model[line] - observed[line]) <= 0.010, (statistic, line, model[line], observed[line])
    # the former reading: matrix one channel higher, ARF by its labels
    old = copy.copy(rmf)
    old.matrix = np.zeros_like(rmf.matrix)
    old.matrix[:, 1:] = rmf.matrix[:, :-1]
    a = pair["arf"]
    amid = 0.5 * (a.energ_lo + a.energ_hi)
    by_label = ARF(rmf.energ_lo, rmf.energ_hi, np.interp(rmf.energy_mid, amid[1:], a.specresp[1:]))
    r_old, model_old = _isro_fit(pair, "isro", rmf=old, arf=by_label)
    assert r_old.chi2[0] > 2.5 * r.chi2[0] and r_old.chi2[0] / r_old.dof[0] > 4
    assert all(model_old[k] - observed[k] > 0.015 for k in ("Al", "Si", "Ca"))


@pytest.mark.realdata
def test_isro_pair_fitted_gain_and_own_solar_fit(isro_pair):
    """XSPEC's ``gain fit`` on the ISRO pair with our own fit of the XSM spectrum of the same 16 s as
    I0: minimising XSPEC's chi as XSPEC does, chi per degree of freedom <= 1.55; the Poisson fit
    (the default) reported beside it stays close (<= 1.6). The fitted gain is inside its bounds and
    its error finite; a gain shared by all spectra of a one-spectrum run is that spectrum's gain; the
    lines sit within 10 eV of the data's; Mg, Al, Si and Ca are constrained and inside the lunar
    ranges; the fitted fluorescence norm agrees with X2ABUNDANCE's own geometry factor."""
    pair = isro_pair
    observed = _line_centroids(pair["rmf"], pair["src"].counts - pair["B"])
    r_chi, model = _isro_fit(pair, "own", gain_fit="spectrum", statistic="chi")
    r_c, _ = _isro_fit(pair, "own", gain_fit="spectrum")
    r_sh, _ = _isro_fit(pair, "own", gain_fit="shared")
    for r in (r_chi, r_c, r_sh):
        assert r.flag[0] == 0 and r.dof[0] == 111, r.note[0]
        assert 0.95 < r.gain_slope[0] < 1.05 and -0.1 < r.gain_offset[0] < 0.1
        assert 0 < r.gain_slope_err[0] < 0.02 and 0 < r.gain_offset_err[0] < 0.03
    assert r_chi.chi2[0] / r_chi.dof[0] <= 1.55
    assert r_c.chi2[0] / r_c.dof[0] <= 1.6
    assert r_sh.gain_slope[0] == pytest.approx(r_c.gain_slope[0], abs=0.3 * r_c.gain_slope_err[0])
    assert r_sh.gain_offset[0] == pytest.approx(r_c.gain_offset[0], abs=0.3 * r_c.gain_offset_err[0])
    assert r_c.cstat[0] < _isro_fit(pair, "own")[0].cstat[0] - 5        # the gain fit is a real improvement
    for line in ("Al", "Si", "Ca"):
        assert abs(model[line] - observed[line]) <= 0.010, (line, model[line], observed[line])
    for r in (r_chi, r_c):
        for el in ("Mg", "Al", "Si", "Ca"):
            k = ELEMENTS.index(el)
            lo, hi = LUNAR_RANGE[el]
            assert r.ok[0, k] and lo <= r.wt[0, k] <= hi, (el, r.wt[0])
    # X2ABUNDANCE's scale (xrf_localmodel: 12.5 km x 12.5 km x (round(T/8)+1) / (4 pi h^2 T), times the
    # 1/cos(i) of its xrf_comp) relative to ours (Omega_eff / 4 pi): the fitted norm is of that size
    expo, alt, zen = pair["expo"], pair["alt"], pair["zen"]
    x2 = (12.5 * 12.5 * (round(expo / 8.0) + 1)) / (expo * alt ** 2) / np.cos(np.deg2rad(zen))
    assert 1 / 1.5 < r_c.fl_norm[0] / (x2 / DEFAULT_SOLID_ANGLE_SR) < 1.5


def _flag_case_setup():
    """A small synthetic setting (real CLASS response, a C-class solar spectrum) for the failure cases."""
    from class_qgis_plugin.fpmodel import ForwardModel
    from class_qgis_plugin.ogip import read_arf, read_pha, read_rmf
    resp = shared_data("class", "response")
    e = np.arange(0.1, 20.0, 0.01)
    flux = 3e7 * np.exp(-e / 1.0) / e
    rmf, arf = read_rmf(resp / "class_rmf_v1_2048ch.rmf"), read_arf(resp / "class_arf_v1.arf")
    bkg = read_pha(shared_data("class", "background", "background_allevents.fits"))
    return rmf, arf, e, flux, bkg.counts / bkg.exposure * 96.0, ForwardModel


@pytest.mark.realdata
def test_failed_fits_are_flagged_with_a_reason_and_null_elements():
    """Each failure case of issue 12 gets its flag, a reason in words, and NaN (NULL) elements, while
    a good spectrum of the same batch is inverted: no net counts (a zero-count spectrum used to come
    back converged with Fe 37 wt%), a zero solar spectrum, a response that does not cover the fit
    range, a reduced statistic far above 1, a fit that did not converge, a bad row."""
    rmf, arf, e, flux, bkg, ForwardModel = _flag_case_setup()
    truth = composition.with_stoichiometric_oxygen(0.5 * (MARE_WT + HIGHLAND_WT)[1:])
    fm = ForwardModel(rmf, arf, e, np.stack([flux] * 5 + [0 * flux]))
    lam = fm.counts(np.tile(truth / 100, (6, 1)), 30.0, 2.0, 96.0) + bkg
    rng = np.random.default_rng(5)
    d = rng.poisson(lam).astype(float)
    d[1] = 0.0                                   # no counts at all
    d[2] = rng.poisson(bkg)                      # background only: no net counts
    d[3] = rng.poisson(lam[3] * np.where(np.arange(lam.shape[1]) % 2, 0.4, 1.6))   # not this model
    inc = np.array([30.0, 30.0, 30.0, 30.0, 95.0, 30.0])  # row 4: incidence angle beyond the horizon
    r = invert_spectra(fm, d, bkg, inc, 2.0, 96.0)
    assert r.flag[0] == 0 and np.isfinite(r.wt[0, ELEMENTS.index("Al")]) and r.note[0].startswith("ok")
    want = {1: (4, "no net counts"), 2: (4, "no net counts"), 3: (7, "poor fit: C / expected C"), 4: (1, "incidence"),
            5: (2, "solar spectrum")}
    for row, (code, text) in want.items():
        assert r.flag[row] == code and text in r.note[row], (row, r.flag[row], r.note[row])
        assert np.all(np.isnan(r.wt[row])) and np.all(np.isnan(r.err[row])) and not r.ok[row].any()
        assert np.all(np.isnan(r.wt_prior[row]))
    # a good Poisson fit scores C / E[C] about 1; the mismodelled spectrum far above 2
    assert 0.7 < r.red_stat[0] < 1.3 and r.red_stat[3] > 2
    cols = r.columns()
    assert cols["fit_flag"].tolist() == [0, 4, 4, 7, 1, 2] and cols["fit_note"][3] == r.note[3]
    assert np.isnan(cols["Fe"][1]) and cols["Fe_ok"][1] == 0
    # a response that does not cover the range: every row flagged, nothing fitted
    fm1 = ForwardModel(rmf, arf, e, flux)
    r2 = invert_spectra(fm1, d[:1], bkg, 30.0, 2.0, 96.0, e_range=(25.0, 40.0))
    assert r2.flag[0] == 3 and "response" in r2.note[0] and np.all(np.isnan(r2.wt[0]))
    # a fit stopped before it converged
    r3 = invert_spectra(fm1, d[:1], bkg, 30.0, 2.0, 96.0, max_iter=1)
    assert r3.flag[0] == 5 and "converge" in r3.note[0] and np.all(np.isnan(r3.wt[0]))


def test_a_start_that_never_moves_is_flagged(monkeypatch):
    """The kernel counts accepted steps: with a Jacobian of the wrong sign every step goes uphill and
    is refused, the parameters stay at their start and ``n_accepted`` is 0 (with the right sign the
    straight line is found). In the inversion such a row is flagged 6 with NULL elements."""
    from class_qgis_plugin import invert as inv
    from class_qgis_plugin.fitkernel import batched_lm
    x = np.arange(10.0)

    def line(P, rows, jac, sign=1.0):
        m = P[:, :1] + P[:, 1:2] * x[None]
        return m, sign * np.stack([np.ones_like(m), np.broadcast_to(x, m.shape)], axis=2)
    d = np.array([1.0 + 2.0 * x])
    st = batched_lm(lambda P, r, j: line(P, r, j, -1.0), np.array([[3.0, 1.0]]), d, [0, 0], [100, 100])
    assert st.n_accepted[0] == 0 and np.allclose(st.P, [[3.0, 1.0]])
    good = batched_lm(line, np.array([[3.0, 1.0]]), d, [0, 0], [100, 100], tol=1e-8)
    assert good.n_accepted[0] > 0 and np.allclose(good.P, [[1.0, 2.0]], atol=1e-3)

    rmf, arf, e, flux, bkg, ForwardModel = _flag_case_setup()
    fm = ForwardModel(rmf, arf, e, flux)
    truth = composition.with_stoichiometric_oxygen(0.5 * (MARE_WT + HIGHLAND_WT)[1:])
    d = np.random.default_rng(1).poisson(fm.counts(truth[None] / 100, 30.0, 2.0, 96.0)[0] + bkg)[None]
    call = inv._Model.__call__
    monkeypatch.setattr(inv._Model, "__call__", lambda self, P, rows, jac: (
        lambda m, J: (m, None if J is None else -J))(*call(self, P, rows, jac)))
    r = invert_spectra(fm, d, bkg, 30.0, 2.0, 96.0)
    assert r.flag[0] == 6 and "never moved" in r.note[0] and np.all(np.isnan(r.wt[0]))


def test_invert_observations_reads_the_layer_columns_and_plots(tmp_path):
    """A two-spectrum observation layer built from ISRO's test spectrum, with the columns the invert
    stage reads (obslayer.NEEDS)."""
    from shapely.geometry import box
    from class_qgis_plugin import geo, obslayer
    from class_qgis_plugin.invert import invert_observations
    d = shared_data("class", "x2abund_test")
    src = str(d / "ch2_cla_l1_20210827T210316000_20210827T210332000_1024.fits")
    layer = tmp_path / "obs.gpkg"
    geo.write_vector(layer, [box(0, 0, 1, 1), box(1, 0, 2, 1)],
                     dict(obs_id=np.array([1, 2]), pha_path=[src, src], solar_ang=np.array([64.55, 64.55]),
                          emis_ang=np.array([0.0, 0.0]), exposure=np.array([16.0, 16.0]),
                          solar_file=[str(d / "modelop_20210827T210316000_20210827T210332000.txt")] * 2))
    _, attrs = obslayer.read(layer, "invert")
    cols, res = invert_observations(attrs, rmf=d / "class_rmf_v1.rmf", arf=d / "class_arf_v1.arf",
                                    background=d / "ch2_cla_l1_20210826T220355000_20210826T223335000_1024.fits",
                                    gain_slope=1.0043, gain_offset=0.0316, plot_dir=tmp_path / "plots")
    assert any("paired with the RMF by row" in n for n in res.notes)
    for el in ELEMENTS:
        assert cols[el].shape == (2,) and set(np.unique(cols[f"{el}_ok"])) <= {0, 1}
        unc = cols[f"{el}_ok"] == 0
        assert np.all(np.isnan(cols[f"{el}_err"][unc])) and np.all(np.isnan(cols[el][unc]))
    assert cols["Fe_ok"].tolist() == [0, 0] and np.all(np.isfinite(cols["Fe_prior"]))
    for c in ("chi2", "dof", "cstat", "converged", "n_iter", "scat_norm", "fl_norm", "gain_slope", "gain_off",
              "fit_flag", "fit_note"):
        assert c in cols
    assert cols["fit_flag"].tolist() == [0, 0] and cols["gain_slope"].tolist() == [1.0043, 1.0043]
    # chi2 is XSPEC's chi: data variance plus the scaled background's variance (by hand)
    bk = res.background[0] * 16.0 / 1780.0             # variance of the scaled background counts
    by_hand = ((res.data[0] - res.model[0]) ** 2 / (res.data[0] + bk)).sum()
    assert cols["chi2"][0] == pytest.approx(by_hand, rel=1e-9)
    # unconstrained values are written as NULL
    out = tmp_path / "abund.gpkg"
    geo.write_vector(out, [box(0, 0, 1, 1), box(1, 0, 2, 1)], cols)
    back = geo.read_vector(out)[1]
    assert np.all(np.isnan(back["Fe"])) and back["fit_note"][0].startswith("ok")
    assert np.allclose(cols["Si"][0], cols["Si"][1])
    assert all(len(k) <= 10 for k in cols)
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert pngs == ["fit_1.png", "fit_2.png"]
    geo.write_vector(tmp_path / "bad.gpkg", [box(0, 0, 1, 1)], dict(obs_id=np.array([1])))
    with pytest.raises(ClassXRFError, match=r"bad.gpkg: pha_path: column that invert needs missing.*written by the coadd"):
        obslayer.read(tmp_path / "bad.gpkg", "invert")


@pytest.mark.realdata
def test_cli_invert_runs_the_stage_with_a_fitted_gain(tmp_path, capsys):
    """``cli invert`` runs the same stage as the algorithm (tasks.run("invert")): a shared gain fit on two
    copies of ISRO's spectrum, the response notes and the fit count printed, exit status 0; the
    layer's style element is one the fits constrain (not Fe); a missing RMF is a one-line error and
    exit status 2."""
    from shapely.geometry import box
    from class_qgis_plugin import cli, geo, tasks
    d = shared_data("class", "x2abund_test")
    src = str(d / "ch2_cla_l1_20210827T210316000_20210827T210332000_1024.fits")
    layer = tmp_path / "obs.gpkg"
    geo.write_vector(layer, [box(0, 0, 1, 1), box(1, 0, 2, 1)],
                     dict(obs_id=np.array([1, 2]), pha_path=[src, src], solar_ang=np.array([64.55, 64.55]),
                          emis_ang=np.array([0.0, 0.0]), exposure=np.array([16.0, 16.0])))
    args = ["invert", str(layer), str(tmp_path / "abund.gpkg"), "--rmf", str(d / "class_rmf_v1.rmf"),
            "--arf", str(d / "class_arf_v1.arf"), "--background",
            str(d / "ch2_cla_l1_20210826T220355000_20210826T223335000_1024.fits"),
            "--solar", str(d / "modelop_20210827T210316000_20210827T210332000.txt"), "--gain-slope", "1.0043",
            "--gain-offset", "0.0316", "--gain-fit", "shared"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "2 fitted" in out and "TLMIN" in out and "paired with the RMF by row" in out
    a = geo.read_vector(tmp_path / "abund.gpkg")[1]
    assert a["gain_slope"][0] == a["gain_slope"][1] != 1.0043 and np.all(a["fit_flag"] == 0)
    summary = tasks.run("invert", layer=str(layer), out_layer=str(tmp_path / "abund2.gpkg"),
                        rmf=str(d / "class_rmf_v1.rmf"), arf=str(d / "class_arf_v1.arf"),
                        background=str(d / "ch2_cla_l1_20210826T220355000_20210826T223335000_1024.fits"),
                        solar=str(d / "modelop_20210827T210316000_20210827T210332000.txt"),
                        gain_slope=1.0043, gain_offset=0.0316)
    assert summary["best_element"] in ("Al", "Mg", "Si", "Ca") and summary["constrained"]["Fe"] == 0
    bad = args[:4] + [str(tmp_path / "missing.rmf")] + args[5:]
    assert cli.main(bad) == 2
    err = capsys.readouterr().err
    assert "missing.rmf" in err and "Traceback" not in err


@pytest.mark.realdata
def test_bad_rows_are_flagged_by_obs_id_and_a_cancel_leaves_nothing(tmp_path):
    """Rows whose spectrum is missing or whose pha_path is empty, and a row with an emission angle of
    95 deg, are flagged and named by their obs_id; the good rows are inverted. Cancelled while
    reading or while writing the fit plots, the invert stage leaves neither the layer nor any plot."""
    from shapely.geometry import box
    from class_qgis_plugin import geo, tasks
    from class_qgis_plugin.errors import Cancelled
    from class_qgis_plugin.progress import Progress
    d = shared_data("class", "x2abund_test")
    src = str(d / "ch2_cla_l1_20210827T210316000_20210827T210332000_1024.fits")
    layer = tmp_path / "obs.gpkg"
    geo.write_vector(layer, [box(k, 0, k + 1, 1) for k in range(5)],
                     dict(obs_id=np.array([11, 12, 13, 14, 15]),
                          pha_path=[src, str(tmp_path / "gone.fits"), "", src, src],
                          solar_ang=np.full(5, 64.55), emis_ang=np.array([0.0, 0.0, 0.0, 95.0, 0.0]),
                          exposure=np.full(5, 16.0)))
    kw = dict(rmf=str(d / "class_rmf_v1.rmf"), arf=str(d / "class_arf_v1.arf"),
              background=str(d / "ch2_cla_l1_20210826T220355000_20210826T223335000_1024.fits"),
              solar=str(d / "modelop_20210827T210316000_20210827T210332000.txt"), gain_slope=1.0043,
              gain_offset=0.0316)
    summary = tasks.run("invert", layer=str(layer), out_layer=str(tmp_path / "abund.gpkg"), **kw)
    a = geo.read_vector(tmp_path / "abund.gpkg")[1]
    assert a["fit_flag"].tolist() == [0, 1, 1, 1, 0] and summary["n_fitted"] == 2
    assert "obs_id 12" in a["fit_note"][1] and "gone.fits" in a["fit_note"][1] and "not found" in a["fit_note"][1]
    assert "obs_id 13" in a["fit_note"][2] and "pha_path is empty" in a["fit_note"][2]
    assert "emission angle" in a["fit_note"][3] and np.isnan(a["Al"][3]) and np.isfinite(a["Al"][0])

    class CancelAt(Progress):
        def __init__(self, text):
            self.text, self.msg = text, ""

        def set(self, fraction, message=None):
            self.msg = message or self.msg

        @property
        def cancelled(self):
            return self.text in self.msg
    for phase in ("reading spectra", "fit plot 2"):
        out = tmp_path / f"cancel_{phase[:4]}"
        out.mkdir()
        with pytest.raises(Cancelled):
            tasks.run("invert", dict(layer=str(layer), out_layer=str(out / "abund.gpkg"), plot_dir=str(out / "plots"),
                                     **kw), progress=CancelAt(phase))
        assert sorted(p.name for p in out.rglob("*")) in ([], ["plots"]), list(out.rglob("*"))


def test_observations_stream_through_in_blocks_with_the_same_results(tmp_path):
    """Five rows (ISRO's spectrum at several angles, one unreadable file) inverted in blocks of two
    give the columns, notes and model counts of one block: flags, notes and iterations exactly, values
    to rounding (each spectrum is fitted alone; matrix products of other batch sizes round
    differently, 1e-12 here; only a shared gain needs all spectra together)."""
    from class_qgis_plugin.invert import invert_observations
    d = shared_data("class", "x2abund_test")
    src = str(d / "ch2_cla_l1_20210827T210316000_20210827T210332000_1024.fits")
    attrs = dict(obs_id=np.arange(1, 6), pha_path=np.array([src, src, str(tmp_path / "missing.pha"), src, src]),
                 solar_ang=np.array([64.55, 50.0, 40.0, 30.0, 64.55]), emis_ang=np.zeros(5),
                 exposure=np.full(5, 16.0),
                 solar_file=np.array([str(d / "modelop_20210827T210316000_20210827T210332000.txt")] * 5))
    kw = dict(rmf=d / "class_rmf_v1.rmf", arf=d / "class_arf_v1.arf",
              background=d / "ch2_cla_l1_20210826T220355000_20210826T223335000_1024.fits",
              gain_slope=1.0043, gain_offset=0.0316)
    c1, r1 = invert_observations(attrs, block=None, **kw)
    c2, r2 = invert_observations(attrs, block=2, **kw)
    assert sorted(c1) == sorted(c2) and r1.notes == r2.notes and r1.note == r2.note
    for k in c1:
        a, b = np.asarray(c1[k]), np.asarray(c2[k])
        assert a.dtype == b.dtype, k
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=k)
        else:
            assert np.array_equal(a, b), k
    np.testing.assert_allclose(r1.model, r2.model, rtol=1e-9)
    assert c1["fit_flag"][2] == 1 and "missing.pha" in c1["fit_note"][2]


@pytest.mark.parametrize("gain_fit", ["none", "shared"])
def test_chunks_in_worker_processes_give_the_results_of_threads(class_setup, monkeypatch, gain_fit):
    """24 C-class spectra in chunks of 8, fitted in forked worker processes and in threads: the
    same numbers to rounding (each chunk is computed alone; the processes inherit the batch as it is)."""
    from class_qgis_plugin import parallel
    if not parallel.can_fork():
        pytest.skip("worker processes are forked on Linux only")
    fm, bkg_rate = class_setup
    rng = np.random.default_rng(5)
    n = 24
    truth = composition.with_stoichiometric_oxygen(
        (0.5 * (MARE_WT + HIGHLAND_WT))[1:] * rng.normal(1, 0.08, (n, 7)))
    inc, emi = rng.uniform(10, 60, n), rng.uniform(0, 3, n)
    data = rng.poisson(fm.counts(truth / 100, inc, emi, 96.0) + bkg_rate * 96.0).astype(float)
    kw = dict(chunk=8, gain_fit=gain_fit)
    r_proc = invert_spectra(fm, data, bkg_rate * 96.0, inc, emi, 96.0, **kw)
    monkeypatch.setenv("CLASSXRF_PROCESSES", "0")
    r_thr = invert_spectra(fm, data, bkg_rate * 96.0, inc, emi, 96.0, **kw)
    for name in ("flag", "n_iter", "converged"):
        np.testing.assert_array_equal(getattr(r_proc, name), getattr(r_thr, name), err_msg=name)
    for name in ("wt", "err", "red_stat"):
        np.testing.assert_allclose(getattr(r_proc, name), getattr(r_thr, name), rtol=1e-9, err_msg=name)
    assert r_proc.note == r_thr.note
    assert np.all(r_proc.flag == 0)
