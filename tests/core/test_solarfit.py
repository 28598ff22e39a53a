"""Solar fit: simulated spectra of known temperature, ISRO's test flare, observation windows."""
import glob
import json
import os

import numpy as np
import pytest
from astropy.io import fits
from conftest import shared_data

from class_qgis_plugin import solar as S
from class_qgis_plugin.errors import ClassXRFError
from class_qgis_plugin.solar_table import read_solar_table
from class_qgis_plugin.solarfit import fit_observations, fit_spectra, fit_spectrum
from class_qgis_plugin.xsm import XSMResponse, XSMSpectrum, approximate_rmf, met_to_utc

FLARE = ("xsm", "windows", "ch2_xsm_20210827_l1.pha")


def _synthetic_response():
    lo = np.round(np.arange(0.1, 30.1, 0.01), 5)
    hi = lo + 0.01
    mid = 0.5 * (lo + hi)
    # an XSM-like effective area: Be window cut-off below 2 keV, Si depth loss above 10 keV
    area = 0.0027 * (1 - np.exp(-(mid / 1.3) ** 3)) * np.exp(-(mid / 25.0) ** 2)
    return XSMResponse(rmf=approximate_rmf(lo, hi), specresp=area, kind="approximate",
                       description="synthetic")


def _truth(model):
    th = np.full(model.n_params, -40.0)
    th[0] = np.log(1e48 / S.EM_UNIT)
    th[1] = np.log(12.0)
    th[3] = 3.0
    fl = {"Mg XI": 3e5, "Mg XII": 2e5, "Si XIII": 3e5, "Si XIV": 1e5, "S XV": 4e4, "S XVI": 1e4,
          "Ar XVII": 5e3, "Ca XIX": 8e3, "Ca XX": 5e2, "Fe XXV": 6e3, "Fe XXVI": 2e2}
    for i, c in enumerate(model.complexes):
        th[4 + i] = np.log(fl[c])
    return th


def test_recovers_temperature_of_simulated_spectra():
    resp = _synthetic_response()
    model = S.SolarModel(resp.energ_lo, resp.energ_hi)
    th = _truth(model)
    mu = resp.fold(model.evaluate(th), 16.0)
    rng = np.random.default_rng(42)
    spectra = [XSMSpectrum(counts=rng.poisson(mu).astype(float), channel=np.arange(512),
                           exposure=16.0, tstart=0.0, tstop=16.0) for _ in range(8)]
    res = fit_spectra(spectra, [resp] * 8)
    T = np.array([r.T_MK for r in res])
    sT = np.array([r.T_err for r in res])
    pulls = (T - 12.0) / sT
    assert all(r.converged for r in res)
    assert np.all(np.isfinite(sT)) and np.all(sT > 0)
    assert np.all(np.abs(pulls) < 3.0)
    # errors are calibrated: the scatter of the fits is about the quoted error
    assert 0.4 < np.std(T) / np.mean(sT) < 2.0
    assert np.mean(T) == pytest.approx(12.0, rel=0.05)
    # C-stat per degree of freedom near 1 for a correct model
    assert all(0.6 < r.cstat / r.dof < 1.5 for r in res)
    # the I0 is the input spectrum, within 10% over the band where the data constrain it
    out_lo, out_hi = S.energy_grid()
    truth = S.SolarModel(out_lo, out_hi).evaluate(th)
    cont = (out_lo > 1.5) & (out_lo < 6.0)
    from scipy.ndimage import gaussian_filter1d
    r0 = gaussian_filter1d(res[0].i0, 5)[cont] / gaussian_filter1d(truth, 5)[cont]
    assert np.all(np.abs(r0 - 1) < 0.15)


def test_chunks_in_worker_processes_give_the_results_of_threads(monkeypatch):
    """8 simulated spectra in chunks of 2, fitted in forked worker processes and in threads: the
    same numbers (each chunk is fitted alone), and the same as all 8 in one batch (no spectrum's
    start depends on another's)."""
    from class_qgis_plugin import parallel, solarfit
    if not parallel.can_fork():
        pytest.skip("worker processes are forked on Linux only")
    resp = _synthetic_response()
    model = S.SolarModel(resp.energ_lo, resp.energ_hi)
    mu = resp.fold(model.evaluate(_truth(model)), 16.0)
    rng = np.random.default_rng(8)
    spectra = [XSMSpectrum(counts=rng.poisson(mu * f).astype(float), channel=np.arange(512), exposure=16.0,
                           tstart=16.0 * k, tstop=16.0 * (k + 1)) for k, f in enumerate(np.linspace(0.5, 2, 8))]
    monkeypatch.setattr(solarfit, "CHUNK", 2)
    a = fit_spectra(spectra, [resp] * 8)
    monkeypatch.setenv("CLASSXRF_PROCESSES", "0")
    b = fit_spectra(spectra, [resp] * 8)
    monkeypatch.setattr(solarfit, "CHUNK", 64)
    one = fit_spectra(spectra, [resp] * 8)
    # processes and threads to rounding (the errors' pseudo-inverse rounds by memory layout); other
    # batch sizes round differently along the way, within the fit's tolerance
    for other, rtol in ((b, 1e-9), (one, 1e-6)):
        for x, y in zip(a, other):
            assert (x.dof, x.converged) == (y.dof, y.converged)
            np.testing.assert_allclose([x.T_MK, x.T_err, x.EM, x.cstat], [y.T_MK, y.T_err, y.EM, y.cstat], rtol=rtol)
            np.testing.assert_allclose(x.i0, y.i0, rtol=rtol)
    assert [x.tstart for x in a] == [16.0 * k for k in range(8)]


