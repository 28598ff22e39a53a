"""One seamless map from the super-resolved regions: each region super-resolved with a halo of its
neighbours' GIB pixels, the regions cross-faded over their borders, one cloud-optimised GeoTIFF
per element.

Why: a region super-resolved alone fits its own drift and kriging to its own pixels, and its
neighbour fits others, so the map steps at the border (on real footprints 12 to 94 times the step
between neighbouring pixels inside a region). Here region (i, j) is super-resolved on its grid
grown by ``halo`` pixels on every side, filled with the neighbouring regions' GIB pixels and their
footprints (:func:`halo_inputs`), so both regions of a border see the same data near it; the
mosaic is then the weighted mean of the regions' predictions where they overlap, each weight a
linear ramp across the border, 1/2 on it and falling to 0 at the halo's edge (rows and columns
alike; the ramps of two neighbours sum to 1). ``halo=0`` is plain tiling.

The whole Moon is the 8 x 8 regions of the GIB: 2736 x 5456 pixels of 22.5/342 x 45/682 deg.
Longitudes wrap at 180 deg; latitudes stop at the poles. The COGs cover the rows and columns of
the regions mapped (the whole Moon when all 64 are).
"""
import os

import numpy as np

from . import geo
from .choices import ELEMENTS, MOSAIC_HALO_PX
from .errors import ClassXRFError

MOON_ROWS = geo.N_REGION_ROWS * geo.REGION_ROWS
MOON_COLS = geo.N_REGION_COLS * geo.REGION_COLS


def region_origin(i, j):
    """Global row and column of region (i, j)'s first pixel."""
    return int(i) * geo.REGION_ROWS, int(j) * geo.REGION_COLS


def extended_window(i, j, halo):
    """Global rows ``r0..r1`` (clipped at the poles) and the first global column ``c0`` (unwrapped,
    may be negative) and width of region (i, j) grown by ``halo`` pixels."""
    R, C = region_origin(i, j)
    r0, r1 = max(R - halo, 0), min(R + geo.REGION_ROWS + halo, MOON_ROWS)
    return r0, r1, C - halo, geo.REGION_COLS + 2 * halo


def pixel_axes(r0, r1, c0, width):
    """Pixel-centre latitudes of global rows r0..r1 and longitudes of columns c0..c0+width (unwrapped:
    beyond 180 deg they go on increasing, as the grid's km coordinates need)."""
    lat = 90.0 - geo.PIXEL_DLAT * (np.arange(r0, r1) + 0.5)
    lon = -180.0 + geo.PIXEL_DLON * (np.arange(c0, c0 + width) + 0.5)
    return lat, lon


def halo_inputs(gib_folder, region, halo=MOSAIC_HALO_PX):
    """The GIB on region ``(i, j)``'s grid grown by ``halo`` pixels: wt% and errors (rows, cols, 8),
    n_obs (rows, cols) from every region raster of the folder the window touches (NaN / 0 where
    none), its footprints (:class:`superres.kriging.FootprintGroups` re-indexed to the window, from
    each raster's sidecar; None when no raster has one), the axes and the window."""
    from .gib import footprint_records, read_gib, region_path

    i, j = (int(v) for v in region)
    r0, r1, c0, width = extended_window(i, j, halo)
    rows = r1 - r0
    target = np.full((rows, width, 8), np.nan, np.float32)
    err = np.full((rows, width, 8), np.nan, np.float32)
    nobs = np.zeros((rows, width), np.float32)
    pix, keys, values, sigmas = [], [], [], []
    own = region_path(gib_folder, i, j)
    if not os.path.exists(own):
        raise ClassXRFError(own, f"no GIB raster for region ({i}, {j})")
    cols_global = np.arange(c0, c0 + width) % MOON_COLS
    for ii in range(max(i - 1, 0), min(i + 2, geo.N_REGION_ROWS)):
        for jj in {(j + dj) % geo.N_REGION_COLS for dj in (-1, 0, 1)}:
            path = region_path(gib_folder, ii, jj)
            if not os.path.exists(path):
                continue
            R, C = region_origin(ii, jj)
            rsel = np.arange(max(R, r0), min(R + geo.REGION_ROWS, r1))
            cpos = np.flatnonzero((cols_global >= C) & (cols_global < C + geo.REGION_COLS))
            if not rsel.size or not cpos.size:
                continue
            t, e, n, _ = read_gib(path)
            rr, cc = rsel - R, cols_global[cpos] - C
            target[np.ix_(rsel - r0, cpos)] = t[np.ix_(rr, cc)]
            err[np.ix_(rsel - r0, cpos)] = e[np.ix_(rr, cc)]
            nobs[np.ix_(rsel - r0, cpos)] = np.nan_to_num(n[np.ix_(rr, cc)])
            rec = footprint_records(path, (ii, jj))
            if rec is None:
                continue
            gr = R + rec["row"] - r0
            where = np.full(MOON_COLS, -1)
            where[cols_global] = np.arange(width)     # window column of each global column (-1: outside)
            gc = where[(C + rec["col"]) % MOON_COLS]
            keep = (gr >= 0) & (gr < rows) & (gc >= 0)
            pix.append(gr[keep] * width + gc[keep])
            keys.append(np.asarray(rec["key"])[keep])
            values.append(rec["value"][keep])
            sigmas.append(rec["sigma"][keep])
    fpg = None
    if pix and sum(len(p) for p in pix):
        from .superres.kriging import FootprintGroups
        fpg = FootprintGroups(np.concatenate(pix), np.concatenate(keys), np.concatenate(values),
                              np.concatenate(sigmas))
    lat, lon = pixel_axes(r0, r1, c0, width)
    return dict(target=target, err=err, nobs=nobs, footprints=fpg, lat=lat, lon=lon, r0=r0, c0=c0, source=own)


