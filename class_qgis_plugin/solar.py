"""Solar X-ray spectrum model: optically thin thermal plasma + line complexes + power law.

Everything the model needs is carried here, with its sources; no APEC/CHIANTI data are read.
Fluxes are photon flux densities at 1 AU (photons cm^-2 s^-1 keV^-1); the emission measure
``EM = n_e n_H V`` is in cm^-3.

Continuum (per unit EM, at temperature T)
-----------------------------------------
* Free-free: the Kramers/Rybicki-Lightman emissivity (Rybicki & Lightman 1979, eq. 5.14b,
  ``6.8e-38 Z^2 n_e n_i T^-1/2 exp(-h nu/kT) g_ff`` erg s^-1 cm^-3 Hz^-1; the constant is
  computed here from CODATA constants) summed over ions ``sum_i n_i z_i^2 / n_H``, with the
  thermally averaged non-relativistic Born Gaunt factor
  ``g_ff = (sqrt(3)/pi) exp(u/2) K_0(u/2)``, ``u = E/kT`` (Karzas & Latter 1961; Rybicki &
  Lightman Fig. 5.2), valid when ``Z^2 Ry << kT`` (hydrogen and helium, which dominate the
  free-free emission, at the 2-50 MK of the corona and flares).
* Free-bound: the hydrogenic Kramers recombination continuum with vacancy factors and
  effective charges, as used by Mewe, Lemen & van den Oord (1986, A&AS 65, 511) and Tucker &
  Koren (1971): recombination onto shell n with ionisation energy ``chi_n`` of the recombined ion
  adds, above ``E = chi_n``, ``(n_ion/n_H) zeta z_eff^2 (2 chi_n / (n kT)) exp(chi_n/kT)`` times
  the free-free emission of hydrogen (with g = 1), where ``z_eff^2 = n^2 chi_n / Ry`` and
  ``zeta`` is the fraction of vacant states in the shell. Ions: bare, H-like and He-like
  recombining ions of C, N, O, Ne, Mg, Si, S, Ar, Ca, Fe, Ni; Fe L-shell ions (Fe XVIII-XXIV, ionisation
  energies 1.36-2.05 keV) as one n = 2 edge at 1.6 keV with vacancy 1/2.
* Ionisation balance (coronal approximation) of the four top stages of each element (a lump of
  Li-like and lower, He-like, H-like, bare): collisional ionisation of Lotz (1968, Z. Phys. 216,
  241), radiative recombination of Seaton (1959, MNRAS 119, 81), dielectronic recombination of
  Burgess (1965, ApJ 141, 1588) through the resonance transition of the recombining ion.
  Approximate (tens of per cent in the ion fractions); the fit's line strengths are free, so the
  balance only shapes the recombination continuum.
* Two-photon continuum of the 2s levels of H-like and He-like ions: the spectral shape of
  Nussbaumer & Schmutz (1984, A&A 138, 495), tied to each line complex at
  :data:`TWO_PHOTON_RATIO` decays per resonance-line photon (an approximation: collisional 2s
  excitation is a fraction of 2p excitation in hydrogenic ions).

Abundances: coronal, Feldman (1992, Physica Scripta 46, 202) (as CHIANTI's
``sun_coronal_1992_feldman``). Fe is 8.10, about 4 times the photospheric 7.50 of Asplund et al.
2009 (the first-ionisation-potential effect): do not mix tables that carry photospheric Fe.

Lines
-----
The complexes that dominate 1-8 keV (:data:`LINE_COMPLEXES`), each a free photon flux at fixed
energies, with its weaker n=3 lines (He-beta 10 %, Ly-beta 13 % of the complex: approximate
collisional-excitation ratios) tied to it: He-like complexes as w, x+y, z components in the ratio 1 : 0.30 : 0.45 (a G ratio
(x+y+z)/w of 0.75, typical of collisional equilibrium at these temperatures: Gabriel & Jordan
1969, MNRAS 145, 241; Porquet et al. 2010, Space Sci. Rev. 157, 103); H-like Ly-alpha as the
2p3/2 and 2p1/2 components in the statistical ratio 2 : 1. Energies from the NIST Atomic Spectra
Database / Kelly (1987) wavelengths (H-like energies agree with the Dirac formula to 0.05 %).

Also: an OGIP/XSPEC table model reader (:func:`read_table_model`, the ``atable`` format with
``PARAMETERS``, ``ENERGIES``, ``SPECTRA``), and the GOES class from the 1-8 A flux
(:func:`goes_flux`, :func:`goes_class`).
"""
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import ClassXRFError

