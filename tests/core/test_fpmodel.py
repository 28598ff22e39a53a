"""Forward model: closed forms, sanity, grid convergence, gain, and ISRO's scatter table model."""
# scipy quad warns about round-off at the 1e-6 level on these smooth integrands; the comparisons
# below are at the 0.3 % level
import numpy as np
import pytest
import xraylib
from scipy import integrate

from conftest import shared_data
from class_qgis_plugin.composition import ELEMENTS, MARE_WT, HIGHLAND_WT
from class_qgis_plugin.errors import ClassXRFError
from class_qgis_plugin.fpmodel import ForwardModel, make_grid, rebin_density

pytestmark = pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")


def diag_response(e_lo=0.0, e_hi=12.0, step=0.01):
    """A perfect detector: channel k records exactly the photons of energy bin k (1 cm^2)."""
    lo = np.arange(e_lo, e_hi, step)
    hi = lo + step
    rmf = dict(energ_lo=lo, energ_hi=hi, e_min=lo, e_max=hi, matrix=np.eye(lo.size), first_channel=0)
    arf = dict(energ_lo=lo, energ_hi=hi, specresp=np.ones(lo.size))
    return rmf, arf


def smooth_sun(e):
    """A smooth flare-like continuum, photons cm^-2 s^-1 keV^-1."""
    return 1e6 * np.exp(-e / 0.9) / e


def lunar(f=0.5):
    return (f * MARE_WT + (1 - f) * HIGHLAND_WT) / 100.0


@pytest.fixture(scope="module")
def fm():
    rmf, arf = diag_response()
    e = np.arange(0.1, 11.0, 0.001)
    return ForwardModel(rmf, arf, e, smooth_sun(e), e_max_keV=10.0)


def test_pure_silicon_monochromatic_closed_form():
    """A pure Si target under a 0.01 keV wide beam at 3 keV: J = F dE tau(E0) / (4 pi (a mu(E0) + b mu(E_Si)))."""
    rmf, arf = diag_response()
    e = np.arange(0.1, 11.0, 0.01)
    flux = np.where(np.abs(e - 3.0) < 1e-6, 1e5, 0.0)
    fm = ForwardModel(rmf, arf, e, flux, edge_aligned=False, secondary=True)
    W = np.zeros((1, 8))
    W[0, ELEMENTS.index("Si")] = 1.0
    inc, emi = 30.0, 10.0
    c = fm.components(W, inc, emi, 1.0)
    l = fm.atomic.line_index("Si Ka")
    e0 = 3.005                                  # centre of the lit bin
    tau = (xraylib.CS_Photo_Partial(14, xraylib.K_SHELL, e0) * xraylib.FluorYield(14, xraylib.K_SHELL)
           * xraylib.RadRate(14, xraylib.KA_LINE))
    a, b = 1 / np.cos(np.deg2rad(inc)), 1 / np.cos(np.deg2rad(emi))
    mu0, mul = xraylib.CS_Total(14, e0), xraylib.CS_Total(14, xraylib.LineEnergy(14, xraylib.KA_LINE))
    J = 1e5 * 0.01 * tau / (4 * np.pi * (a * mu0 + b * mul))
    assert c["primary"][0, l] == pytest.approx(J * b, rel=1e-6)      # radiance = J / cos e
    # no secondary fluorescence in a pure element whose K beta lies below its K edge
    assert np.all(c["secondary"] == 0)
    # counts: exposure x Omega x radiance through a perfect 1 cm^2 detector
    # (the perfect detector shares a line between the two channels whose centres bracket it)
    near = (fm.response.e_min >= 1.70) & (fm.response.e_max <= 1.80)
    assert c["line_counts"][0, near].sum() == pytest.approx(fm.solid_angle_sr * J * b, rel=1e-6)


