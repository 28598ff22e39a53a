"""Thermal solar model: continuum limits, line energies, GOES class, table models."""
import numpy as np
import pytest
from astropy.io import fits
from conftest import shared_data
from scipy.special import k0

from class_qgis_plugin import solar as S

K_KEV = 8.617333262e-8  # keV/K (CODATA)


def test_ff_constant_matches_rybicki_lightman():
    # Rybicki & Lightman (1979) eq. 5.14b quotes 6.8e-38 erg s^-1 cm^3 Hz^-1 K^1/2
    assert S.ff_constant() == pytest.approx(6.8e-38, rel=0.01)


def test_born_gaunt_limits():
    c = np.sqrt(3) / np.pi
    # small u: K0(x) -> -ln(x/2) - gamma_E, so g -> (sqrt3/pi)(ln(4/u) - gamma_E)
    u = 1e-5
    assert S.gaunt_ff_born(u) == pytest.approx(c * (np.log(4 / u) - np.euler_gamma), rel=1e-4)
    # large u: e^x K0(x) -> sqrt(pi/(2x)), g -> (sqrt3/pi) sqrt(pi/u)
    u = 4000.0
    assert S.gaunt_ff_born(u) == pytest.approx(c * np.sqrt(np.pi / u), rel=1e-3)
    # against scipy's unscaled K0 at moderate u
    u = np.array([0.1, 1.0, 5.0])
    assert np.allclose(S.gaunt_ff_born(u), c * np.exp(u / 2) * k0(u / 2), rtol=1e-10)


def test_free_free_absolute_and_slope():
    T = 2e7
    E = np.array([3.0, 6.0])
    # hand calculation from R&L 5.14b: photons at 1 AU per keV per unit EM for a pure-H plasma
    # would be 6.8e-38 / h / (4 pi AU^2) g e^{-E/kT} / (E sqrt T); the model sums Z^2 over ions
    fr = {el: S.ion_fractions(el, np.array([T])) for el in S.ION_POTENTIALS_KEV}
    ab = {k: 10 ** (v - 12) for k, v in S.FELDMAN1992_CORONAL.items()}
    z2 = 1 + 4 * ab["He"] + sum(ab[el] * (fr[el][0] @ np.array([(S._Z[el] - 3) ** 2, (S._Z[el] - 2) ** 2,
                                                                 (S._Z[el] - 1) ** 2, S._Z[el] ** 2]))
                                for el in fr)
    kT = K_KEV * T
    hand = (6.8416e-38 / 6.62607015e-27 / (4 * np.pi * 1.495978707e13 ** 2) * z2
            * S.gaunt_ff_born(E / kT) * np.exp(-E / kT) / (E * np.sqrt(T)))
    assert np.allclose(S.free_free(E, T), hand, rtol=2e-4)
    assert 1.1 < z2 < 1.6   # H + He (0.38) + metals: sum Z^2 n_i / n_H of a coronal plasma
    # slope: ln(F E / g) falls as -E/kT (bremsstrahlung exp(-E/kT))
    Eg = np.linspace(2, 8, 7)
    f = S.free_free(Eg, T) * Eg / S.gaunt_ff_born(Eg / kT)
    assert np.allclose(np.diff(np.log(f)) / np.diff(Eg), -1 / kT, rtol=1e-9)


def test_free_bound_edges_and_tail():
    T = 1.5e7
    kT = K_KEV * T
    chi = S.ION_POTENTIALS_KEV["Si"][2]  # Si XIV ionisation energy: edge of recombination onto Si XIV 1s
    below, above = S.free_bound(np.array([chi - 1e-4, chi + 1e-4]), T)
    assert above > below * 1.01   # a recombination edge: a jump up at chi
    # above all edges the Kramers tail (photons) falls as exp(-E/kT)/E
    E = np.array([12.0, 14.0])
    fb = S.free_bound(E, T)
    assert fb[1] / fb[0] == pytest.approx(np.exp(-2.0 / kT) * 12 / 14, rel=1e-9)
    # fb ~ ff at a few keV for coronal abundances at ~10-20 MK (Culhane 1969; Mewe et al. 1986)
    r = S.free_bound(np.array([4.0]), T)[0] / S.free_free(np.array([4.0]), T)[0]
    assert 0.3 < r < 10


def test_ion_fractions():
    T = np.logspace(6.3, 8.0, 30)
    for el in ("O", "Si", "S", "Ca", "Fe"):
        f = S.ion_fractions(el, T)
        assert np.allclose(f.sum(axis=1), 1.0)
        mean_stage = f @ np.arange(4)
        assert np.all(np.diff(mean_stage) > -1e-9)  # ionisation rises with T
    # the temperature where H-like exceeds He-like rises with Z
    cross = []
    for el in ("O", "Mg", "Si", "S", "Ca", "Fe"):
        f = S.ion_fractions(el, np.logspace(5.5, 9, 400))
        cross.append(np.logspace(5.5, 9, 400)[np.argmax(f[:, 2] > f[:, 1])])
    assert np.all(np.diff(cross) > 0)
    # and lies near the published equilibrium (Mazzotta et al. 1998: Si XIV = Si XIII near
    # log T 7.1-7.2; Fe XXVI = Fe XXV above log T 8) within 0.25 dex
    assert abs(np.log10(cross[2]) - 7.15) < 0.25
    assert np.log10(cross[5]) > 7.8