__all__ = [
    "FELDMAN1992_CORONAL", "ASPLUND2009_PHOTOSPHERIC", "LINE_COMPLEXES", "ION_POTENTIALS_KEV",
    "RYDBERG_KEV", "ff_constant", "gaunt_ff_born", "ion_fractions", "free_free",
    "free_bound", "thermal_continuum", "two_photon_shape", "line_matrix", "power_law",
    "SolarModel", "goes_flux", "goes_class", "GOES_THRESHOLDS", "TableModel", "read_table_model",
    "energy_grid", "EM_UNIT",
]

# --------------------------------------------------------------------------------------------
# Constants (CODATA 2018, CGS)
# --------------------------------------------------------------------------------------------
_E_CHARGE = 4.80320471e-10      # esu
_M_E = 9.1093837015e-28         # g
_C = 2.99792458e10              # cm/s
_K_B = 1.380649e-16             # erg/K
_H = 6.62607015e-27             # erg s
_KEV_ERG = 1.602176634e-9       # erg per keV
_AU_CM = 1.495978707e13
_K_KEV = 8.617333262e-8         # keV per K
RYDBERG_KEV = 13.605693122994e-3
EM_UNIT = 1e46                  # scale of the fitted emission measure (cm^-3)

# --------------------------------------------------------------------------------------------
# Abundances: log10(n_X/n_H) + 12
# --------------------------------------------------------------------------------------------
#: Feldman (1992, Physica Scripta 46, 202), coronal (as distributed with CHIANTI).
FELDMAN1992_CORONAL = {
    "H": 12.00, "He": 10.98, "C": 8.59, "N": 8.00, "O": 8.89, "Ne": 8.08, "Na": 6.93,
    "Mg": 8.15, "Al": 7.04, "Si": 8.10, "S": 7.27, "Ar": 6.58, "K": 5.67, "Ca": 6.93,
    "Fe": 8.10, "Ni": 6.84,
}
#: Asplund, Grevesse, Sauval & Scott (2009, ARA&A 47, 481), photospheric: for comparison only.
ASPLUND2009_PHOTOSPHERIC = {
    "H": 12.00, "He": 10.93, "C": 8.43, "N": 7.83, "O": 8.69, "Ne": 7.93, "Na": 6.24,
    "Mg": 7.60, "Al": 6.45, "Si": 7.51, "S": 7.12, "Ar": 6.40, "K": 5.03, "Ca": 6.34,
    "Fe": 7.50, "Ni": 6.22,
}
_Z = {"H": 1, "He": 2, "C": 6, "N": 7, "O": 8, "Ne": 10, "Na": 11, "Mg": 12, "Al": 13, "Si": 14,
      "S": 16, "Ar": 18, "K": 19, "Ca": 20, "Fe": 26, "Ni": 28}

#: Ionisation energies (keV) of the Li-like, He-like and H-like ions (NIST Atomic Spectra
#: Database, ground-state ionisation energies), and the energy (keV) of the resonance line of
#: the H-like (Ly-alpha) and He-like (w, 1s2 1S0 - 1s2p 1P1) ions, which drive dielectronic
#: recombination.
ION_POTENTIALS_KEV = {
    #        Li-like  He-like  H-like   Ly-a     He w
    "C":  (0.06449, 0.39209, 0.48999, 0.3675, 0.3079),
    "N":  (0.09789, 0.55206, 0.66705, 0.5003, 0.4307),
    "O":  (0.13812, 0.73932, 0.87141, 0.6536, 0.5740),
    "Ne": (0.23911, 1.19582, 1.36213, 1.0218, 0.9220),
    "Mg": (0.36750, 1.76196, 1.96287, 1.4723, 1.3523),
    "Si": (0.52313, 2.43789, 2.67308, 2.0055, 1.8650),
    "S":  (0.70704, 3.22378, 3.49445, 2.6227, 2.4606),
    "Ar": (0.91842, 4.12067, 4.42607, 3.3225, 3.1399),
    "Ca": (1.15742, 5.12874, 5.46944, 4.1075, 3.9026),
    "Fe": (2.04538, 8.82804, 9.27787, 6.9662, 6.7004),
    "Ni": (2.29580, 10.28864, 10.77540, 8.0910, 7.8056),
}
#: Fe L-shell ions: one effective n = 2 recombination edge (Fe XVIII-XXIV: 1.36-2.05 keV).
FE_L_EDGE_KEV = 1.6000

#: Line complexes: name -> (element, kind, [(energy keV, weight), ...]); weights sum to 1.
def _he(w, xy, z, beta=None, extra=()):
    """He-like complex: w, x+y, z in 1 : 0.30 : 0.45, plus 1s2-1s3p (He-beta) at 0.10 of the
    complex and any extra blended components (energy, weight)."""
    comps = [(w, 1.0), (xy, 0.30), (z, 0.45)]
    s = 1.75
    if beta is not None:
        comps.append((beta, 0.10 * s / 0.90))
        s = s / 0.90
    comps += [(e, f * s) for e, f in extra]
    tot = sum(c[1] for c in comps)
    return [(e, f / tot) for e, f in comps]