def test_continuum_primary_against_quadrature(fm):
    """Binary Al-Si target, primary Al K alpha under the smooth spectrum: model vs scipy quad."""
    W = np.zeros((1, 8))
    W[0, ELEMENTS.index("Al")] = 0.3
    W[0, ELEMENTS.index("Si")] = 0.7
    inc, emi = 45.0, 0.0
    c = fm.components(W, inc, emi, 1.0)
    a, b = 1 / np.cos(np.deg2rad(inc)), 1.0
    el = xraylib.LineEnergy(13, xraylib.KA_LINE)
    mul = 0.3 * xraylib.CS_Total(13, el) + 0.7 * xraylib.CS_Total(14, el)

    def integrand(e):
        tau = xraylib.CS_FluorLine_Kissel_Cascade(13, xraylib.KA_LINE, e)
        mu = 0.3 * xraylib.CS_Total(13, e) + 0.7 * xraylib.CS_Total(14, e)
        return smooth_sun(e) * 0.3 * tau / (a * mu + b * mul)

    edges = [xraylib.EdgeEnergy(13, xraylib.K_SHELL), xraylib.EdgeEnergy(14, xraylib.K_SHELL), 10.0]
    val = sum(integrate.quad(integrand, edges[i], edges[i + 1], limit=400, epsrel=1e-6)[0] for i in range(2))
    assert c["primary"][0, fm.atomic.line_index("Al Ka")] == pytest.approx(val / (4 * np.pi), rel=3e-3)
    # Si K alpha excites Al: secondary > 0 and a few % of the primary
    r = c["secondary"][0, fm.atomic.line_index("Al Ka")] / c["primary"][0, fm.atomic.line_index("Al Ka")]
    assert 0.005 < r < 0.2


def test_secondary_against_scalar_shiraiwa_fujino(fm):
    """Secondary Al K alpha excited by Si K alpha, an independent scalar evaluation of the formula."""
    W = np.zeros((1, 8))
    W[0, ELEMENTS.index("Al")] = 0.3
    W[0, ELEMENTS.index("Si")] = 0.7
    inc, emi = 45.0, 0.0
    c = fm.components(W, inc, emi, 1.0)
    # model secondary of Al Ka from Si Ka only: rebuild it with Si Kb switched off
    a, b = 1 / np.cos(np.deg2rad(inc)), 1.0
    e_al = xraylib.LineEnergy(13, xraylib.KA_LINE)
    e_si = xraylib.LineEnergy(14, xraylib.KA_LINE)
    e_sib = xraylib.LineEnergy(14, xraylib.KB_LINE)

    def mu(e):
        return 0.3 * xraylib.CS_Total(13, e) + 0.7 * xraylib.CS_Total(14, e)

    def sec(e_p, line_p):
        mup, mus = mu(e_p), mu(e_al)
        tau_s = xraylib.CS_FluorLine_Kissel_Cascade(13, xraylib.KA_LINE, e_p)

        def f(e):
            m = mu(e)
            L = np.log1p(a * m / mup) / (a * m) + np.log1p(b * mus / mup) / (b * mus)
            return smooth_sun(e) * 0.7 * xraylib.CS_FluorLine_Kissel_Cascade(14, line_p, e) * 0.3 * tau_s \
                * 0.5 * L / (a * m + b * mus)
        return integrate.quad(f, xraylib.EdgeEnergy(14, xraylib.K_SHELL), 10.0, limit=200)[0] / (4 * np.pi)

    want = sec(e_si, xraylib.KA_LINE) + sec(e_sib, xraylib.KB_LINE)
    assert c["secondary"][0, fm.atomic.line_index("Al Ka")] == pytest.approx(want, rel=5e-3)


def test_no_negative_and_monotone_in_weight_fraction(fm):
    f = np.linspace(0.0, 1.0, 6)
    W = np.array([lunar(x) for x in f])
    c = fm.components(W, 40.0, 5.0, 96.0)
    for k in ("primary", "secondary", "scatter", "counts"):
        assert np.all(c[k] >= 0)
    # along the highland -> mare line Al and Ca fall, Fe and Mg rise
    for name, sign in (("Al Ka", -1), ("Ca Ka", -1), ("Fe Ka", 1), ("Mg Ka", 1)):
        tot = c["primary"][:, fm.atomic.line_index(name)] + c["secondary"][:, fm.atomic.line_index(name)]
        assert np.all(sign * np.diff(tot) > 0), name
    # more Si in place of O (everything else equal): more Si K alpha
    base = lunar(0.5)
    Ws = []
    for dsi in (-0.05, 0.0, 0.05):
        w = base.copy()
        w[ELEMENTS.index("Si")] += dsi
        w[ELEMENTS.index("O")] -= dsi
        Ws.append(w)
    si = fm.components(np.array(Ws), 40.0, 5.0, 96.0)["primary"][:, fm.atomic.line_index("Si Ka")]
    assert np.all(np.diff(si) > 0)


