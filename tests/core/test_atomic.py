"""Atomic data of class_qgis_plugin.atomic against xraylib's scalar tables and textbook values."""
import numpy as np
import pytest
import xraylib

from class_qgis_plugin.atomic import AtomicData, atomic_data, compton_energy
from class_qgis_plugin.composition import ELEMENTS, Z

GRID = np.arange(0.505, 12.0, 0.01)


@pytest.fixture(scope="module")
def ad():
    return atomic_data(GRID)


def test_cached_once_per_grid(ad):
    assert atomic_data(GRID) is ad
    assert atomic_data(GRID + 0.001) is not ad


def test_k_alpha_energies_against_published_values(ad):
    # Bearden (1967) K alpha1,2 weighted energies, keV
    published = {"O": 0.525, "Na": 1.041, "Mg": 1.254, "Al": 1.487, "Si": 1.740, "Ca": 3.691,
                 "Ti": 4.509, "Fe": 6.400}
    for el, e in published.items():
        assert ad.line_energy[ad.line_index(f"{el} Ka")] == pytest.approx(e, abs=0.004)


def test_lines_yields_and_rates_match_xraylib_scalars(ad):
    for l, name in enumerate(ad.line_names):
        z = int(Z[ad.line_element[l]])
        line = int(ad.line_macro[l])
        assert ad.line_energy[l] == pytest.approx(xraylib.LineEnergy(z, line), rel=1e-12)
        assert ad.line_radrate[l] == pytest.approx(xraylib.RadRate(z, line), rel=1e-12)
        assert ad.line_yield[l] == pytest.approx(xraylib.FluorYield(z, int(ad.line_shell[l])), rel=1e-12)
    # Fe L lines are in (0.70 keV); Ti/Ca L lines (< 0.6 keV) are not
    assert "Fe La" in ad.line_names and not any(n.startswith("Ca L") for n in ad.line_names)


def test_k_line_cross_section_is_photo_partial_times_yield_times_rate(ad):
    for el in ("Mg", "Si", "Ca", "Fe"):
        l = ad.line_index(f"{el} Ka")
        z = int(Z[ELEMENTS.index(el)])
        for e in (2.5, 5.0, 8.0):
            k = int(np.argmin(np.abs(GRID - e)))
            want = (xraylib.CS_Photo_Partial(z, xraylib.K_SHELL, GRID[k]) * xraylib.FluorYield(z, xraylib.K_SHELL)
                    * xraylib.RadRate(z, xraylib.KA_LINE)) if GRID[k] > xraylib.EdgeEnergy(z, xraylib.K_SHELL) else 0.0
            assert ad.line_xs[l, k] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_jump_ratio_approximation_close_to_partial_cross_sections(ad):
    jr = ad.line_xs_jump_ratio()
    for el in ("Na", "Mg", "Al", "Si", "Ca", "Ti", "Fe"):
        l = ad.line_index(f"{el} Ka")
        above = GRID > 1.05 * ad.edge_K[ELEMENTS.index(el)]
        r = jr[l, above] / ad.line_xs[l, above]
        assert np.all(np.abs(r - 1) < 0.15)
        assert np.all(jr[l, GRID < ad.edge_K[ELEMENTS.index(el)]] == 0)


def test_attenuation_and_edges(ad):
    for j, z in enumerate(Z):
        for k in (10, 500, 1000):
            assert ad.mu_total[j, k] == pytest.approx(xraylib.CS_Total(int(z), GRID[k]), rel=1e-12)
        assert ad.edge_K[j] == pytest.approx(xraylib.EdgeEnergy(int(z), xraylib.K_SHELL))
        assert ad.jump_K[j] == pytest.approx(xraylib.JumpFactor(int(z), xraylib.K_SHELL))
    # an absorption edge makes mu jump up
    si = ELEMENTS.index("Si")
    k = np.searchsorted(GRID, ad.edge_K[si])
    assert ad.mu_total[si, k] > 5 * ad.mu_total[si, k - 1]


def test_scatter_cross_sections_at_the_scattering_angle():
    a = AtomicData(np.array([1.0, 2.0, 4.0, 7.0]))
    ray, com = a.scatter_dcs([115.0, 115.5])
    for j, z in enumerate(Z):
        for k, e in enumerate(a.energy):
            th = np.deg2rad(115.0)
            assert ray[0, j, k] == pytest.approx(xraylib.DCS_Rayl(int(z), e, th), rel=1e-10)
            assert com[0, j, k] == pytest.approx(xraylib.DCS_Compt(int(z), e, th), rel=1e-10)
            # half a degree: linear interpolation, within 0.5 % of the exact value
            assert ray[1, j, k] == pytest.approx(xraylib.DCS_Rayl(int(z), e, np.deg2rad(115.5)), rel=5e-3)
            assert com[1, j, k] == pytest.approx(xraylib.DCS_Compt(int(z), e, np.deg2rad(115.5)), rel=5e-3)


def test_compton_energy_matches_xraylib():
    for e in (1.0, 4.0, 10.0):
        for th in (30.0, 115.0, 180.0):
            assert compton_energy(e, th) == pytest.approx(xraylib.ComptonEnergy(e, np.deg2rad(th)), rel=1e-8)