def _h(a1, a2, beta=None):
    """H-like Ly-alpha 2p3/2, 2p1/2 in 2 : 1 plus Ly-beta at 0.13 of the complex."""
    comps = [(a1, 2 / 3), (a2, 1 / 3)]
    if beta is not None:
        comps = [(a1, 2 / 3 * 0.87), (a2, 1 / 3 * 0.87), (beta, 0.13)]
    return comps


LINE_COMPLEXES = {
    # Al XII w (1.598 keV) rides on Mg XI at 0.08 (coronal Al/Mg = 0.08).
    "Mg XI": ("Mg", "He", _he(1.3523, 1.3431, 1.3311, 1.5794, extra=((1.5985, 0.08),))),
    "Mg XII": ("Mg", "H", _h(1.4726, 1.4717, 1.7449)),
    "Si XIII": ("Si", "He", _he(1.8650, 1.8538, 1.8394, 2.1826)),
    "Si XIV": ("Si", "H", _h(2.0061, 2.0043, 2.3766)),
    "S XV": ("S", "He", _he(2.4606, 2.4470, 2.4300, 2.8840)),
    "S XVI": ("S", "H", _h(2.6233, 2.6197, 3.1067)),
    "Ar XVII": ("Ar", "He", _he(3.1399, 3.1234, 3.1040, 3.6840)),
    "Ca XIX": ("Ca", "He", _he(3.9026, 3.8840, 3.8611, 4.5830)),
    "Ca XX": ("Ca", "H", _h(4.1086, 4.0999, 4.8640)),
    # Fe XXV: the Fe/Ni complex near 7.9 keV (Fe XXV He-beta 7.881, Ni XXVII w 7.806) lies above
    # the 1.2-7.2 keV fit band, so it is tied to Fe XXV (He-beta 0.10, Ni 0.05) instead of free.
    # Fe XXIV dielectronic/inner-shell satellites j+k (6.638), q (6.662), r (6.629 keV) at
    # 0.30, 0.15, 0.10 of w (Bely-Dubau et al. 1982, MNRAS 201, 1155; strong at 10-15 MK).
    "Fe XXV": ("Fe", "He", _he(6.7004, 6.6750, 6.6366, 7.8811,
                               extra=((7.8056, 0.05), (6.6380, 0.30 / 1.75), (6.6620, 0.15 / 1.75),
                                      (6.6290, 0.10 / 1.75)))),
    "Fe XXVI": ("Fe", "H", _h(6.9732, 6.9520, 8.2530)),
}
#: Two-photon decays per resonance-line photon (approximation, see module docstring).
TWO_PHOTON_RATIO = 0.2

#: GOES classes: lower bound of the 1-8 A flux (W m^-2 at 1 AU).
GOES_THRESHOLDS = (("A", 1e-8), ("B", 1e-7), ("C", 1e-6), ("M", 1e-5), ("X", 1e-4))


def energy_grid(e_lo=0.1, e_hi=30.1, step=0.01):
    """The fixed output grid (ISRO's ``modelop``): bin edges ``(lo, hi)`` from ``e_lo`` in
    ``step`` keV bins."""
    n = int(round((e_hi - e_lo) / step))
    lo = e_lo + step * np.arange(n)
    return lo, lo + step


# --------------------------------------------------------------------------------------------
# Continuum
# --------------------------------------------------------------------------------------------

def ff_constant():
    """The free-free emissivity constant (erg s^-1 cm^3 Hz^-1 K^1/2) of Rybicki & Lightman
    eq. 5.14b: ``2^5 pi e^6 / (3 m c^3) * sqrt(2 pi / (3 k m))`` (= 6.8e-38)."""
    return (2 ** 5 * np.pi * _E_CHARGE ** 6 / (3 * _M_E * _C ** 3)
            * np.sqrt(2 * np.pi / (3 * _K_B * _M_E)))


def _ff_photon_coeff():
    """Photon flux density at 1 AU per (Z^2 EM) without Gaunt factor, times E sqrt(T) e^{E/kT}:
    photons cm^-2 s^-1 keV^-1 keV K^1/2 per cm^-3."""
    return ff_constant() / (_H * 4 * np.pi * _AU_CM ** 2)


def gaunt_ff_born(u):
    """Thermally averaged non-relativistic Born free-free Gaunt factor,
    ``(sqrt(3)/pi) exp(u/2) K_0(u/2)`` with ``u = h nu / kT``."""
    from scipy.special import k0e
    return np.sqrt(3.0) / np.pi * k0e(0.5 * np.asarray(u, float))