def _ratios(step, aligned):
    rmf, arf = diag_response()
    e = np.arange(0.1, 11.0, 0.001)
    m = ForwardModel(rmf, arf, e, smooth_sun(e), grid_step_keV=step, edge_aligned=aligned, e_min_keV=0.3,
                     e_max_keV=10.0, secondary=False)
    c = m.components(lunar(0.5)[None], 30.0, 0.0, 1.0)["primary"][0]
    ad = m.atomic
    si = c[ad.line_index("Si Ka")]
    return c[ad.line_index("Al Ka")] / si, c[ad.line_index("Mg Ka")] / si


def test_integration_grid_convergence():
    ref = np.array(_ratios(0.005, False))
    coarse = np.array(_ratios(0.1, False))
    fine = np.array(_ratios(0.01, False))
    aligned = np.array(_ratios(0.01, True))
    # 0.1 keV bins (edges inside bins) are biased by several %; 0.01 keV within 1.5 %
    # 0.1 keV bins not aligned on the edges: Al/Si about 16 % low, Mg/Si about 6 % low (the issue's
    # numbers); 0.01 keV bins agree with 0.005 keV to 1.5 %, and so do 0.1 keV bins cut at the edges
    assert coarse[0] / ref[0] - 1 < -0.10 and coarse[1] / ref[1] - 1 < -0.04
    assert np.all(np.abs(fine / ref - 1) < 0.015)
    assert np.all(np.abs(aligned / ref - 1) < 0.015)
    assert np.all(np.abs(np.array(_ratios(0.1, True)) / ref - 1) < 0.015)


def test_grid_is_edge_aligned():
    lo, hi = make_grid(0.3, 10.0, 0.01, edge_aligned=True)
    for z in (12, 13, 14, 20, 26):
        e = xraylib.EdgeEnergy(z, xraylib.K_SHELL)
        assert np.min(np.abs(lo - e)) < 1e-9
    assert np.all(hi > lo) and np.allclose(lo[1:], hi[:-1])


def test_rebin_conserves_photons():
    src = np.linspace(0.1, 5.0, 491)
    dens = np.random.default_rng(0).uniform(0, 1, 490)
    lo, hi = make_grid(0.1, 5.0, 0.0137, edge_aligned=True)
    out = rebin_density(src, dens, lo, hi)
    assert (out * (hi - lo)).sum() == pytest.approx((dens * np.diff(src)).sum(), rel=1e-10)


def test_counts_scale_batch_and_gain(fm):
    W = np.array([lunar(0.2), lunar(0.8)])
    c1 = fm.components(W, [20.0, 50.0], [0.0, 3.0], 8.0, scatter_norm=1.0)
    c2 = fm.components(W, [20.0, 50.0], [0.0, 3.0], 16.0, scatter_norm=2.0)
    assert np.allclose(c2["line_counts"], 2 * c1["line_counts"])
    assert np.allclose(c2["scatter_counts"], 4 * c1["scatter_counts"])
    one = fm.counts(W[1:], 50.0, 3.0, 8.0)
    assert np.allclose(one[0], c1["counts"][1])