def superresolve_with_halo(gib_folder, albedo, region, halo=MOSAIC_HALO_PX, settings=None, device="cpu", progress=None):
    """Region ``(i, j)`` super-resolved on its grid grown by ``halo`` pixels (:func:`halo_inputs`,
    :func:`superres.train.superresolve_grid`) -> dict: ``prediction`` (8, rows, cols), ``support``,
    ``r0``, ``c0`` (the window's global origin), ``region``, ``halo``, ``curve``."""
    from .superres.train import superresolve_grid

    h = halo_inputs(gib_folder, region, halo)
    cache = os.path.join(os.path.abspath(os.fspath(gib_folder)), ".superres_cache")
    pred, support, curve = superresolve_grid(h["target"], h["err"], h["nobs"], h["lat"], h["lon"], albedo,
                                             h["footprints"], settings, device, progress, cache_dir=cache,
                                             source=h["source"])
    return dict(prediction=pred, support=support, r0=h["r0"], c0=h["c0"], region=tuple(int(v) for v in region),
                halo=int(halo), curve=curve)


def _ramp(first, n, own_start, own_len, halo):
    """Cross-fade weight of global indices first..first+n-1 for a region owning own_start..+own_len:
    1/2 + t / (2 halo), t the signed distance (pixels) inside the region's edge, clipped to [0, 1];
    with ``halo=0``, 1 inside and 0 outside."""
    idx = np.arange(first, first + n)
    t = np.minimum(idx - own_start + 0.5, own_start + own_len - 0.5 - idx)
    if halo <= 0:
        return (t > 0).astype(np.float32)
    return np.clip(0.5 + t / (2.0 * halo), 0.0, 1.0).astype(np.float32)


def blend_weights(result):
    """The weight (rows, cols) of each pixel of a region's halo prediction in the mosaic (where no
    neighbour predicts, e.g. beyond a pole or an unmapped region, the normalisation of
    :meth:`Mosaic.band` leaves this region's value)."""
    i, j = result["region"]
    R, C = region_origin(i, j)
    rows, cols = result["prediction"].shape[1:]
    wr = _ramp(result["r0"], rows, R, geo.REGION_ROWS, result["halo"])
    wc = _ramp(result["c0"], cols, C, geo.REGION_COLS, result["halo"])
    return wr[:, None] * wc[None, :]


class Mosaic:
    """Weighted sums of the regions' predictions on the rows and columns they cover (global
    indices; columns wrap), per element; :meth:`value` the blended map."""

    def __init__(self):
        self.parts = []

    def add(self, result):
        self.parts.append(result)

    def window(self):
        """Global rows r0..r1 and columns (sorted, wrapped) the regions cover."""
        r0 = min(p["r0"] for p in self.parts)
        r1 = max(p["r0"] + p["prediction"].shape[1] for p in self.parts)
        cols = np.unique(np.concatenate([np.arange(p["c0"], p["c0"] + p["prediction"].shape[2]) % MOON_COLS
                                         for p in self.parts]))
        n_gaps = int((np.diff(cols) > 1).sum()) + int(cols[0] + MOON_COLS - cols[-1] > 1)
        if n_gaps > 1:              # separate groups of regions: the whole width
            cols = np.arange(MOON_COLS)
        return r0, r1, cols

    def band(self, e):
        """Element ``e``'s blended wt% (rows, cols) float32 on :meth:`window` (NaN where no region
        predicts)."""
        if not self.parts:
            raise ClassXRFError(None, "no super-resolved region to mosaic")
        r0, r1, cols = self.window()
        where = np.full(MOON_COLS, -1)
        where[cols] = np.arange(cols.size)
        acc = np.zeros((r1 - r0, cols.size), np.float64)
        wsum = np.zeros_like(acc)
        for p in self.parts:
            pr = p["prediction"][e].astype(np.float64)
            w = np.where(np.isfinite(pr), blend_weights(p), 0.0)
            rr = np.arange(p["r0"], p["r0"] + pr.shape[0]) - r0
            cc = where[np.arange(p["c0"], p["c0"] + pr.shape[1]) % MOON_COLS]
            acc[rr[:, None], cc[None, :]] += np.where(w > 0, pr, 0.0) * w
            wsum[rr[:, None], cc[None, :]] += w
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(wsum > 0, acc / wsum, np.nan).astype(np.float32)

    def value(self):
        """(8, rows, cols) of :meth:`band` and the window."""
        return np.stack([self.band(e) for e in range(len(ELEMENTS))]), self.window()