def _abund(abundances):
    ab = FELDMAN1992_CORONAL if abundances is None else abundances
    return {el: 10.0 ** (ab[el] - 12.0) for el in ab}


def _lotz(P_keV, q, kT_keV):
    """Lotz (1968) direct ionisation rate coefficient (cm^3 s^-1): ``6.7e7 a q (kT)^-3/2
    E1(x)/x``, ``x = P/kT``, ``a = 4.5e-14 cm^2 eV^2``, energies in eV."""
    from scipy.special import exp1
    kT = kT_keV * 1e3
    x = P_keV * 1e3 / kT
    # exp(x) E1(x) / x stays finite; keep exp(-x) separately in log space by the caller
    return 6.7e7 * 4.5e-14 * q * kT ** -1.5 * exp1(np.minimum(x, 700.0)) / x


def _seaton_rr(z, T):
    """Seaton (1959) hydrogenic radiative recombination coefficient (cm^3 s^-1) onto an ion of
    charge ``z`` at electron temperature T (K)."""
    lam = 157890.0 * z * z / T
    return 5.197e-14 * z * np.sqrt(lam) * (0.4288 + 0.5 * np.log(lam) + 0.469 * lam ** (-1 / 3))


def _burgess_dr(z, dE_keV, f, T):
    """Burgess (1965) general formula for dielectronic recombination (cm^3 s^-1) through one
    resonance transition of energy ``dE`` and oscillator strength ``f``; ``z`` is the charge of
    the ion after recombination."""
    ry_ev = RYDBERG_KEV * 1e3
    B = np.sqrt(z) * (z + 1) ** 2.5 / np.sqrt(z * z + 13.4)
    x = dE_keV * 1e3 / ((z + 1) * ry_ev)
    A = np.sqrt(x) / (1 + 0.105 * x + 0.015 * x * x)
    a = 1 + 0.015 * z ** 3 / (z + 1) ** 2
    return 3.0e-3 * T ** -1.5 * B * f * A * np.exp(-dE_keV / (a * _K_KEV * T))


def ion_fractions(element, T):
    """Fractions of (Li-like and lower, He-like, H-like, bare) ions of ``element`` at electron
    temperature(s) ``T`` (K) in collisional ionisation equilibrium (see module docstring).
    Returns an array of shape ``T.shape + (4,)`` summing to 1."""
    T = np.asarray(T, float)
    Z = _Z[element]
    p_li, p_he, p_h, e_lya, e_w = ION_POTENTIALS_KEV[element]
    kT = _K_KEV * T
    # ionisation (rate without exp(-P/kT)) and recombination; ratios in log space
    logs = []
    for P, q, z_rec, dr in ((p_li, 1, Z - 2, (e_w, 0.70, Z - 3)),
                            (p_he, 2, Z - 1, (e_lya, 0.416, Z - 2)),
                            (p_h, 1, Z, None)):
        s = _lotz(P, q, kT)  # includes exp1 which already carries exp(-x)
        rr = _seaton_rr(z_rec, T) * (0.5 if z_rec == Z - 2 else (0.75 if z_rec == Z - 1 else 1.0))
        alpha = rr + (0.0 if dr is None else _burgess_dr(dr[2], dr[0], dr[1], T))
        logs.append(np.log(np.maximum(s, 1e-300)) - np.log(alpha))
    l0 = np.zeros_like(T)
    l1 = l0 + logs[0]
    l2 = l1 + logs[1]
    l3 = l2 + logs[2]
    L = np.stack([l0, l1, l2, l3], axis=-1)
    L -= L.max(axis=-1, keepdims=True)
    w = np.exp(L)
    return w / w.sum(axis=-1, keepdims=True)


_EDGE_CACHE = {}


def _edges(abundances):
    """Static description of the recombination edges and free-free charges."""
    key = None if abundances is None else tuple(sorted(abundances.items()))
    if key in _EDGE_CACHE:
        return _EDGE_CACHE[key]
    ab = _abund(abundances)
    edges = []  # (element, stage index of recombining ion, chi keV, n, zeta, z_eff^2)
    for el in ION_POTENTIALS_KEV:
        Z = _Z[el]
        p_li, p_he, p_h, _, _ = ION_POTENTIALS_KEV[el]
        for n in range(1, 6):       # bare -> H-like, shell n
            edges.append((el, 3, p_h / n ** 2, n, 1.0, p_h / RYDBERG_KEV))
        edges.append((el, 2, p_he, 1, 0.5, p_he / RYDBERG_KEV))   # H-like -> He-like 1s
        for n in range(2, 6):
            edges.append((el, 2, (Z - 1) ** 2 * RYDBERG_KEV / n ** 2, n, 1.0, (Z - 1) ** 2))
        edges.append((el, 1, p_li, 2, 1.0, 4 * p_li / RYDBERG_KEV))  # He-like -> Li-like 2s/2p
        for n in range(3, 6):
            edges.append((el, 1, (Z - 2) ** 2 * RYDBERG_KEV / n ** 2, n, 1.0, (Z - 2) ** 2))
    edges.append(("Fe", 0, FE_L_EDGE_KEV, 2, 0.5, 4 * FE_L_EDGE_KEV / RYDBERG_KEV))
    out = (ab, edges)
    _EDGE_CACHE[key] = out
    return out


