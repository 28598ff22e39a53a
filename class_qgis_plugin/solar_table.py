"""Solar spectrum tables in the format of ISRO's X2ABUNDANCE ``modelop_*.txt``.

Plain text, one energy per line, three whitespace-separated columns: energy (keV, bin start, a
0.01 keV grid in ISRO's files), a column of zeros, and the photon flux density
(photons cm^-2 s^-1 keV^-1) at the Moon.
"""
import os

import numpy as np

from .errors import ClassXRFError


def read_solar_table(path):
    """Read a solar table. Returns ``(energy_keV (n,), flux (n,))`` as float64.

    Raises :class:`ClassXRFError` naming the file when it is missing, not numeric, has fewer than
    two columns, non-increasing energies, or negative/non-finite fluxes.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ClassXRFError(path, "solar spectrum table not found")
    try:
        data = np.loadtxt(path, dtype=float, ndmin=2, comments="#")
    except ValueError as exc:
        raise ClassXRFError(path, f"not a numeric table of energy / zeros / flux columns ({exc})") from None
    if data.size == 0 or data.shape[0] < 2:
        raise ClassXRFError(path, "solar spectrum table is empty (needs at least two energies)")
    if data.shape[1] < 2:
        raise ClassXRFError(path, f"expected 3 columns (energy keV, 0, photons cm^-2 s^-1 keV^-1), got {data.shape[1]}")
    energy = data[:, 0]
    flux = data[:, -1]
    if not np.all(np.isfinite(energy)) or not np.all(np.diff(energy) > 0):
        raise ClassXRFError(path, "energies must be finite and strictly increasing", key="column 1")
    if not np.all(np.isfinite(flux)) or np.any(flux < 0):
        raise ClassXRFError(path, "fluxes must be finite and non-negative", key=f"column {data.shape[1]}")
    if energy[0] <= 0:
        raise ClassXRFError(path, "energies must be positive (keV)", key="column 1")
    return energy.astype(np.float64), flux.astype(np.float64)


def write_solar_table(path, energy_keV, flux):
    """Write a solar table (energy, 0, flux) atomically: a temporary file in the same folder,
    moved into place once complete."""
    path = os.fspath(path)
    e = np.asarray(energy_keV, dtype=float).ravel()
    f = np.asarray(flux, dtype=float).ravel()
    if e.shape != f.shape:
        raise ClassXRFError(path, f"energy ({e.size}) and flux ({f.size}) lengths differ")
    if not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
        raise ClassXRFError(path, "energies must be finite and strictly increasing")
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ClassXRFError(path, "fluxes must be finite and non-negative")
    from .geo import atomic_output
    with atomic_output(path) as tmp:
        with open(tmp, "w") as fh:
            for ei, fi in zip(e, f):
                fh.write(f"{ei:.10f} 0.0 {fi:.10e}\n")
    return path
