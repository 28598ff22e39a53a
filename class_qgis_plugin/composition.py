"""The eight elements of the CLASS inversion, reference lunar compositions, oxide stoichiometry.

Element order everywhere in the plugin: :data:`ELEMENTS` = O, Na, Mg, Al, Si, Ca, Ti, Fe.

Reference compositions (wt%, normalised to 100 over the 8 elements), carried from
``../shared/data/reference/lunar_soils_element_wt.csv``:

* landing-site soil averages of the Lunar Sourcebook (Heiken, Vaniman and French 1991), Table 7.15,
  oxides converted to elements with O by stoichiometry;
* the feldspathic highlands endmember "AFHT" of Prettyman et al. (2006, J. Geophys. Res. 111,
  E12007), calibrated on the feldspathic lunar meteorites of Korotev (2003).

Mare-like soils: Apollo 11, 12, 15, 17, Luna 16, 24. Highland-like: Apollo 16 and AFHT.
:data:`MARE_WT` and :data:`HIGHLAND_WT` are the plain means of those rows over the 8 elements,
renormalised to 100 % (Mn and K, < 0.5 wt% together, are left out).
"""
import numpy as np

from .choices import ELEMENTS  # noqa: F401  (the element order, re-exported as composition.ELEMENTS)
Z = np.array([8, 11, 12, 13, 14, 20, 22, 26], dtype=np.int64)

# Standard atomic weights (IUPAC 2013 abridged), g/mol, in ELEMENTS order.
ATOMIC_WEIGHT = np.array([15.999, 22.990, 24.305, 26.982, 28.085, 40.078, 47.867, 55.845])

# Oxygen atoms per cation atom in the oxide each cation forms in lunar soils:
# Na2O, MgO, Al2O3, SiO2, CaO, TiO2, FeO (iron is ferrous on the Moon).
OXYGEN_PER_CATION = np.array([0.5, 1.0, 1.5, 2.0, 1.0, 2.0, 1.0])

# Element wt% of the landing-site soils (Lunar Sourcebook Tab. 7.15; AFHT: Prettyman et al. 2006),
# in ELEMENTS order, as listed in lunar_soils_element_wt.csv.
SOIL_WT = {
    "A11": (42.09, 0.35, 4.70, 7.20, 19.73, 8.50, 4.67, 11.89),
    "A12": (42.28, 0.40, 5.61, 6.83, 21.64, 7.65, 1.80, 11.74),
    "A14": (43.89, 0.52, 5.67, 9.21, 22.48, 7.65, 1.02, 8.08),
    "A15": (43.37, 0.29, 6.93, 7.73, 21.88, 7.72, 0.84, 11.12),
    "A16": (45.13, 0.34, 3.44, 14.45, 21.03, 11.22, 0.32, 3.96),
    "A17": (43.11, 0.30, 6.27, 9.05, 20.19, 8.43, 2.52, 9.48),
    "L16": (41.71, 0.25, 5.31, 8.10, 19.49, 8.93, 2.04, 12.98),
    "L20": (44.67, 0.37, 5.91, 11.80, 21.08, 10.79, 0.33, 5.44),
    "L24": (41.58, 0.23, 5.67, 6.62, 20.52, 8.79, 0.78, 15.39),
    "AFHT": (45.31, 0.26, 3.26, 14.92, 20.89, 11.65, 0.13, 3.42),
}
MARE_SITES = ("A11", "A12", "A15", "A17", "L16", "L24")
HIGHLAND_SITES = ("A16", "AFHT")


def _group_mean(sites):
    m = np.mean([SOIL_WT[s] for s in sites], axis=0)
    return 100.0 * m / m.sum()


MARE_WT = _group_mean(MARE_SITES)
HIGHLAND_WT = _group_mean(HIGHLAND_SITES)

# Plausible ranges of lunar regolith (wt%), wide enough to hold every returned soil and the
# feldspathic and basaltic extremes (Lunar Sourcebook Tab. 7.15; Prettyman et al. 2006).
LUNAR_RANGE = {
    "O": (38.0, 48.0), "Na": (0.0, 2.0), "Mg": (0.0, 15.0), "Al": (2.0, 20.0),
    "Si": (15.0, 26.0), "Ca": (4.0, 16.0), "Ti": (0.0, 9.0), "Fe": (0.0, 20.0),
}


def oxygen_from_cations(wt):
    """Oxygen bound to the cations as oxides (Na2O, MgO, Al2O3, SiO2, CaO, TiO2, FeO).

    ``wt``: array (..., 7) of cation masses (wt%, fractions, grams: any mass unit) in the order
    Na, Mg, Al, Si, Ca, Ti, Fe. Returns the oxygen mass (...,) in the same unit:
    ``O = A_O * sum_i n_i wt_i / A_i`` with n_i oxygen atoms per cation atom.
    """
    wt = np.asarray(wt, dtype=float)
    if wt.shape[-1] != 7:
        raise ValueError(f"oxygen_from_cations wants 7 cations (Na..Fe) on the last axis, got {wt.shape}")
    return ATOMIC_WEIGHT[0] * np.sum(wt * (OXYGEN_PER_CATION / ATOMIC_WEIGHT[1:]), axis=-1)


def oxygen_fraction_coefficients():
    """c_i (7,) such that O = sum_i c_i wt_i for the cations (the linear map of :func:`oxygen_from_cations`)."""
    return ATOMIC_WEIGHT[0] * OXYGEN_PER_CATION / ATOMIC_WEIGHT[1:]


def with_stoichiometric_oxygen(cation_wt, total=100.0):
    """Full 8-element composition (..., 8) from cation proportions (..., 7), O by stoichiometry.

    The cations are scaled so that cations plus their oxygen sum to ``total``.
    """
    c = np.asarray(cation_wt, dtype=float)
    o = oxygen_from_cations(c)
    s = c.sum(axis=-1) + o
    full = np.concatenate([o[..., None], c], axis=-1)
    return total * full / s[..., None]


def mix(f_mare, total=100.0):
    """A mare/highland mixture: ``f_mare * MARE_WT + (1 - f_mare) * HIGHLAND_WT`` (... , 8), sums to ``total``."""
    f = np.asarray(f_mare, dtype=float)[..., None]
    return (total / 100.0) * (f * MARE_WT + (1.0 - f) * HIGHLAND_WT)