def _dirac(Z, n, j):
    a = 7.2973525693e-3
    mc2 = 510.99895  # keV
    k = j + 0.5
    return mc2 * (1 / np.sqrt(1 + (Z * a / (n - k + np.sqrt(k * k - (Z * a) ** 2))) ** 2))


def test_hydrogenic_energies_against_dirac():
    """H-like Ly-alpha components and ionisation energies vs the Dirac formula (with the
    reduced-mass correction): within 0.1 %."""
    mass = {"Mg": 24.305, "Si": 28.085, "S": 32.06, "Ca": 40.078, "Fe": 55.845}
    for name, el in [("Mg XII", "Mg"), ("Si XIV", "Si"), ("S XVI", "S"), ("Ca XX", "Ca"), ("Fe XXVI", "Fe")]:
        Z = S._Z[el]
        red = 1 / (1 + 510.99895 / (mass[el] * 931494.1))
        lya1 = (_dirac(Z, 2, 1.5) - _dirac(Z, 1, 0.5)) * red
        lya2 = (_dirac(Z, 2, 0.5) - _dirac(Z, 1, 0.5)) * red
        comps = S.LINE_COMPLEXES[name][2]
        assert comps[0][0] == pytest.approx(lya1, rel=1e-3)
        assert comps[1][0] == pytest.approx(lya2, rel=1e-3)
        ip = (510.99895 - _dirac(Z, 1, 0.5)) * red
        assert S.ION_POTENTIALS_KEV[el][2] == pytest.approx(ip, rel=1e-3)


def test_issue_line_energies_present():
    # the complexes named in the issue, at their energies (keV), and weights summing to 1
    want = {"Mg XI": 1.35, "Mg XII": 1.47, "Si XIII": 1.86, "Si XIV": 2.01, "S XV": 2.46,
            "Ar XVII": 3.14, "Ca XIX": 3.90, "Ca XX": 4.10, "Fe XXV": 6.70, "Fe XXVI": 6.97}
    for name, e in want.items():
        comps = S.LINE_COMPLEXES[name][2]
        assert comps[0][0] == pytest.approx(e, abs=0.01)
        assert sum(w for _, w in comps) == pytest.approx(1.0)
    assert any(abs(e - 7.88) < 0.1 for e, _ in S.LINE_COMPLEXES["Fe XXV"][2])


def test_line_matrix_conserves_photons():
    lo, hi = S.energy_grid()
    M = S.line_matrix(lo, hi, two_photon=0.0)
    assert np.allclose(M @ (hi - lo), 1.0)
    M2 = S.line_matrix(lo, hi)
    # two-photon adds 2 photons per decay at TWO_PHOTON_RATIO decays per line photon (H/He-like);
    # for Fe XXV (6.7 keV) the part below the grid's 0.1 keV start is negligible
    k = list(S.LINE_COMPLEXES).index("Fe XXV")
    assert (M2 @ (hi - lo))[k] == pytest.approx(1 + 2 * S.TWO_PHOTON_RATIO, rel=2e-3)


def test_two_photon_shape():
    y = np.linspace(0, 1, 20001)
    s = S.two_photon_shape(y)
    assert np.trapz(s, y) == pytest.approx(2.0, rel=1e-4)
    assert np.allclose(s, s[::-1])  # symmetric about y = 1/2


def test_abundances_coronal_not_photospheric():
    fe = 10 ** (S.FELDMAN1992_CORONAL["Fe"] - S.ASPLUND2009_PHOTOSPHERIC["Fe"])
    assert 3 < fe < 5   # coronal Fe ~4x photospheric (FIP effect)
    # high-FIP elements (O, Ne, Ar) are not enhanced by as much as low-FIP ones (Mg, Si, Fe, Ca)
    enh = {el: S.FELDMAN1992_CORONAL[el] - S.ASPLUND2009_PHOTOSPHERIC[el] for el in S.FELDMAN1992_CORONAL}
    assert min(enh[e] for e in ("Mg", "Si", "Fe", "Ca")) > max(enh[e] for e in ("Ne", "Ar"))


def test_goes_class_boundaries_and_flux():
    assert S.goes_class(1e-8) == "A1.0"
    assert S.goes_class(1e-7) == "B1.0"
    assert S.goes_class(9.9e-7) == "B9.9"
    assert S.goes_class(1e-6) == "C1.0"
    assert S.goes_class(2.34e-5) == "M2.3"
    assert S.goes_class(1e-4) == "X1.0"
    assert S.goes_class(2.5e-3) == "X25.0"
    assert S.goes_class(5e-9) == "<A1"
    # flat photon spectrum F0: 1-8 A energy flux = F0 (E2^2 - E1^2)/2 keV cm^-2 s^-1
    lo, hi = S.energy_grid()
    F0 = 1e3
    e1, e2 = 12.398419843 / 8, 12.398419843
    want = F0 * (e2 ** 2 - e1 ** 2) / 2 * 1.602176634e-16 * 1e4
    assert S.goes_flux(lo, hi, np.full(lo.size, F0)) == pytest.approx(want, rel=1e-4)


