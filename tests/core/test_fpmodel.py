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


def test_gain_as_xspec_applies_it():
    """XSPEC's gain command (manual, "gain: modify a response file gain"; HEASoft
    Response::applyGainFromFit) moves the matrix rows to E' = E/slope - offset: a line of true
    energy E lands in the channel whose nominal energy is slope (E + offset). The effective area is
    rebinned onto the shifted energies (RealResponse::shiftEffectiveArea), i.e. it stays at the
    true energy. Channel bounds are not moved. Checked on a perfect diagonal detector with a linear
    ARF (analytic expectations)."""
    rmf, arf = diag_response()
    arf["specresp"] = 1.0 + 0.5 * 0.5 * (arf["energ_lo"] + arf["energ_hi"])   # area = 1 + E/2
    e = np.arange(0.1, 11.0, 0.01)
    sl, off = 1.02, 0.03
    g = ForwardModel(rmf, arf, e, smooth_sun(e), gain_slope=sl, gain_offset=off)
    lc = g.components(lunar(0.5)[None], 30.0, 0.0, 1.0)["line_counts"][0]
    nominal_centre = 0.5 * (rmf["e_min"] + rmf["e_max"])
    near = (nominal_centre > 3.4) & (nominal_centre < 4.0)
    ca = g.atomic.line_energy[g.atomic.line_index("Ca Ka")]
    peak = nominal_centre[near][np.argmax(lc[near])]
    assert abs(peak - sl * (ca + off)) < 0.011
    assert g.response.area(np.array([2.0]))[0] == pytest.approx(2.0, rel=1e-6)
    lo, hi = g.channel_energy()
    assert np.allclose(lo, rmf["e_min"]) and np.allclose(hi, rmf["e_max"])


def _ogip_fold(rmf_path, arf_path, photons):
    """Counts per channel of ``photons`` per RMF energy row, folded as the OGIP memo CAL/GEN/92-002
    describes and XSPEC reads it, straight from the FITS tables: channel = F_CHAN - TLMIN of the
    F_CHAN column (1 when absent), elements outside 0..DETCHANS-1 dropped, ARF row i with RMF row i."""
    from astropy.io import fits
    with fits.open(rmf_path) as h:
        mx = h["MATRIX"] if "MATRIX" in h else h["SPECRESP MATRIX"]
        col = [c.name.upper() for c in mx.columns].index("F_CHAN") + 1
        tlmin = mx.header.get(f"TLMIN{col}", 1)
        nchan = h["EBOUNDS"].header["NAXIS2"]
        out = np.zeros(nchan)
        with fits.open(arf_path) as ha:
            area = np.asarray(ha["SPECRESP"].data["SPECRESP"], float)
        for i, row in enumerate(mx.data):
            ngrp = int(np.atleast_1d(row["N_GRP"])[0])
            fch, nch = np.atleast_1d(row["F_CHAN"]), np.atleast_1d(row["N_CHAN"])
            vals, k = np.asarray(row["MATRIX"], float), 0
            for g in range(ngrp):
                for j in range(int(nch[g])):
                    c = int(fch[g]) + j - tlmin
                    if 0 <= c < nchan:
                        out[c] += photons[i] * area[i] * vals[k]
                    k += 1
    return out


@pytest.mark.realdata
@pytest.mark.parametrize("pair", [("x2abund_test", "class_rmf_v1.rmf", "class_arf_v1.arf"),
                                  ("response", "class_rmf_v1_2048ch.rmf", "class_arf_v1.arf")])
def test_folding_matches_an_independent_ogip_folding(pair, tmp_path):
    """The real CLASS RMFs (no TLMIN4, a bare TLMIN = 0) and ARFs (labels one row below the RMF's),
    folded through :class:`Response` and through a minimal OGIP folding written here from the memo:
    the same counts in every channel. Then an RMF that does carry TLMIN4 (written with 0): its
    F_CHAN values count from 0 and both foldings follow that."""
    from class_qgis_plugin.fpmodel import Response
    from class_qgis_plugin.ogip import read_arf, read_rmf, write_rmf
    folder, rname, aname = pair
    rp, ap = shared_data("class", folder, rname), shared_data("class", folder, aname)
    rmf, arf = read_rmf(rp), read_arf(ap)
    resp = Response(rmf, arf)
    photons = 1e3 * np.exp(-rmf.energy_mid / 2.0) * (rmf.energy_mid > 0.5)
    ours = photons @ resp.counts_per_photon(rmf.energy_mid)
    ref = _ogip_fold(rp, ap, photons)
    assert ref.sum() > 1e3
    assert np.allclose(ours, ref, rtol=1e-6, atol=1e-9 * ref.max())
    assert np.allclose(resp.fold_density(rmf.energy_mid, photons[None])[0], ref, rtol=1e-6, atol=1e-9 * ref.max())
    # a response that carries TLMIN4 = 0 (what write_rmf writes for first_channel 0)
    rmf0 = read_rmf(rp)
    rmf0.first_channel = 0
    p = tmp_path / "tlmin4.rmf"
    write_rmf(p, rmf0)
    back = read_rmf(p)
    assert back.first_channel == 0 and not any("TLMIN" in n for n in back.notes)
    ref0 = _ogip_fold(p, ap, photons)
    ours0 = photons @ Response(back, arf).counts_per_photon(back.energy_mid)
    assert np.allclose(ours0, ref0, rtol=1e-5, atol=1e-7 * ref0.max())