def write_cogs(folder, mosaic, prefix="mosaic", progress=None):
    """One cloud-optimised GeoTIFF per element of the :class:`Mosaic` (``{prefix}_{El}.tif``:
    DEFLATE, 512-pixel tiles, overviews, ESRI:104903), atomically, one element in memory at a time.
    A window across 180 deg starts east of its gap (the raster's columns are contiguous). Returns
    the paths."""
    from rasterio.shutil import copy as rio_copy

    from .progress import as_progress

    p = as_progress(progress)
    r0, r1, cols = mosaic.window()
    order = np.arange(cols.size)
    gaps = np.flatnonzero(np.diff(cols) > 1)
    if gaps.size:
        gap = int(gaps[0]) + 1
        order = np.concatenate([np.arange(gap, cols.size), np.arange(gap)])
    west = -180.0 + geo.PIXEL_DLON * int(cols[order[0]])
    north = 90.0 - geo.PIXEL_DLAT * r0
    os.makedirs(folder, exist_ok=True)
    paths = []
    for e, el in enumerate(ELEMENTS):
        p.check()
        p.set(e / len(ELEMENTS), f"mosaic of {el}")
        path = os.path.join(folder, f"{prefix}_{el}.tif")
        tmp_plain = path + ".plain.tif"
        with geo.atomic_output(path) as tmp:
            try:        # the plugin's GeoTIFF writer, then GDAL's COG driver over it
                geo.write_geotiff(tmp_plain, mosaic.band(e)[None, :, order], west, north, geo.PIXEL_DLON,
                                  geo.PIXEL_DLAT, band_names=[f"{el} wt%"])
                rio_copy(tmp_plain, tmp, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=512,
                         OVERVIEW_RESAMPLING="AVERAGE")
            finally:
                if os.path.exists(tmp_plain):
                    os.remove(tmp_plain)
        paths.append(path)
    return paths


def seam_ratios(mosaic, window, regions):
    """Per element: the mean absolute step between the two pixels on either side of a border between
    two of ``regions`` (both predicted), over the mean absolute step between neighbouring pixels
    inside the regions. 1 is seamless; a region mapped alone steps at its border many times more."""
    r0, r1, cols = window
    where = np.full(MOON_COLS, -1)
    where[cols] = np.arange(cols.size)
    have = {tuple(int(v) for v in r) for r in regions}
    border, inner = [[] for _ in ELEMENTS], [[] for _ in ELEMENTS]
    for (i, j) in sorted(have):
        R, C = region_origin(i, j)
        rr = np.arange(R, R + geo.REGION_ROWS) - r0
        cc = where[np.arange(C, C + geo.REGION_COLS)]
        if (rr < 0).any() or (rr >= r1 - r0).any() or (cc < 0).any():
            continue
        block = mosaic[:, rr[:, None], cc[None, :]]
        for e in range(len(ELEMENTS)):
            inner[e].append(np.abs(np.diff(block[e], axis=1)).ravel())
            inner[e].append(np.abs(np.diff(block[e], axis=0)).ravel())
        east = (i, (j + 1) % geo.N_REGION_COLS)
        if east in have:
            c_last, c_next = where[C + geo.REGION_COLS - 1], where[(C + geo.REGION_COLS) % MOON_COLS]
            if c_next >= 0:
                for e in range(len(ELEMENTS)):
                    border[e].append(np.abs(mosaic[e, rr, c_next] - mosaic[e, rr, c_last]))
        south = (i + 1, j)
        if south in have:
            r_last, r_next = R + geo.REGION_ROWS - 1 - r0, R + geo.REGION_ROWS - r0
            if r_next < r1 - r0:
                for e in range(len(ELEMENTS)):
                    border[e].append(np.abs(mosaic[e, r_next, cc] - mosaic[e, r_last, cc]))
    out = {}
    for e, el in enumerate(ELEMENTS):
        b = np.concatenate(border[e]) if border[e] else np.array([])
        n = np.concatenate(inner[e]) if inner[e] else np.array([])
        b, n = b[np.isfinite(b)], n[np.isfinite(n)]
        out[el] = float(b.mean() / n.mean()) if b.size and n.size and n.mean() > 0 else float("nan")
    return out