def test_model_goes_class_of_typical_flares():
    # a 15 MK, 1e48 cm^-3 plasma is a C/M-class flare; 1e49 cm^-3 at 20 MK an M/X-class
    # (Feldman et al. 1996; White, Thomas & Schwartz 2005 GOES temperature-EM relation)
    lo, hi = S.energy_grid()
    m = S.SolarModel(lo, hi)
    th = np.zeros(m.n_params)
    th[2] = -40
    th[4:] = -40
    th[0], th[1] = np.log(1e48 / S.EM_UNIT), np.log(15.0)
    assert S.goes_class(S.goes_flux(lo, hi, m.evaluate(th)))[0] in "CM"
    th[0], th[1] = np.log(1e49 / S.EM_UNIT), np.log(20.0)
    assert S.goes_class(S.goes_flux(lo, hi, m.evaluate(th)))[0] in "MX"


def test_read_isro_table_model():
    import glob
    path = glob.glob(str(shared_data("class", "x2abund_test") / "tbmodel_*.fits"))[0]
    t = S.read_table_model(path)
    raw = fits.getdata(path, "SPECTRA")["INTPSPEC"]
    assert t.names == ["addnorm"] and t.spectra.shape == raw.shape
    g = t.grids[0]
    assert np.allclose(t.evaluate([g[3]]), raw[3])
    assert np.allclose(t.evaluate([0.5 * (g[3] + g[4])]), 0.5 * (raw[3] + raw[4]), rtol=1e-6)


def test_table_model_bilinear(tmp_path):
    # a 2-parameter table of a function linear in each parameter: interpolation is exact
    e = np.linspace(1, 2, 6)
    p1 = np.array([1.0, 2.0, 4.0])
    p2 = np.array([0.0, 10.0])
    spectra = np.array([[a * (1 + e[:-1]) + b for b in p2] for a in p1]).reshape(6, 5)
    params = fits.BinTableHDU.from_columns([
        fits.Column("NAME", "12A", array=["kT", "x"]), fits.Column("METHOD", "J", array=[0, 0]),
        fits.Column("INITIAL", "E", array=[1, 0]), fits.Column("DELTA", "E", array=[0.1, 0.1]),
        fits.Column("MINIMUM", "E", array=[1, 0]), fits.Column("BOTTOM", "E", array=[1, 0]),
        fits.Column("TOP", "E", array=[4, 10]), fits.Column("MAXIMUM", "E", array=[4, 10]),
        fits.Column("NUMBVALS", "J", array=[3, 2]),
        fits.Column("VALUE", "3E", array=[[1, 2, 4], [0, 10, 0]])], name="PARAMETERS")
    params.header["NINTPARM"] = 2
    params.header["NADDPARM"] = 0
    en = fits.BinTableHDU.from_columns([fits.Column("ENERG_LO", "E", array=e[:-1]),
                                        fits.Column("ENERG_HI", "E", array=e[1:])], name="ENERGIES")
    sp = fits.BinTableHDU.from_columns([fits.Column("PARAMVAL", "2E", array=[[a, b] for a in p1 for b in p2]),
                                        fits.Column("INTPSPEC", "5E", array=spectra)], name="SPECTRA")
    path = tmp_path / "t.fits"
    fits.HDUList([fits.PrimaryHDU(), params, en, sp]).writeto(path)
    t = S.read_table_model(path)
    assert np.allclose(t.evaluate([3.0, 2.5]), 3.0 * (1 + e[:-1]) + 2.5, rtol=1e-6)
    with pytest.raises(S.ClassXRFError, match="PARAMETERS"):
        t.evaluate([1.0])


def test_thermal_table_matches_the_continuum_and_its_temperature_slope():
    """The solar fit's temperature table (a spline of ln continuum in ln T) against the continuum
    computed directly (ionisation balance, every edge) at temperatures between its nodes, and its
    slope against a central difference of the direct continuum."""
    from class_qgis_plugin import solar
    E = np.linspace(1.2, 7.2, 301)
    tab = solar.thermal_table(E)
    T = np.exp(np.random.default_rng(5).uniform(np.log(0.8), np.log(120.0), 40))
    direct = solar.thermal_continuum(E, T * 1e6)
    np.testing.assert_allclose(np.exp(tab(np.log(T))), direct, rtol=1e-6)
    h = 1e-4
    slope = (np.log(solar.thermal_continuum(E, T * np.exp(h) * 1e6))
             - np.log(solar.thermal_continuum(E, T * np.exp(-h) * 1e6))) / (2 * h)
    np.testing.assert_allclose(tab(np.log(T), 1), slope, rtol=1e-5, atol=1e-4)
    model = solar.SolarModel(E - 0.01, E + 0.01)
    f, df = model.thermal(np.log(T[:3]))
    np.testing.assert_allclose(f, model.continuum(T[:3]), rtol=1e-6)