def _fractions_all(T, abundances):
    ab, _ = _edges(abundances)
    return {el: ion_fractions(el, T) for el in ION_POTENTIALS_KEV}


def free_free(energy_keV, T, abundances=None, fractions=None):
    """Free-free photon flux density at 1 AU per unit EM (photons cm^-2 s^-1 keV^-1 per cm^-3)
    at energies ``energy_keV`` (n,) and temperatures ``T`` (K, shape (B,) or scalar) ->
    shape (B, n) (or (n,))."""
    E = np.asarray(energy_keV, float)
    Tb = np.atleast_1d(np.asarray(T, float))
    ab, _ = _edges(abundances)
    fr = fractions if fractions is not None else _fractions_all(Tb, abundances)
    zsum = np.ones_like(Tb) + ab.get("He", 0.0) * 4.0
    for el, f in fr.items():
        Z = _Z[el]
        z2 = np.array([(Z - 3) ** 2, (Z - 2) ** 2, (Z - 1) ** 2, Z ** 2], float)
        zsum = zsum + ab[el] * (f @ z2)
    kT = (_K_KEV * Tb)[:, None]
    u = E[None, :] / kT
    out = (_ff_photon_coeff() * zsum[:, None] * gaunt_ff_born(u) * np.exp(-u)
           / (E[None, :] * np.sqrt(Tb)[:, None]))
    return out if np.ndim(T) else out[0]


def free_bound(energy_keV, T, abundances=None, fractions=None):
    """Free-bound (recombination) photon flux density at 1 AU per unit EM, shape as
    :func:`free_free` (Kramers hydrogenic, g_fb = 1, see module docstring)."""
    E = np.asarray(energy_keV, float)
    Tb = np.atleast_1d(np.asarray(T, float))
    ab, edges = _edges(abundances)
    fr = fractions if fractions is not None else _fractions_all(Tb, abundances)
    kT = _K_KEV * Tb
    total = np.zeros((Tb.size, E.size))
    ascending = E.size < 2 or bool(np.all(np.diff(E) > 0))
    for el, stage, chi, n, zeta, z2 in edges:
        w = ab[el] * fr[el][:, stage] * zeta * z2 * (2 * chi / (n * kT))  # (B,)
        # the energies above the edge: a tail of an ascending grid (a slice, no copy), else a mask
        above = slice(int(np.searchsorted(E, chi, side="left")), None) if ascending else E >= chi
        Ea = E[above]
        if not Ea.size:
            continue
        # exp(chi/kT) * exp(-E/kT) = exp(-(E - chi)/kT)
        total[:, above] += w[:, None] * np.exp(-(Ea[None, :] - chi) / kT[:, None])
    out = _ff_photon_coeff() * total / (E[None, :] * np.sqrt(Tb)[:, None])
    return out if np.ndim(T) else out[0]


def thermal_continuum(energy_keV, T, abundances=None):
    """Free-free + free-bound photon flux density per unit EM (two-photon is tied to the lines,
    see :class:`SolarModel`)."""
    Tb = np.atleast_1d(np.asarray(T, float))
    fr = _fractions_all(Tb, abundances)
    out = free_free(energy_keV, Tb, abundances, fr) + free_bound(energy_keV, Tb, abundances, fr)
    return out if np.ndim(T) else out[0]


#: ln T (T in MK) range and nodes of :func:`thermal_table`: the fit's temperature bounds with a margin
THERMAL_TABLE_LN_T = (np.log(0.7), np.log(130.0), 241)
_TABLES = {}