@pytest.mark.parametrize("convention", ["xspec", "channel"])
def test_gain_conventions(convention):
    """XSPEC's gain command (manual, "gain: modify a response file gain") moves the response's
    energies to E' = E/slope - offset and the effective area with them: a line of true energy E
    lands in the channel whose nominal energy is slope (E + offset), and the area is the ARF at that
    nominal energy. The "channel" reading (channel energy = slope E_nominal + offset) moves it the
    other way. Checked on a perfect diagonal detector with a linear ARF (analytic expectations)."""
    rmf, arf = diag_response()
    arf["specresp"] = 1.0 + 0.5 * 0.5 * (arf["energ_lo"] + arf["energ_hi"])   # area = 1 + E/2
    e = np.arange(0.1, 11.0, 0.01)
    sl, off = 1.02, 0.03
    g = ForwardModel(rmf, arf, e, smooth_sun(e), gain_slope=sl, gain_offset=off, gain_convention=convention)
    lc = g.components(lunar(0.5)[None], 30.0, 0.0, 1.0)["line_counts"][0]
    nominal_centre = 0.5 * (rmf["e_min"] + rmf["e_max"])
    near = (nominal_centre > 3.4) & (nominal_centre < 4.0)
    ca = g.atomic.line_energy[g.atomic.line_index("Ca Ka")]
    peak = nominal_centre[near][np.argmax(lc[near])]
    want = sl * (ca + off) if convention == "xspec" else (ca - off) / sl
    assert abs(peak - want) < 0.011
    area = g.response.area(np.array([2.0]))[0]
    assert area == pytest.approx(1.0 + 0.5 * (sl * (2.0 + off) if convention == "xspec" else 2.0), rel=1e-3)
    lo, hi = g.channel_energy()
    if convention == "xspec":       # XSPEC's ignore/notice select channels by their nominal EBOUNDS
        assert np.allclose(lo, rmf["e_min"]) and np.allclose(hi, rmf["e_max"])
    else:
        assert np.allclose(lo, sl * rmf["e_min"] + off)
    with pytest.raises(ClassXRFError, match="gain_convention"):
        ForwardModel(rmf, arf, e, smooth_sun(e), gain_convention="pha")


def test_bad_inputs_raise(fm):
    with pytest.raises(ClassXRFError, match="sum to 1"):
        fm.counts(np.full((1, 8), 0.2), 30, 0, 8)
    with pytest.raises(ClassXRFError, match="incidence"):
        fm.counts(lunar()[None], 95, 0, 8)
    with pytest.raises(ClassXRFError, match="exposure"):
        fm.counts(lunar()[None], 30, 0, 0.0)


def test_scatter_shape_vs_isro_table_model():
    """ISRO's scatter table model for 2021-08-27 (same solar input): after normalisation our
    Rayleigh + Compton continuum of a lunar target has the same shape over 1-7 keV to within 12 %
    when evaluated at a small scattering angle, which is what the table's shape implies; at the
    physical angle of that observation (180 - 64.55 deg) the Compton share is larger at high
    energy (reported, not asserted)."""
    from astropy.io import fits
    from class_qgis_plugin.ogip import read_arf, read_rmf
    from class_qgis_plugin.solar_table import read_solar_table
    d = shared_data("class", "x2abund_test")
    with fits.open(d / "tbmodel_20210827T210316000_20210827T210332000.fits") as h:
        lo = h["ENERGIES"].data["ENERG_LO"].astype(float)
        hi = h["ENERGIES"].data["ENERG_HI"].astype(float)
        par = h["SPECTRA"].data["paramval"]
        tb = h["SPECTRA"].data["INTPSPEC"][int(np.argmin(np.abs(par)))].astype(float)
    e, f = read_solar_table(d / "modelop_20210827T210316000_20210827T210332000.txt")
    m = ForwardModel(read_rmf(d / "class_rmf_v1.rmf"), read_arf(d / "class_arf_v1.arf"), e, f, e_min_keV=0.5,
                     e_max_keV=10.0)
    W = lunar(0.5)[None]
    cos_i, cos_e, _ = m.geometry(1, 64.55, 0.0)
    sc = m.scatter_photons(W, cos_i, cos_e, m.solar, np.array([0.0]))[0] / m.de
    ours = rebin_density(np.concatenate([m.grid_lo, [m.grid_hi[-1]]]), sc, lo, hi)
    ratios = []
    for a in np.arange(1.0, 7.0, 0.5):
        sel = (lo >= a) & (hi <= a + 0.5)
        ratios.append(ours[sel].sum() / tb[sel].sum())
    ratios = np.array(ratios) / np.median(ratios)
    assert np.all(np.abs(ratios - 1) < 0.12), ratios
