"""Comparisons of recovered abundances with a known truth raster (the simulated data set), and of
fitted models with real spectra.

Used by the demo, the tests and the benchmarks: the truth of a footprint is the mean of the truth
raster over the pixels whose centres fall inside its polygon; the truth of a sub-footprint is the
mean over a square of its size centred on it. :func:`line_centroids` measures where the Al, Si and
Ca lines of a spectrum (data or model) sit, the same way for both.
"""
import numpy as np

from . import geo


def _grid(meta, shape):
    rows, cols = shape
    lat = meta["north"] - meta["yres"] * (np.arange(rows) + 0.5)
    lon = meta["west"] + meta["xres"] * (np.arange(cols) + 0.5)
    return lat, lon


def footprint_truth(truth, meta, geometries):
    """Mean truth (n, bands) over each polygon (NaN where no pixel centre falls inside)."""
    from shapely import contains_xy

    lat_c, lon_c = _grid(meta, truth.shape[1:])
    out = np.full((len(geometries), truth.shape[0]), np.nan)
    for n, g in enumerate(geometries):
        minx, miny, maxx, maxy = g.bounds
        r = np.flatnonzero((lat_c >= miny) & (lat_c <= maxy))
        c = np.flatnonzero((lon_c >= minx) & (lon_c <= maxx))
        if r.size == 0 or c.size == 0:
            continue
        lon2, lat2 = np.meshgrid(lon_c[c], lat_c[r])
        inside = contains_xy(g, lon2, lat2)
        if inside.any():
            out[n] = truth[:, r[0]:r[-1] + 1, c[0]:c[-1] + 1][:, inside].mean(axis=1)
    return out


def square_truth(truth, meta, lat, lon, size_km=12.5):
    """Mean truth (n, bands) over squares of ``size_km`` centred on the points."""
    lat_c, lon_c = _grid(meta, truth.shape[1:])
    km_per_deg = np.pi * geo.MOON_RADIUS_KM / 180.0
    out = np.full((np.size(lat), truth.shape[0]), np.nan)
    for n, (la, lo) in enumerate(zip(np.atleast_1d(lat), np.atleast_1d(lon))):
        dlat = 0.5 * size_km / km_per_deg
        dlon = dlat / max(np.cos(np.radians(la)), 1e-6)
        r = (lat_c >= la - dlat) & (lat_c <= la + dlat)
        c = (lon_c >= lo - dlon) & (lon_c <= lo + dlon)
        if r.any() and c.any():
            out[n] = np.nanmean(truth[:, r][:, :, c].reshape(truth.shape[0], -1), axis=1)
    return out


def error_table(estimate, error, ok, truth, elements):
    """Per element: n, median |error|, bias, share of truths within 1 sigma, truth mean."""
    table = {}
    for k, el in enumerate(elements):
        est = np.asarray(estimate[el], float)
        err = np.asarray(error[el], float)
        good = (np.asarray(ok[el]) == 1) & np.isfinite(truth[:, k]) & np.isfinite(est)
        d = est[good] - truth[good, k]
        table[el] = dict(n=int(good.sum()),
                         median_abs_err=float(np.median(np.abs(d))) if d.size else float("nan"),
                         bias=float(np.mean(d)) if d.size else float("nan"),
                         within_1sigma=float(np.mean(np.abs(d) <= err[good])) if d.size else float("nan"),
                         truth_mean=float(np.nanmean(truth[:, k])))
    return table


def rmse(a, b):
    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[np.isfinite(d)]
    return float(np.sqrt(np.mean(d ** 2))) if d.size else float("nan")


def line_centroids(e_min, e_max, counts):
    """Centroids (keV, on the channels' nominal energies) of the Al and Si K alpha lines (three
    Gaussians of one width, Mg, Al, Si, on a linear continuum over 1.1-1.95 keV) and of Ca K alpha
    (one Gaussian on a linear continuum, 3.45-3.95 keV) in counts per channel: a dict Al, Si, Ca."""
    from scipy.optimize import curve_fit
    ech = 0.5 * (np.asarray(e_min, float) + np.asarray(e_max, float))
    y = np.asarray(counts, float)

    def g3(x, a1, m1, a2, m2, a3, m3, s, c0, c1):
        return sum(a * np.exp(-0.5 * ((x - m) / s) ** 2) for a, m in ((a1, m1), (a2, m2), (a3, m3))) + c0 + c1 * x

    def g1(x, a, m, s, c0, c1):
        return a * np.exp(-0.5 * ((x - m) / s) ** 2) + c0 + c1 * x
    w = (ech > 1.1) & (ech < 1.95)
    top = y[w].max()
    p, _ = curve_fit(g3, ech[w], y[w], p0=[top / 3, 1.254, top, 1.487, top / 2, 1.74, 0.05, 1, 0],
                     sigma=np.sqrt(np.maximum(y[w], 1.0)), maxfev=50000)
    w = (ech > 3.45) & (ech < 3.95)
    q, _ = curve_fit(g1, ech[w], y[w], p0=[y[w].max(), 3.69, 0.06, 1, 0], sigma=np.sqrt(np.maximum(y[w], 1.0)),
                     maxfev=20000)
    return {"Al": float(p[3]), "Si": float(p[5]), "Ca": float(q[1])}