def thermal_table(energy_keV, abundances=None):
    """The thermal continuum per unit EM on the energies ``energy_keV`` as a function of ln T (MK):
    a cubic spline of its logarithm through :data:`THERMAL_TABLE_LN_T` nodes (spacing 0.015 in
    ln T), computed once per energy grid and abundances. ``table(lnT)`` gives ln of the continuum
    (B, n_e), ``table(lnT, 1)`` its derivative by ln T. Within 1e-6 of :func:`thermal_continuum`
    over the range (test); what the solar fit evaluates at every step instead of the ionisation
    balance and every recombination edge."""
    from scipy.interpolate import CubicSpline
    E = np.ascontiguousarray(np.asarray(energy_keV, float))
    key = (E.tobytes(), None if abundances is None else tuple(sorted(abundances.items())))
    hit = _TABLES.get(key)
    if hit is None:
        lo, hi, n = THERMAL_TABLE_LN_T
        ln_t = np.linspace(lo, hi, n)
        table = np.log(np.maximum(thermal_continuum(E, np.exp(ln_t) * 1e6, abundances), 1e-300))
        hit = CubicSpline(ln_t, table, axis=0)
        if len(_TABLES) > 8:
            _TABLES.clear()
        _TABLES[key] = hit
    return hit


def two_photon_shape(y):
    """Two-photon spectral distribution of a 2s decay, photons per unit ``y = E/E0``, normalised
    to 2 photons per decay: the fit of Nussbaumer & Schmutz (1984),
    ``w (1 - (4w)^g) + a w^b (4w)^g``, ``w = y (1 - y)``, ``a = 0.88, b = 1.53, g = 0.8``."""
    y = np.asarray(y, float)
    w = np.clip(y * (1 - y), 0.0, 0.25)
    a, b, g = 0.88, 1.53, 0.8
    s = w * (1 - (4 * w) ** g) + a * w ** b * (4 * w) ** g
    if not _TWO_PHOTON_NORM:     # normalisation: the integral over [0, 1], computed once numerically
        yy = np.linspace(0.0, 1.0, 20001)
        ww = yy * (1 - yy)
        _TWO_PHOTON_NORM.append(float(np.trapz(ww * (1 - (4 * ww) ** g) + a * ww ** b * (4 * ww) ** g, yy)))
    return np.where((y > 0) & (y < 1), 2.0 * s / _TWO_PHOTON_NORM[0], 0.0)


_TWO_PHOTON_NORM = []


def line_matrix(energ_lo, energ_hi, complexes=None, two_photon=TWO_PHOTON_RATIO):
    """Flux density (keV^-1) of each line complex per unit line photon flux on the grid:
    shape (n_complexes, n_e). Each component goes into the bin holding its energy; the
    two-photon continuum of H-like and He-like complexes is added below the line."""
    names = list(LINE_COMPLEXES) if complexes is None else list(complexes)
    lo = np.asarray(energ_lo, float)
    hi = np.asarray(energ_hi, float)
    de = hi - lo
    mid = 0.5 * (lo + hi)
    M = np.zeros((len(names), lo.size))
    for k, name in enumerate(names):
        _, kind, comps = LINE_COMPLEXES[name]
        for e, wgt in comps:
            i = np.searchsorted(lo, e, side="right") - 1
            if 0 <= i < lo.size and e < hi[i]:
                M[k, i] += wgt / de[i]
        if two_photon and kind in ("H", "He"):
            e0 = comps[0][0]
            M[k] += two_photon * two_photon_shape(mid / e0) / e0
    return M


def power_law(energy_keV, norm, index):
    """``norm * E^-index`` (photons cm^-2 s^-1 keV^-1, norm at 1 keV); broadcasting."""
    return np.asarray(norm, float)[..., None] * np.asarray(energy_keV, float) ** (
        -np.asarray(index, float)[..., None])


# --------------------------------------------------------------------------------------------
# Model with parameters
# --------------------------------------------------------------------------------------------

