"""XSM spectra, times and the approximate response."""
import os
from datetime import datetime, timezone

import numpy as np
import pytest
from astropy.io import fits
from conftest import shared_data

from class_qgis_plugin.errors import ClassXRFError
from class_qgis_plugin.xsm import (approximate_rmf, load_response, met_to_utc, read_xsm_pha,
                                   read_xsm_typeii, sum_time_window, utc_to_met, xsm_fwhm,
                                   PI_GAIN, PI_OFFSET)

FLARE = ("xsm", "windows", "ch2_xsm_20210827_l1.pha")


def test_met_epoch_and_round_trip():
    # XSM MJDREF 57754 is 2017-01-01T00:00:00 UTC (MJD 57754 by the MJD definition: 1858-11-17 + 57754 d)
    assert met_to_utc(0.0, 57754.0) == datetime(2017, 1, 1, tzinfo=timezone.utc)
    t = datetime(2021, 8, 27, 21, 3, 16, tzinfo=timezone.utc)
    # days 2017-01-01 -> 2021-08-27 = 1699 (by the calendar) + 21:03:16
    assert utc_to_met(t, 57754.0) == pytest.approx(1699 * 86400 + 21 * 3600 + 3 * 60 + 16, abs=1e-3)
    assert utc_to_met("2021-08-27T21:03:16", 57754.0) == pytest.approx(utc_to_met(t, 57754.0))
    assert met_to_utc(utc_to_met(t)) == t


def test_read_real_flare_type1():
    s = read_xsm_pha(shared_data(*FLARE))
    assert s.counts.size == 512 and s.channel[0] == 0
    assert s.exposure == 16.0
    assert s.counts.sum() == 100776.0
    # the CLASS file of the same interval is named 20210827T210316 .. 20210827T210332
    assert s.start_utc == datetime(2021, 8, 27, 21, 3, 16, tzinfo=timezone.utc)
    assert s.stop_utc == datetime(2021, 8, 27, 21, 3, 32, tzinfo=timezone.utc)
    assert os.path.basename(s.arf_path) == "ch2_xsm_20210827_l1.arf"


def _gauss_peak(c, lo, hi):
    from scipy.optimize import curve_fit
    x = np.arange(lo, hi, dtype=float)
    y = c[lo:hi]

    def g(x, a, m, s, b0, b1):
        return a * np.exp(-0.5 * ((x - m) / s) ** 2) + b0 * np.exp(-b1 * (x - x.mean()))
    p, _ = curve_fit(g, x, y, p0=[y.max() - y.min(), x[np.argmax(y)], 2, y.min(), 0.05],
                     maxfev=20000)
    return p[1], 2.3548 * abs(p[2])


def test_channel_scale_and_resolution_against_flare_lines():
    """PI scale E = 0.5 + ch/30 keV: the measured centroids of the Si, S, Ca, Fe complexes of the
    real flare fall at the known line energies (NIST: Si XIII 1.865, S XV 2.461, Ca XIX 3.902,
    Fe XXV 6.64-6.70 with satellites), and the Si/S widths match the 180 eV @ 5.9 keV Fano model."""
    c = read_xsm_pha(shared_data(*FLARE)).counts
    for (lo, hi), e_true, tol in [((35, 48), 1.865, 0.03), ((52, 62), 2.461, 0.03),
                                  ((96, 110), 3.902, 0.03), ((176, 192), 6.67, 0.04)]:
        ch, fwhm_ch = _gauss_peak(c, lo, hi)
        assert PI_OFFSET + PI_GAIN * ch == pytest.approx(e_true, abs=tol)
        if e_true < 3:   # isolated enough to measure the resolution
            assert fwhm_ch * PI_GAIN == pytest.approx(float(xsm_fwhm(e_true)), rel=0.12)


def test_fwhm_model():
    assert float(xsm_fwhm(5.9)) == pytest.approx(0.180, rel=1e-9)
    # Fano limit: FWHM^2 - noise^2 grows linearly with E (2.3548^2 F w E)
    f1, f2 = xsm_fwhm(2.0), xsm_fwhm(8.0)
    assert f2 ** 2 - f1 ** 2 == pytest.approx(2.3548 ** 2 * 0.12 * 3.65e-3 * 6.0, rel=1e-3)


def test_approximate_rmf_rows_and_width():
    lo = np.arange(0.1, 30.1, 0.01)
    hi = lo + 0.01
    r = approximate_rmf(lo, hi)
    s = r.matrix.sum(axis=1)
    mid = 0.5 * (lo + hi)
    inside = (mid > 1.0) & (mid < 16.0)
    assert np.allclose(s[inside], 1.0, atol=1e-6)
    i = np.argmin(abs(mid - 5.9))
    row = r.matrix[i]
    cen = 0.5 * (r.e_min + r.e_max)
    m = np.sum(row * cen)
    sd = np.sqrt(np.sum(row * (cen - m) ** 2) - PI_GAIN ** 2 / 12)  # minus channel quantisation
    assert m == pytest.approx(mid[i], abs=1e-3)
    assert 2.3548 * sd == pytest.approx(0.180, rel=0.02)


