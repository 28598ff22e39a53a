"""Atomic data for the fundamental-parameters model, from xraylib, once per energy grid.

Everything the forward model needs at the energies of one integration grid is computed here in a
few vectorised ``xraylib_np`` calls and kept in an :class:`AtomicData` object; :func:`atomic_data`
caches these objects by grid, so no model evaluation ever calls xraylib.

Data (xraylib 4, Schoonjans et al. 2011, Spectrochim. Acta B 66, 776):

* photo-ionisation cross sections by shell (``CS_Photo_Partial``, Kissel's partial cross
  sections), total photo-absorption and total mass attenuation (``CS_Total``: photo + Rayleigh +
  Compton), cm^2/g;
* K-shell and L-subshell absorption edges, jump factors, fluorescence yields (``FluorYield``),
  radiative rates (``RadRate``) and line energies (``LineEnergy``) of K alpha (``KA_LINE``: KL2 +
  KL3), K beta (``KB_LINE``: all KM/KN) and, where they fall above ``l_line_min_keV``, L alpha
  (``LA_LINE``: L3M4 + L3M5) and L beta1 (``LB1_LINE``: L2M4) of the 8 elements;
* line production cross sections ``CS_FluorLine_Kissel_Cascade`` (photo-ionisation x yield x
  radiative rate, with Coster-Kronig transitions and cascades for L lines), cm^2/g;
* Rayleigh and Compton differential cross sections (``DCS_Rayl``, ``DCS_Compt``, cm^2/g/sr) at the
  scattering angle, tabulated on whole degrees and interpolated linearly.
"""
import threading

import numpy as np
import xraylib
import xraylib_np as xrl_np

from . import parallel
from .composition import ELEMENTS, Z as ELEMENT_Z

ELECTRON_REST_KEV = 510.998950

_LINE_DEFS = (
    # name suffix, xraylib line macro, shell the vacancy is in
    ("Ka", xraylib.KA_LINE, xraylib.K_SHELL),
    ("Kb", xraylib.KB_LINE, xraylib.K_SHELL),
    ("La", xraylib.LA_LINE, xraylib.L3_SHELL),
    ("Lb1", xraylib.LB1_LINE, xraylib.L2_SHELL),
)


def _safe(fn, *args):
    try:
        return float(fn(*args))
    except ValueError:
        return 0.0


def compton_energy(energy_keV, theta_deg):
    """Energy (keV) of a photon of ``energy_keV`` after Compton scattering by ``theta_deg``
    (free-electron kinematics; broadcasting)."""
    e = np.asarray(energy_keV, float)
    c = np.cos(np.deg2rad(theta_deg))
    return e / (1.0 + (e / ELECTRON_REST_KEV) * (1.0 - c))