@dataclass
class SolarModel:
    """Thermal (one or two temperatures) + line complexes + power law on an energy grid.

    Parameter vector (per spectrum, last axis): ``ln(EM1/1e46)``, ``ln(T1/MK)``,
    ``ln(K_pl)``, ``index``, ``ln(line flux)`` for each complex (photons cm^-2 s^-1), and, with
    ``two_temp``, ``ln(EM2/1e46)``, ``ln(T2/MK)``.
    """
    energ_lo: np.ndarray
    energ_hi: np.ndarray
    two_temp: bool = False
    complexes: tuple = tuple(LINE_COMPLEXES)
    abundances: dict = None
    tabulated: bool = False
    lines: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.energ_lo = np.asarray(self.energ_lo, float)
        self.energ_hi = np.asarray(self.energ_hi, float)
        self.energy = 0.5 * (self.energ_lo + self.energ_hi)
        self.lines = line_matrix(self.energ_lo, self.energ_hi, self.complexes)

    @property
    def n_lines(self):
        return len(self.complexes)

    @property
    def names(self):
        n = ["lnEM1", "lnT1", "lnKpl", "index"] + [f"ln[{c}]" for c in self.complexes]
        return n + (["lnEM2", "lnT2"] if self.two_temp else [])

    @property
    def n_params(self):
        return 4 + self.n_lines + (2 if self.two_temp else 0)

    def continuum(self, T_MK):
        """Thermal continuum per 1e46 cm^-3 at temperatures ``T_MK`` (B,) -> (B, n_e); with
        ``tabulated`` from the temperature table (:func:`thermal_table`, within 1e-6, temperatures
        clipped to its range), else computed directly."""
        if self.tabulated:
            return self.thermal(np.log(np.atleast_1d(np.asarray(T_MK, float))))[0]
        return EM_UNIT * thermal_continuum(self.energy, np.atleast_1d(T_MK) * 1e6, self.abundances)

    def thermal(self, ln_t_mk):
        """Thermal continuum per 1e46 cm^-3 and its derivative by ln T at ``ln_t_mk`` (B,), from
        :func:`thermal_table` -> two arrays (B, n_e)."""
        tab = thermal_table(self.energy, self.abundances)
        x = np.clip(np.atleast_1d(np.asarray(ln_t_mk, float)), tab.x[0], tab.x[-1])
        f = EM_UNIT * np.exp(tab(x))
        return f, f * tab(x, 1)

    def components(self, theta):
        """Dictionary of the model's components (B, n_e) for parameters ``theta`` (B, P)."""
        th = np.atleast_2d(np.asarray(theta, float))
        out = {"thermal": np.exp(th[:, 0])[:, None] * self.continuum(np.exp(th[:, 1]))}
        out["lines"] = np.exp(th[:, 4:4 + self.n_lines]) @ self.lines
        out["power law"] = power_law(self.energy, np.exp(th[:, 2]), th[:, 3])
        if self.two_temp:
            j = 4 + self.n_lines
            out["thermal 2"] = np.exp(th[:, j])[:, None] * self.continuum(np.exp(th[:, j + 1]))
        return out

    def evaluate(self, theta):
        """Photon flux density (B, n_e) for parameters (B, P) (or (n_e,) for (P,))."""
        single = np.ndim(theta) == 1
        out = sum(self.components(theta).values())
        return out[0] if single else out


# --------------------------------------------------------------------------------------------
# GOES class
# --------------------------------------------------------------------------------------------

def goes_flux(energ_lo, energ_hi, flux_density):
    """Energy flux (W m^-2 at 1 AU) in the GOES long channel, 1-8 A = 1.5498-12.398 keV, of a
    photon flux density (photons cm^-2 s^-1 keV^-1) given on bins ``energ_lo..energ_hi``
    (partial bins counted by their overlap). ``flux_density`` may be (..., n_e).

    This is the physical 1-8 A flux; NOAA's reported XRS fluxes come through the detector's
    transfer function (and before 2020 a 0.7 scaling), which can differ by tens of per cent.
    """
    hc = 12.398419843320026  # keV A
    e1, e2 = hc / 8.0, hc / 1.0
    lo = np.asarray(energ_lo, float)
    hi = np.asarray(energ_hi, float)
    ov = np.clip(np.minimum(hi, e2) - np.maximum(lo, e1), 0.0, None)
    mid = 0.5 * (lo + hi)
    kev_per = np.asarray(flux_density, float) @ (ov * mid)  # keV cm^-2 s^-1
    return kev_per * _KEV_ERG * 1e-7 * 1e4


def goes_class(flux_wm2):
    """GOES class string (e.g. ``'C2.3'``) of a 1-8 A flux in W m^-2; below A1: ``'<A1'``."""
    f = float(flux_wm2)
    if not np.isfinite(f) or f <= 0:
        return ""
    letter, base = None, None
    for L, b in GOES_THRESHOLDS:
        if f >= b:
            letter, base = L, b
    if letter is None:
        return "<A1"
    mant = f / base
    if letter != "X" and mant >= 9.95:
        mant = 9.9
    return f"{letter}{mant:.1f}"


# --------------------------------------------------------------------------------------------
# XSPEC table models (atable)
# --------------------------------------------------------------------------------------------