def _write_typeii(path, n_rows=20, mjdref=57754.0, gti=((100.0, 108.0), (110.0, 130.0))):
    rng = np.random.default_rng(1)
    counts = rng.poisson(5.0, size=(n_rows, 512)).astype(np.int32)
    t0 = 100.0 + np.arange(n_rows)
    cols = [fits.Column("TSTART", "D", array=t0), fits.Column("TSTOP", "D", array=t0 + 1.0),
            fits.Column("EXPOSURE", "D", array=np.full(n_rows, 0.98)),
            fits.Column("COUNTS", "512J", array=counts),
            fits.Column("CHANNEL", "512J", array=np.tile(np.arange(512, dtype=np.int32), (n_rows, 1)))]
    h = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    h.header["MJDREFI"] = int(mjdref)
    h.header["MJDREFF"] = mjdref - int(mjdref)
    h.header["TIMESYS"] = "UTC"
    h.header["HDUCLAS4"] = "TYPE:II"
    g = fits.BinTableHDU.from_columns([fits.Column("START", "D", array=[a for a, _ in gti]),
                                       fits.Column("STOP", "D", array=[b for _, b in gti])],
                                      name="GTI")
    fits.HDUList([fits.PrimaryHDU(), h, g]).writeto(path)
    return counts


def test_typeii_window_sum(tmp_path):
    p = tmp_path / "xsm_l2_tr.pha"
    counts = _write_typeii(p)
    s2 = read_xsm_typeii(p)
    assert s2.counts.shape == (20, 512) and s2.mjdref == 57754.0
    # window 102.5..112.5: rows 102 (half), 103..107 (full), 108-109 outside GTI, 110, 111 full, 112 half
    s = sum_time_window(s2, 102.5, 112.5)
    w = np.zeros(20)
    w[2] = 0.5
    w[3:8] = 1.0
    w[10:12] = 1.0
    w[12] = 0.5
    assert np.allclose(s.counts, w @ counts)
    assert s.exposure == pytest.approx(0.98 * w.sum())
    assert s.tstart == 102.5 and s.tstop == 112.5
    # the same window given in UTC
    a, b = met_to_utc(102.5), met_to_utc(112.5)
    s_utc = sum_time_window(s2, a, b)
    assert np.allclose(s_utc.counts, s.counts)
    with pytest.raises(ClassXRFError, match="no good exposure"):
        sum_time_window(s2, 108.2, 109.8)   # inside the GTI gap


def test_bad_files(tmp_path):
    src = shared_data(*FLARE)
    bad = tmp_path / "trunc.pha"
    bad.write_bytes(src.read_bytes()[:5000])
    with pytest.raises(ClassXRFError, match="trunc.pha"):
        read_xsm_pha(bad)
    with fits.open(src) as h:
        del h[1].header["EXPOSURE"]
        h.writeto(tmp_path / "noexp.pha")
    with pytest.raises(ClassXRFError, match="EXPOSURE"):
        read_xsm_pha(tmp_path / "noexp.pha")
    with pytest.raises(ClassXRFError, match="not found"):
        read_xsm_pha(tmp_path / "missing.pha")


def test_user_rmf_is_used_and_checked(tmp_path):
    from class_qgis_plugin.ogip import RMF, write_rmf
    s = read_xsm_pha(shared_data(*FLARE))
    approx = load_response(s)
    assert approx.kind == "approximate" and "approximate" in approx.description
    r = approx.rmf
    path = tmp_path / "user.rmf"
    write_rmf(path, RMF(r.energ_lo, r.energ_hi, r.e_min, r.e_max, r.matrix, 0, {}), instrume="CH2_XSM")
    user = load_response(s, rmf=str(path))
    assert user.kind == "rmf" and "user.rmf" in user.description
    x = np.ones(r.energ_lo.size)
    assert np.allclose(user.fold(x, 16.0), approx.fold(x, 16.0), rtol=1e-4, atol=1e-6)
    small = tmp_path / "small.rmf"
    write_rmf(small, RMF(r.energ_lo, r.energ_hi, r.e_min[:256], r.e_max[:256], r.matrix[:, :256], 0, {}))
    with pytest.raises(ClassXRFError, match="256 channels"):
        load_response(s, rmf=str(small))


def test_user_rmf_read_as_xspec_reads_it(tmp_path):
    """An XSM RMF given by the user follows the same OGIP conventions as the CLASS ones: without a
    TLMIN keyword for F_CHAN its channels count from 1 (so an RMF written with F_CHAN from 0 folds one
    channel lower, the F_CHAN-0 elements dropped), and the XSM ARF pairs with it row by row; the
    response's description says both."""
    from astropy.io import fits
    from class_qgis_plugin.ogip import RMF, write_rmf
    s = read_xsm_pha(shared_data(*FLARE))
    approx = load_response(s)
    r = approx.rmf
    path = tmp_path / "notlmin.rmf"
    write_rmf(path, RMF(r.energ_lo, r.energ_hi, r.e_min, r.e_max, r.matrix, 0, {}), instrume="CH2_XSM")
    with fits.open(path, mode="update") as h:
        del h["MATRIX"].header["TLMIN4"]
    user = load_response(s, rmf=str(path))
    assert "TLMIN" in user.description and user.rmf.first_channel == 1
    x = np.ones(r.energ_lo.size)
    a, b = approx.fold(x, 16.0), user.fold(x, 16.0)
    assert np.allclose(b[:-1], a[1:], rtol=1e-4, atol=1e-6)      # one channel lower
    # an ARF labelled one row below the RMF (as the CLASS ARF is) is paired by row and said so
    from class_qgis_plugin.ogip import ARF, write_arf
    step = r.energ_hi - r.energ_lo
    shifted = tmp_path / "shifted.arf"
    write_arf(shifted, ARF(r.energ_lo - step, r.energ_hi - step, approx.specresp), instrume="CH2_XSM")
    paired = load_response(s, arf=str(shifted), rmf=str(path))
    assert np.allclose(paired.specresp, approx.specresp, rtol=1e-6) and "by row" in paired.description