def _xspec_gain_fold(rmf, area_rows, energy, density, slope, offset):
    """XSPEC's folding under a gain, from the HEASoft source: the model is integrated over the
    shifted energy bins E'/slope - offset, the saved effective area (per RMF row) is rebinned onto
    those bins by overlap (Numerics::Rebin::gainRebin) and row i of the matrix takes bin i."""
    lo, hi = rmf.energ_lo, rmf.energ_hi
    nlo, nhi = lo / slope - offset, hi / slope - offset
    cum = np.concatenate([[0.0], np.cumsum(density[:-1] * np.diff(energy))])
    flux = np.interp(nhi, energy, cum) - np.interp(nlo, energy, cum)
    edges = np.concatenate([lo, hi[-1:]])
    acum = np.concatenate([[0.0], np.cumsum(area_rows * (hi - lo))])
    area = (np.interp(nhi, edges, acum) - np.interp(nlo, edges, acum)) / (nhi - nlo)
    return (flux * area) @ rmf.matrix


@pytest.mark.realdata
def test_gain_folding_matches_xspec_rebinning():
    """Under ISRO's gain (1.0043, 0.0316 keV) a smooth continuum folded by :meth:`Response.fold_density`
    (photons at their true energies, rows interpolated at slope (E + offset), area at E) agrees with
    XSPEC's rebinning of the same continuum within 0.5 % in every channel with counts, and the
    derivatives by slope and offset agree with finite differences of XSPEC's folding."""
    from class_qgis_plugin.fpmodel import Response
    from class_qgis_plugin.ogip import read_arf, read_rmf
    d = shared_data("class", "x2abund_test")
    rmf, arf = read_rmf(d / "class_rmf_v1.rmf"), read_arf(d / "class_arf_v1.arf")
    resp = Response(rmf, arf)
    e = np.arange(0.3, 20.0, 0.001)
    dens = 1e4 * np.exp(-e / 1.5)
    mid = 0.5 * (e[1:] + e[:-1])
    ph = (0.5 * (dens[1:] + dens[:-1]) * np.diff(e))[None]
    sl, off = 1.0043, 0.0316
    ours, d_sl, d_off = resp.fold_density(mid, ph, sl, off, grad=True)
    ref = _xspec_gain_fold(rmf, resp.area_rows, e, dens, sl, off)
    sig = ref > 1e-3 * ref.max()
    assert np.all(np.abs(ours[0][sig] / ref[sig] - 1) < 0.005)
    h = 1e-4
    fd_sl = (_xspec_gain_fold(rmf, resp.area_rows, e, dens, sl + h, off)
             - _xspec_gain_fold(rmf, resp.area_rows, e, dens, sl - h, off)) / (2 * h)
    fd_off = (_xspec_gain_fold(rmf, resp.area_rows, e, dens, sl, off + h)
              - _xspec_gain_fold(rmf, resp.area_rows, e, dens, sl, off - h)) / (2 * h)
    for ana, fd in ((d_sl[0], fd_sl), (d_off[0], fd_off)):
        big = np.abs(fd) > 0.05 * np.abs(fd).max()
        assert np.corrcoef(ana[big], fd[big])[0, 1] > 0.99
        assert np.median(ana[big] / fd[big]) == pytest.approx(1.0, abs=0.05)
    # lines: the same rows through line_rows, with its derivatives by finite differences
    E = np.array([1.4866, 1.7398, 3.6917])
    R, dRs, dRo = resp.line_rows(E, np.array([sl]), np.array([off]), grad=True)
    Rp = resp.line_rows(E, np.array([sl + h]), np.array([off]))
    Rm = resp.line_rows(E, np.array([sl - h]), np.array([off]))
    assert np.allclose(R[0], resp.area(E)[:, None] * Response(rmf, arf, sl, off).redistribution(E))
    assert np.allclose(dRs, (Rp - Rm) / (2 * h), rtol=0.02, atol=1e-3 * np.abs(dRs).max())


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