def test_channel_mismatch_is_an_error():
    resp = _synthetic_response()
    s = XSMSpectrum(counts=np.ones(256), channel=np.arange(256), exposure=16.0, tstart=0, tstop=16)
    with pytest.raises(ClassXRFError, match="256 channels"):
        fit_spectra([s], [resp])


def _flare_fit():
    return fit_spectrum(shared_data(*FLARE))


@pytest.fixture(scope="module")
def flare():
    return _flare_fit()


def _isro():
    path = glob.glob(str(shared_data("class", "x2abund_test") / "modelop_*.txt"))[0]
    return read_solar_table(path)


def _smooth(x, fwhm_keV=0.15):
    from scipy.ndimage import gaussian_filter1d
    return gaussian_filter1d(x, fwhm_keV / 2.3548 / 0.01)


def test_flare_fit_basics(flare):
    r = flare
    assert r.converged and r.response_kind == "approximate"
    assert 8 < r.T_MK < 20 and r.T_err < 0.2 * r.T_MK
    assert r.cstat / r.dof < 3.0
    assert r.goes_class[0] in "CM"      # ISRO's test flare of 2021-08-27 21:03 is a C-class event
    E, f = _isro()
    assert np.allclose(E, r.energy_keV, atol=1e-6)  # same 0.01 keV grid, lower-edge labels


def test_flare_i0_vs_isro_model_below_4p5kev(flare):
    """I0 within a factor 1.5 of ISRO's model, compared at the XSM resolution (150 eV FWHM: the
    data cannot say more), between 1.5 and 4.5 keV (above, see the xfail below)."""
    E, f = _isro()
    ratio = _smooth(flare.i0) / _smooth(f)
    band = (E >= 1.5) & (E <= 4.5)
    assert np.all((ratio[band] > 1 / 1.5) & (ratio[band] < 1.5)), ratio[band].min()


@pytest.mark.xfail(strict=True, reason="the XSM counts of this file exceed ISRO's model folded "
                   "through the response by x1.5-2.8 above 5 keV (test_isro_model_underpredicts_"
                   "xsm_counts_above_5kev), so a fit to these counts cannot be within 1.5 there. "
                   "Measured: a two-temperature fit lowers C from 320 to 259 (166 dof) but leaves "
                   "our/ISRO at 1.6-3.0 over 5-7 keV; the PI scale (0.5 + ch/30 keV) puts the "
                   "lines right. The excess over ISRO's model matches pile-up of ~4-6 us at the "
                   "6300 c/s of this flare in 3.5-6.3 and 7.2-9 keV, plus Fe XXV at 6.3-7.2 keV "
                   "that ISRO's model lacks: ISRO's modelop looks like the fit of a reduction that "
                   "removed or modelled these counts")
def test_flare_i0_vs_isro_model_1p5_to_7kev(flare):
    E, f = _isro()
    ratio = _smooth(flare.i0) / _smooth(f)
    band = (E >= 1.5) & (E <= 7.0)
    assert np.all((ratio[band] > 1 / 1.5) & (ratio[band] < 1.5))


def test_isro_model_underpredicts_xsm_counts_above_5kev():
    """The reason for the xfail above, independent of our model: ISRO's I0 folded through the ARF
    and the approximate response predicts the counts of 1.8-4.5 keV to 15 % but not those above
    5.5 keV."""
    from class_qgis_plugin.xsm import load_response, read_xsm_pha
    s = read_xsm_pha(shared_data(*FLARE))
    resp = load_response(s)
    E, f = _isro()
    mu = resp.fold(f, s.exposure)
    em = 0.5 * (resp.rmf.e_min + resp.rmf.e_max)

    def ratio(a, b):
        m = (em > a) & (em < b)
        return s.counts[m].sum() / mu[m].sum()
    assert 0.85 < ratio(1.8, 2.6) < 1.15
    assert ratio(5.5, 7.2) > 1.6