@dataclass
class TableModel:
    """An OGIP/XSPEC table model (Arnaud 1995, OGIP memo 92-009): ``spectra[i]`` are the
    photons cm^-2 s^-1 per bin at parameter point ``grid_points[i]``; interpolated linearly
    (or in log10 for METHOD=1) between grid values."""
    names: list
    methods: list
    grids: list
    energ_lo: np.ndarray
    energ_hi: np.ndarray
    spectra: np.ndarray        # (n_points, n_e), ordered with the last parameter fastest
    initial: np.ndarray
    additive: bool = True
    path: str = None

    def evaluate(self, params):
        """Spectrum (photons cm^-2 s^-1 per bin) at ``params`` (sequence of the interpolated
        parameters), multilinear interpolation; values outside the grid are clipped to it."""
        params = np.atleast_1d(np.asarray(params, float))
        if params.size != len(self.grids):
            raise ClassXRFError(self.path, f"table model has {len(self.grids)} parameters, "
                                f"got {params.size}", key="PARAMETERS")
        shape = [g.size for g in self.grids]
        cube = self.spectra.reshape(shape + [self.spectra.shape[-1]])
        idx, wts = [], []
        for g, m, v in zip(self.grids, self.methods, params):
            x = np.log10(g) if m == 1 else g
            t = np.log10(v) if m == 1 else v
            if g.size == 1:
                idx.append((0, 0))
                wts.append(0.0)
                continue
            t = min(max(t, x[0]), x[-1])
            j = int(np.clip(np.searchsorted(x, t) - 1, 0, g.size - 2))
            idx.append((j, j + 1))
            wts.append((t - x[j]) / (x[j + 1] - x[j]))
        out = np.zeros(cube.shape[-1])
        for corner in range(2 ** len(shape)):
            sel, w = [], 1.0
            for d in range(len(shape)):
                b = (corner >> d) & 1
                sel.append(idx[d][b])
                w *= wts[d] if b else 1.0 - wts[d]
            if w:
                out += w * cube[tuple(sel)]
        return out

    def flux_density(self, params, norm=1.0):
        """``norm`` x the spectrum at ``params`` as photons cm^-2 s^-1 keV^-1 per table bin."""
        return norm * self.evaluate(params) / (self.energ_hi - self.energ_lo)


def read_table_model(path):
    """Read an XSPEC table model FITS file (``PARAMETERS``, ``ENERGIES``, ``SPECTRA``)."""
    from .ogip import open_fits
    path = os.fspath(path)
    with open_fits(path) as hdul:
        ext = {str(h.header.get("EXTNAME", "")).strip().upper(): h for h in hdul[1:]}
        for need in ("PARAMETERS", "ENERGIES", "SPECTRA"):
            if need not in ext:
                raise ClassXRFError(path, "table model lacks this extension", key=need)
        p = ext["PARAMETERS"]
        nint = int(p.header.get("NINTPARM", len(p.data)))
        nadd = int(p.header.get("NADDPARM", 0))
        if nadd:
            raise ClassXRFError(path, "additional (non-interpolated) parameters are not "
                                "supported", key="NADDPARM")
        names = [str(n).strip() for n in p.data["NAME"][:nint]]
        methods = [int(m) for m in p.data["METHOD"][:nint]]
        initial = np.asarray(p.data["INITIAL"][:nint], float)
        nv = np.asarray(p.data["NUMBVALS"][:nint], int)
        vals = p.data["VALUE"]
        grids = []
        for i in range(nint):
            v = np.atleast_1d(np.asarray(vals[i], float))[:nv[i]]
            if v.size != nv[i]:
                raise ClassXRFError(path, f"parameter {names[i]} lists {v.size} values, "
                                    f"NUMBVALS says {nv[i]}", key="VALUE")
            grids.append(v)
        e = ext["ENERGIES"].data
        lo = np.asarray(e["ENERG_LO"], float)
        hi = np.asarray(e["ENERG_HI"], float)
        s = ext["SPECTRA"].data
        spectra = np.asarray(s["INTPSPEC"], float)
        if spectra.ndim != 2 or spectra.shape[1] != lo.size:
            raise ClassXRFError(path, f"spectra have {spectra.shape[-1]} bins, ENERGIES "
                                f"{lo.size}", key="INTPSPEC")
        if spectra.shape[0] != int(np.prod(nv)) and nint == 1 and "PARAMVAL" in [
                c.upper() for c in s.columns.names]:
            # some writers (ISRO's IDL tbmodel files) leave NUMBVALS/VALUE at 1 and give the
            # grid only in the SPECTRA PARAMVAL column
            pv = np.asarray(s["PARAMVAL"], float).reshape(spectra.shape[0], -1)[:, 0]
            if np.all(np.diff(pv) > 0):
                grids = [pv]
                nv = np.array([pv.size])
        if spectra.shape[0] != int(np.prod(nv)):
            raise ClassXRFError(path, f"{spectra.shape[0]} spectra for a grid of "
                                f"{int(np.prod(nv))} points", key="SPECTRA")
        additive = str(hdul[0].header.get("ADDMODEL", "T")).strip().upper() not in ("F", "FALSE")
    return TableModel(names=names, methods=methods, grids=grids, energ_lo=lo, energ_hi=hi,
                      spectra=spectra, initial=initial, additive=additive, path=path)