class AtomicData:
    """Atomic data of :data:`ELEMENTS` on one energy grid (bin centres, keV).

    Attributes (``nE`` energies, 8 elements, ``nL`` lines):

    ``energy`` (nE,); ``Z`` (8,); ``mu_total`` (8, nE) total mass attenuation cm^2/g;
    ``mu_photo`` (8, nE); ``photo_K`` (8, nE) K-shell photo-ionisation cross section;
    ``edge_K``, ``jump_K``, ``yield_K`` (8,): K edge (keV), jump factor, fluorescence yield;
    ``line_names`` (nL,) like ``"Si Ka"``; ``line_element`` (nL,) index into ELEMENTS;
    ``line_shell`` (nL,) xraylib shell macro; ``line_energy`` (nL,) keV; ``line_radrate`` (nL,);
    ``line_yield`` (nL,) fluorescence yield of the line's shell; ``line_edge`` (nL,) edge of the
    line's shell; ``line_xs`` (nL, nE) line production cross section per unit mass of the pure
    element (cm^2/g); ``line_xs_at_lines`` (nL, nL): ``line_xs[l]`` at the energy of line ``k``;
    ``mu_at_lines`` (8, nL): ``mu_total`` of each element at each line energy.
    """

    def __init__(self, energy_keV, l_line_min_keV=0.6):
        e = np.ascontiguousarray(np.asarray(energy_keV, dtype=np.float64).ravel())
        if e.size == 0 or np.any(~np.isfinite(e)) or np.any(e <= 0):
            raise ValueError("energy grid must be positive and finite")
        self.energy = e
        self.Z = np.asarray(ELEMENT_Z, dtype=np.int64)
        z = self.Z
        self.mu_total = xrl_np.CS_Total(z, e)
        self.mu_photo = xrl_np.CS_Photo(z, e)
        self.photo_K = xrl_np.CS_Photo_Partial(z, np.array([xraylib.K_SHELL]), e)[:, 0, :]
        self.edge_K = np.array([xraylib.EdgeEnergy(int(k), xraylib.K_SHELL) for k in z])
        self.jump_K = np.array([xraylib.JumpFactor(int(k), xraylib.K_SHELL) for k in z])
        self.yield_K = np.array([xraylib.FluorYield(int(k), xraylib.K_SHELL) for k in z])

        names, el, shell, energy, rad, yld, edge, macro = [], [], [], [], [], [], [], []
        for i, zz in enumerate(z):
            zz = int(zz)
            for suffix, line, sh in _LINE_DEFS:
                le = _safe(xraylib.LineEnergy, zz, line)
                rr = _safe(xraylib.RadRate, zz, line)
                if le <= 0 or rr <= 0:
                    continue
                if sh != xraylib.K_SHELL and le < l_line_min_keV:
                    continue
                names.append(f"{ELEMENTS[i]} {suffix}")
                el.append(i)
                shell.append(sh)
                energy.append(le)
                rad.append(rr)
                yld.append(_safe(xraylib.FluorYield, zz, sh))
                edge.append(_safe(xraylib.EdgeEnergy, zz, sh))
                macro.append(line)
        self.line_names = tuple(names)
        self.line_element = np.array(el, dtype=np.int64)
        self.line_shell = np.array(shell, dtype=np.int64)
        self.line_energy = np.array(energy)
        self.line_radrate = np.array(rad)
        self.line_yield = np.array(yld)
        self.line_edge = np.array(edge)
        self.line_macro = np.array(macro, dtype=np.int64)
        nl = len(names)
        # line production cross sections on the grid and at the line energies
        xs = np.zeros((nl, e.size))
        xs_at = np.zeros((nl, nl))
        for l in range(nl):
            zl = np.array([z[self.line_element[l]]], dtype=np.int64)
            ml = np.array([self.line_macro[l]], dtype=np.int64)
            xs[l] = xrl_np.CS_FluorLine_Kissel_Cascade(zl, ml, e)[0, 0]
            xs_at[l] = xrl_np.CS_FluorLine_Kissel_Cascade(zl, ml, self.line_energy)[0, 0]
        xs[~np.isfinite(xs)] = 0.0
        xs_at[~np.isfinite(xs_at)] = 0.0
        self.line_xs = xs
        self.line_xs_at_lines = xs_at
        self.mu_at_lines = xrl_np.CS_Total(z, self.line_energy) if nl else np.zeros((8, 0))
        self._dcs_cache = {}
        self._lock = threading.Lock()

    @property
    def n_lines(self):
        return len(self.line_names)

    def line_index(self, name):
        """Index of a line by name, e.g. ``"Si Ka"``."""
        return self.line_names.index(name)

    def line_xs_jump_ratio(self):
        """Line production cross sections (nL, nE) by the jump-ratio approximation used by
        X2ABUNDANCE (Athiray et al. 2015): total photo-absorption x (1 - 1/J_shell) above the edge,
        x yield x radiative rate; for K lines only (L lines: 0). A cross-check of
        :attr:`line_xs`."""
        out = np.zeros_like(self.line_xs)
        for l in range(self.n_lines):
            if self.line_shell[l] != xraylib.K_SHELL:
                continue
            i = self.line_element[l]
            above = self.energy >= self.edge_K[i]
            out[l] = np.where(above, self.mu_photo[i] * (1.0 - 1.0 / self.jump_K[i]), 0.0) \
                * self.line_yield[l] * self.line_radrate[l]
        return out

    def warm_dcs(self, theta_deg):
        """Tabulate the whole degrees around the scattering angles ``theta_deg`` not yet tabulated,
        in one pair of xraylib calls. Done before chunks go to forked processes
        (:mod:`parallel`): xraylib_np runs OpenMP, whose threads do not survive a fork (a child
        calling it waits forever)."""
        th = np.clip(np.atleast_1d(np.asarray(theta_deg, float)), 0.0, 180.0)
        degs = np.unique(np.concatenate([np.floor(th), np.minimum(np.floor(th) + 1, 180)]).astype(int))
        with self._lock:
            missing = [int(d) for d in degs if int(d) not in self._dcs_cache]
        if not missing:
            return
        if parallel.in_child():
            raise RuntimeError("scattering cross sections must be tabulated before the fork "
                               f"(AtomicData.warm_dcs): degrees {missing[:5]} missing in a worker process")
        rad = np.deg2rad(np.array(missing, float))
        r = xrl_np.DCS_Rayl(self.Z, self.energy, rad)
        c = xrl_np.DCS_Compt(self.Z, self.energy, rad)
        r[~np.isfinite(r)] = 0.0
        c[~np.isfinite(c)] = 0.0
        with self._lock:
            for k, deg in enumerate(missing):
                self._dcs_cache[deg] = (np.ascontiguousarray(r[:, :, k]), np.ascontiguousarray(c[:, :, k]))

    def _dcs_node(self, deg):
        deg = int(deg)
        with self._lock:
            hit = self._dcs_cache.get(deg)
        if hit is None:
            self.warm_dcs([deg])
            with self._lock:
                hit = self._dcs_cache[deg]
        return hit

    def scatter_dcs(self, theta_deg):
        """Rayleigh and Compton differential cross sections (cm^2/g/sr) at scattering angles
        ``theta_deg`` (n,): two arrays (n, 8, nE), linear in angle between whole degrees."""
        th = np.clip(np.atleast_1d(np.asarray(theta_deg, float)), 0.0, 180.0)
        lo = np.floor(th).astype(int)
        hi = np.minimum(lo + 1, 180)
        f = (th - lo)[:, None, None]
        ray = np.empty((th.size, 8, self.energy.size))
        com = np.empty_like(ray)
        for k in range(th.size):
            r0, c0 = self._dcs_node(lo[k])
            if f[k, 0, 0] > 0:
                r1, c1 = self._dcs_node(hi[k])
                ray[k] = r0 + f[k] * (r1 - r0)
                com[k] = c0 + f[k] * (c1 - c0)
            else:
                ray[k] = r0
                com[k] = c0
        return ray, com


_CACHE = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 16


def atomic_data(energy_keV, l_line_min_keV=0.6):
    """:class:`AtomicData` for this energy grid, computed once and cached (by the grid's bytes)."""
    e = np.ascontiguousarray(np.asarray(energy_keV, dtype=np.float64).ravel())
    key = (e.tobytes(), float(l_line_min_keV))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    ad = AtomicData(e, l_line_min_keV=l_line_min_keV)
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = ad
    return ad