def test_flare_shape_slope_and_lines(flare):
    E, f = _isro()
    # continuum slope between line-free windows 3.3-3.5 and 4.7-5.3 keV: same within 15 %
    def slope(x):
        a = (E > 3.3) & (E < 3.5)
        b = (E > 4.7) & (E < 5.3)
        return np.log(x[b].mean() / x[a].mean()) / (E[b].mean() - E[a].mean())
    assert slope(flare.i0) == pytest.approx(slope(f), rel=0.15)
    # line positions: the line-flux centroid (above the local continuum) of each complex window
    # agrees with ISRO's APEC model: within 15 eV for Mg..Ca; within 60 eV for the Fe K complex,
    # whose satellite mix depends on the plasma temperature
    for lo, hi, tol in [(1.30, 1.40, 0.015), (1.82, 1.90, 0.015), (1.98, 2.03, 0.015),
                        (2.40, 2.50, 0.015), (3.08, 3.16, 0.015), (3.85, 3.95, 0.015),
                        (6.55, 6.75, 0.06)]:
        m = (E >= lo) & (E <= hi)
        side = ((E >= lo - 0.05) & (E < lo)) | ((E > hi) & (E <= hi + 0.05))

        def centroid(x):
            c = np.clip(x[m] - np.median(x[side]), 0, None)
            return np.sum(c * (E[m] + 0.005)) / c.sum()
        assert abs(centroid(f) - centroid(flare.i0)) <= tol, (lo, centroid(f), centroid(flare.i0))


def _write_typeii_from(path, spec_rate, n_rows=30, t0=1000.0, seed=3):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(np.outer(np.ones(n_rows), spec_rate)).astype(np.int32)
    ts = t0 + np.arange(n_rows, dtype=float)
    h = fits.BinTableHDU.from_columns([
        fits.Column("TSTART", "D", array=ts), fits.Column("TSTOP", "D", array=ts + 1),
        fits.Column("EXPOSURE", "D", array=np.ones(n_rows)),
        fits.Column("COUNTS", "512J", array=counts)], name="SPECTRUM")
    h.header["MJDREF"] = 57754.0
    h.header["TIMESYS"] = "UTC"
    fits.HDUList([fits.PrimaryHDU(), h]).writeto(path)


def test_fit_observations_type2_and_folder(tmp_path):
    resp = _synthetic_response()
    from class_qgis_plugin.ogip import ARF, write_arf
    arf = tmp_path / "xsm.arf"
    write_arf(arf, ARF(resp.energ_lo, resp.energ_hi, resp.specresp), instrume="CH2_XSM")
    model = S.SolarModel(resp.energ_lo, resp.energ_hi)
    th = _truth(model)
    rate = resp.fold(model.evaluate(th), 1.0)
    _write_typeii_from(tmp_path / "xsm_tr.pha", rate)
    iso = lambda met: met_to_utc(met).isoformat()
    t_start = [iso(1002.0), iso(1010.0), iso(5000.0)]
    t_end = [iso(1018.0), iso(1026.0), iso(5010.0)]
    out = tmp_path / "solar"
    cols = fit_observations(t_start, t_end, tmp_path / "xsm_tr.pha", out, arf=str(arf), plot=True,
                            obs_ids=[7, 8, 9])
    assert set(cols) == {"solar_file", "sol_T_MK", "sol_EM", "flare_cls", "goes_flux", "sol_stat"}
    for i in (0, 1):
        assert os.path.isfile(cols["solar_file"][i])
        assert cols["sol_T_MK"][i] == pytest.approx(12.0, rel=0.15)
        assert cols["flare_cls"][i][0] in "CM"
        info = json.load(open(cols["solar_file"][i][:-4] + ".json"))
        assert info["response_kind"] == "approximate" and info["exposure_s"] == pytest.approx(16.0, abs=1e-6)
    assert os.path.isfile(os.path.join(out, "solar_7.png"))
    assert cols["solar_file"][2] == "" and np.isnan(cols["sol_T_MK"][2])
    E, fl = read_solar_table(cols["solar_file"][0])
    assert E.size == 3000 and np.all(fl >= 0)


def test_fit_observations_folder_of_windows(tmp_path):
    folder = shared_data("xsm", "windows")
    cols = fit_observations(["2021-08-27T21:03:18"], ["2021-08-27T21:03:30"], folder, tmp_path)
    assert os.path.basename(cols["solar_file"][0]) == "solar_0.txt"
    assert 8 < cols["sol_T_MK"][0] < 20
