"""The Global Information Bank (GIB): populated sub-footprint abundances on the 2 km grid.

Layout of a GIB folder
----------------------
* ``gib_r{i}_c{j}.tif``: one GeoTIFF per region touched (contract 6): REGION_ROWS x REGION_COLS,
  ``ESRI:104903`` (the plugin's lunar CRS), float32, nodata -9999; bands 1..8 the inverse-variance mean wt% of
  ELEMENTS, bands 9..16 their 1-sigma errors ``1 / sqrt(sum w)``, band 17 ``n_obs``, the number of
  sub-footprint observations on the pixel (0 where none; the abundance and error bands are nodata
  there, and an element's bands are nodata where no observation constrained that element).
* ``gib_r{i}_c{j}.npz``: the region's sidecar, every contribution (observation key, sub-footprint
  index, centre, pixel, wt% (8) and 1 sigma (8), class) in float64. The raster is recomputed
  from it with ``w = 1 / sigma^2``: ``x = sum(w x) / sum(w)``, ``sigma = 1 / sqrt(sum w)``, so
  adding is exact and order-independent, and an observation can be taken out again exactly.
* ``gib_ledger.json``: which observations are in the GIB: observation identity -> content key
  and regions. The identity is the co-added spectrum (``pha_path`` file name, ``t_start``,
  ``t_end``) when the layer has those columns (contract 4), else the content key itself. The
  content key is a SHA-256 of the row (obs_id, identity fields, geometry, X, X_err, X_ok), the
  albedo / mare source file's SHA-256, the priors and the sub-footprint size.
  Populating again with the same inputs finds every key already there and changes nothing (no
  file is rewritten); an observation whose identity is known with another key (re-inverted, or
  populated with another albedo) replaces its old contribution in the regions it touched.
* ``gib_points.gpkg``: the point layer of all populated sub-footprints in the GIB (ESRI:104903),
  rewritten from the sidecars when something changed.

Only the regions holding added or removed contributions are rewritten (the paper's "dynamic" GIB).
"""
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from . import geo
from .errors import ClassXRFError
from .progress import as_progress, subrange

LEDGER = "gib_ledger.json"
POINTS = "gib_points.gpkg"
LEDGER_VERSION = 1


def _elements():
    from .composition import ELEMENTS
    return ELEMENTS


def band_names(elements=None):
    """The 17 band descriptions of a GIB region raster."""
    el = tuple(elements or _elements())
    return list(el) + [f"{e}_err" for e in el] + ["n_obs"]


def region_path(folder, i, j, ext=".tif"):
    return Path(folder) / f"gib_r{int(i)}_c{int(j)}{ext}"


def pixel_of(i, j, lat, lon):
    """Row and column in region (i, j) of points that :func:`geo.region_of` puts in it.

    Clipped into the grid, so a centre on the region's outer edge (or rounding at a region
    boundary) lands on the edge pixel instead of being lost.
    """
    west, _, _, north = geo.region_bounds(i, j)
    lat = np.asarray(lat, np.float64)
    lon = geo.wrap_lon(lon)
    row = np.clip(np.floor((north - lat) / geo.PIXEL_DLAT), 0, geo.REGION_ROWS - 1).astype(np.int64)
    col = np.clip(np.floor((lon - west) / geo.PIXEL_DLON), 0, geo.REGION_COLS - 1).astype(np.int64)
    return row, col


# ------------------------------------------------------------------------------ combination
def combine(rows, cols, value, sigma, shape=None):
    """Inverse-variance combination of observations on a pixel grid.

    ``rows``, ``cols`` (M,) pixel of each observation, ``value``, ``sigma`` (M, K) (NaN = element
    not observed). Returns (mean (K, R, C), err (K, R, C), n_obs (R, C), sum_w (K, R, C)):
    mean = sum(w x) / sum(w), err = 1 / sqrt(sum w) with w = 1 / sigma^2, NaN where sum w = 0;
    n_obs counts the observations with at least one finite element.
    """
    R, Cn = shape or (geo.REGION_ROWS, geo.REGION_COLS)
    value = np.asarray(value, np.float64)
    sigma = np.asarray(sigma, np.float64)
    M, K = value.shape
    flat = np.asarray(rows, np.int64) * Cn + np.asarray(cols, np.int64)
    use = np.isfinite(value) & np.isfinite(sigma) & (sigma > 0)
    w = np.where(use, 1.0 / np.where(use, sigma, 1.0) ** 2, 0.0)
    wx = np.where(use, w * np.where(use, value, 0.0), 0.0)
    sw = np.zeros((K, R * Cn))
    swx = np.zeros((K, R * Cn))
    for k in range(K):
        sw[k] = np.bincount(flat, weights=w[:, k], minlength=R * Cn)
        swx[k] = np.bincount(flat, weights=wx[:, k], minlength=R * Cn)
    n = np.bincount(flat, weights=use.any(axis=1).astype(np.float64), minlength=R * Cn)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(sw > 0, swx / sw, np.nan)
        err = np.where(sw > 0, 1.0 / np.sqrt(sw), np.nan)
    return (mean.reshape(K, R, Cn), err.reshape(K, R, Cn), n.reshape(R, Cn), sw.reshape(K, R, Cn))


# ------------------------------------------------------------------------------ sidecars
_FIELDS = ("key", "obs_id", "sub", "n_sub", "lat", "lon", "row", "col", "mare", "mare_frac",
           "value", "sigma")


def _empty_records(K):
    return dict(key=np.zeros(0, "U64"), obs_id=np.zeros(0, np.int64), sub=np.zeros(0, np.int64),
                n_sub=np.zeros(0, np.int64), lat=np.zeros(0), lon=np.zeros(0),
                row=np.zeros(0, np.int64), col=np.zeros(0, np.int64), mare=np.zeros(0, np.int8),
                mare_frac=np.zeros(0), value=np.zeros((0, K)), sigma=np.zeros((0, K)))


def load_region_records(folder, i, j, K=8):
    """The sidecar contributions of region (i, j) (empty when the region has none)."""
    path = region_path(folder, i, j, ".npz")
    if not path.exists():
        return _empty_records(K)
    try:
        with np.load(path, allow_pickle=False) as z:
            rec = {f: z[f] for f in _FIELDS}
    except (OSError, ValueError, KeyError) as exc:
        raise ClassXRFError(path, f"GIB sidecar unreadable ({exc}); remove the region's files "
                                  "and populate again") from exc
    return rec


def _save_records(folder, i, j, rec, path=None):
    path = path or region_path(folder, i, j, ".npz")
    with geo.atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **rec)


def _concat(a, b):
    return {f: np.concatenate([a[f], b[f]]) for f in _FIELDS}


def _select(rec, keep):
    return {f: rec[f][keep] for f in _FIELDS}


def write_region(folder, i, j, rec, elements=None, path=None):
    """Recompute region (i, j)'s raster from its records and write it (to ``path`` when given; or
    remove it, with its sidecar, if empty)."""
    tif = path or region_path(folder, i, j)
    if rec["key"].size == 0:
        for ext in (".tif", ".npz"):
            p = region_path(folder, i, j, ext)
            if p.exists():
                p.unlink()
        return None
    mean, err, n, _ = combine(rec["row"], rec["col"], rec["value"], rec["sigma"])
    data = np.concatenate([mean, err, n[None]], axis=0).astype(np.float32)
    west, _, _, north = geo.region_bounds(i, j)
    geo.write_geotiff(tif, data, west, north, geo.PIXEL_DLON, geo.PIXEL_DLAT,
                      nodata=geo.NODATA, band_names=band_names(elements))
    return tif


def read_region(folder, i, j):
    """Read a GIB region raster -> (data (17, rows, cols) float32, NaN = nodata; meta)."""
    return geo.read_geotiff(region_path(folder, i, j))


# ------------------------------------------------------------------------------ ledger / keys
def _read_ledger(folder):
    path = Path(folder) / LEDGER
    if not path.exists():
        return {"version": LEDGER_VERSION, "observations": {}}
    try:
        with open(path) as fh:
            led = json.load(fh)
        led["observations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClassXRFError(path, f"GIB ledger unreadable ({exc})") from exc
    return led


def _write_ledger(folder, led, path=None):
    path = path or Path(folder) / LEDGER
    with geo.atomic_output(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(led, fh, indent=1, sort_keys=True)


def file_sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _cell(attrs, name, r):
    if name not in attrs:
        return None
    v = attrs[name][r]
    if isinstance(v, (bytes, np.bytes_)):
        v = v.decode("utf-8", "replace")
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    return None if v is None else str(v)


def _identity_and_key(attrs, r, geom, values, errors, ok, context):
    ident_fields = [_cell(attrs, n, r) for n in ("pha_path", "t_start", "t_end")]
    content = dict(obs_id=_cell(attrs, "obs_id", r), ident=ident_fields,
                   geom=None if geom is None else geom.wkb_hex,
                   x=[None if not np.isfinite(v) else float(v) for v in values[r]],
                   e=[None if not np.isfinite(v) else float(v) for v in errors[r]],
                   ok=[None if not np.isfinite(v) else float(v) for v in ok[r]], ctx=context)
    key = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    if ident_fields[0] is not None and ident_fields[1] is not None:
        name = os.path.basename(str(ident_fields[0]))
        identity = f"{name}|{ident_fields[1]}|{ident_fields[2]}"
    else:
        identity = key
    return identity, key


# ------------------------------------------------------------------------------ entry point
def populate_layer(abundance_layer_path, albedo, gib_folder, points_output=None, progress=None,
                   sub_size_km=None, threshold=None, mare_wt=None, highland_wt=None, prior="fraction"):
    """Populate an abundance layer into the GIB folder (created if needed) -> summary dict.

    ``albedo``: an albedo raster / equirectangular image, a mare polygon layer (.gpkg, .shp, ...)
    or an object with ``mare_flag(lat, lon)``. ``points_output`` (.gpkg or .shp): the point layer
    of this run's populated sub-footprints. ``threshold`` overrides Otsu's albedo threshold.
    ``prior``: how a sub-footprint's prior D is formed (see :func:`population.populate_footprints`).

    Summary keys: ``footprints`` (rows read), ``populated`` (footprints newly added or replaced),
    ``already_in_gib`` (unchanged, skipped), ``replaced``, ``sub_footprints`` (added this run),
    ``regions_touched`` (sorted [(i, j)]), ``skipped`` ([(obs_id or row, reason)]),
    ``element_skips`` ({element: footprints where it was not populated}), ``element_notes``
    ({element: why measured values were left out, e.g. rows with X_err = 0}), ``files`` (written),
    ``threshold`` (albedo threshold used, or None), ``points_output``.
    """
    from . import albedo as albedo_mod
    from . import population as pop
    from .composition import ELEMENTS, HIGHLAND_WT, MARE_WT

    from . import transact
    p = as_progress(progress)
    folder = Path(gib_folder)
    if folder.exists() and not folder.is_dir():
        raise ClassXRFError(folder, "the GIB folder is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    transact.recover(folder)                      # finish (or drop) what a killed run left
    if points_output is not None:
        transact.recover(Path(points_output).absolute().parent)
    mare_wt = np.asarray(MARE_WT if mare_wt is None else mare_wt, np.float64)
    highland_wt = np.asarray(HIGHLAND_WT if highland_wt is None else highland_wt, np.float64)
    K = len(ELEMENTS)

    p.set(0.0, "reading the abundance layer")
    geoms, values, errors, ok, attrs = pop.read_abundance_layer(abundance_layer_path, ELEMENTS)
    N = len(geoms)
    if hasattr(albedo, "mare_flag"):
        classifier, src_hash = albedo, f"object:{type(albedo).__name__}:{getattr(albedo, 'path', '')}"
    else:
        classifier = albedo_mod.load_classifier(albedo, threshold=threshold)
        src_hash = file_sha256(albedo)
    thr = getattr(classifier, "threshold", None)
    context = dict(albedo=src_hash, threshold=None if thr is None else float(thr),
                   mare=[float(v) for v in mare_wt], high=[float(v) for v in highland_wt],
                   sub=sub_size_km, prior=prior)
    obs_ids = (np.asarray(attrs["obs_id"]).astype(np.int64) if "obs_id" in attrs
               else np.arange(N, dtype=np.int64))

    led = _read_ledger(folder)
    known = led["observations"]
    idents, keys = [], []
    for r in range(N):
        ident, key = _identity_and_key(attrs, r, geoms[r], values, errors, ok, context)
        idents.append(ident)
        keys.append(key)
    new_rows, replaced, already = [], [], 0
    seen = {}
    skipped = []
    for r in range(N):
        if idents[r] in seen:
            skipped.append((int(obs_ids[r]), f"duplicate of row {seen[idents[r]]} in the same layer "
                                             f"(same observation {idents[r]})"))
            continue
        seen[idents[r]] = r
        prev = known.get(idents[r])
        if prev is not None and prev["key"] == keys[r]:
            already += 1
            continue
        if prev is not None:
            replaced.append(r)
        new_rows.append(r)

    p.set(0.05, "splitting and solving")
    result = pop.populate_footprints([geoms[r] for r in new_rows], values[new_rows], errors[new_rows],
                                     ok[new_rows], classifier, mare_wt, highland_wt, ELEMENTS,
                                     sub_size_km=sub_size_km, progress=subrange(p, 0.05, 0.5), prior=prior)
    for local, reason in result.skipped:
        skipped.append((int(obs_ids[new_rows[local]]), reason))
    fp_rows = np.asarray(new_rows, np.int64)[result.footprint] if result.footprint.size else np.zeros(0, np.int64)
    sub_keys = np.asarray([keys[r] for r in fp_rows], dtype="U64")
    ri, rj = geo.region_of(result.lat, result.lon) if fp_rows.size else (np.zeros(0, int), np.zeros(0, int))
    ri, rj = np.atleast_1d(ri), np.atleast_1d(rj)
    populated_rows = sorted(set(fp_rows.tolist()))

    # old contributions to take out: replaced identities (their old key), and any stale copy of a
    # new key (a run interrupted after writing some regions but before the ledger)
    remove_keys = set(keys[r] for r in populated_rows)
    touched = set(zip(ri.tolist(), rj.tolist()))
    for r in replaced:
        prev = known[idents[r]]
        remove_keys.add(prev["key"])
        touched.update(tuple(x) for x in prev["regions"])
    # a replaced observation whose new version was skipped is taken out too (its old values
    # are superseded); say so
    for r in replaced:
        if r not in populated_rows:
            skipped.append((int(obs_ids[r]), "new version could not be populated; its previous "
                                             "contribution was removed from the GIB"))

    files = []
    regions = sorted(touched)
    rp = subrange(p, 0.5, 0.95)
    regions_of_key = {}
    new_records = {}
    with transact.Transaction(folder) as tx:     # rasters, sidecars, ledger, layers: all or nothing
        for n_done, (i, j) in enumerate(regions):
            rp.check()
            rp.set(n_done / max(len(regions), 1), f"region ({i}, {j})")
            rec = load_region_records(folder, i, j, K)
            keep = ~np.isin(rec["key"], list(remove_keys)) if rec["key"].size else np.zeros(0, bool)
            rec = _select(rec, keep)
            sel = (ri == i) & (rj == j)
            if sel.any():
                row, col = pixel_of(i, j, result.lat[sel], result.lon[sel])
                add = dict(key=sub_keys[sel], obs_id=obs_ids[fp_rows[sel]], sub=result.sub[sel].astype(np.int64),
                           n_sub=result.n_sub[sel].astype(np.int64), lat=result.lat[sel],
                           lon=result.lon[sel], row=row.astype(np.int64), col=col.astype(np.int64),
                           mare=result.mare[sel].astype(np.int8), mare_frac=result.mare_frac[sel],
                           value=result.value[sel], sigma=result.sigma[sel])
                rec = _concat(rec, add)
                for k in np.unique(add["key"]):
                    regions_of_key.setdefault(str(k), []).append([int(i), int(j)])
            new_records[(i, j)] = rec
            if rec["key"].size:
                _save_records(folder, i, j, rec, path=tx.path(region_path(folder, i, j, ".npz")))
                write_region(folder, i, j, rec, ELEMENTS, path=tx.path(region_path(folder, i, j)))
                files += [str(region_path(folder, i, j)), str(region_path(folder, i, j, ".npz"))]
            else:
                tx.remove(region_path(folder, i, j))
                tx.remove(region_path(folder, i, j, ".npz"))
        if regions:
            for r in replaced:
                known.pop(idents[r], None)
            for r in populated_rows:
                known[idents[r]] = dict(key=keys[r], regions=regions_of_key.get(keys[r], []),
                                        obs_id=int(obs_ids[r]), source=str(abundance_layer_path))
            _write_ledger(folder, led, path=tx.path(folder / LEDGER))
            files.append(str(folder / LEDGER))
            p.set(0.96, "writing the GIB point layer")
            write_gib_points(folder, ELEMENTS, path=tx.path(folder / POINTS), override=new_records)
            files.append(str(folder / POINTS))
        if points_output is not None:
            _write_points(tx.path(points_output), result,
                          obs_ids[fp_rows] if fp_rows.size else np.zeros(0, np.int64), ELEMENTS)
            files.append(str(points_output))
        p.check()
    p.set(1.0, "GIB updated")
    return dict(footprints=N, populated=len(populated_rows), already_in_gib=already,
                replaced=len([r for r in replaced if r in populated_rows]),
                sub_footprints=int(fp_rows.size), regions_touched=regions, skipped=skipped,
                element_skips=result.element_skips, element_notes=result.element_notes, files=files,
                threshold=None if thr is None else float(thr),
                points_output=None if points_output is None else str(points_output))


# ------------------------------------------------------------------------------ point layers
def _point_attrs(obs_id, sub, n_sub, mare, mare_frac, lat, lon, value, sigma, elements):
    attrs = dict(obs_id=np.asarray(obs_id, np.int64), sub_idx=np.asarray(sub, np.int64),
                 n_sub=np.asarray(n_sub, np.int64), mare=np.asarray(mare, np.int64),
                 mare_frac=np.asarray(mare_frac, np.float64), lat=np.asarray(lat, np.float64),
                 lon=np.asarray(lon, np.float64))
    for k, el in enumerate(elements):
        attrs[el] = value[:, k]
        attrs[f"{el}_err"] = sigma[:, k]
    return attrs


def _write_points(path, res, obs_ids, elements):
    from shapely.geometry import Point
    pts = [Point(float(x), float(y)) for x, y in zip(res.lon, res.lat)]
    ri, rj = (geo.region_of(res.lat, res.lon) if len(pts) else (np.zeros(0, int), np.zeros(0, int)))
    attrs = _point_attrs(obs_ids, res.sub, res.n_sub, res.mare, res.mare_frac, res.lat, res.lon,
                         res.value, res.sigma, elements)
    attrs["region_i"] = np.atleast_1d(ri).astype(np.int64)
    attrs["region_j"] = np.atleast_1d(rj).astype(np.int64)
    return geo.write_vector(path, pts, attrs)


def write_gib_points(folder, elements=None, path=None, override=None):
    """Rewrite ``gib_points.gpkg`` (or ``path``) from all region sidecars of the GIB folder;
    ``override`` {(i, j): records} replaces the folder's records of those regions (a populate
    whose new sidecars are still staged)."""
    from shapely.geometry import Point
    elements = tuple(elements or _elements())
    folder = Path(folder)
    override = override or {}
    recs = []
    found = {tuple(int(s[1:]) for s in npz.stem.split("_")[1:3]) for npz in folder.glob("gib_r*_c*.npz")}
    for i, j in sorted(found | set(override)):
        rec = override[(i, j)] if (i, j) in override else load_region_records(folder, i, j, len(elements))
        rec = dict(rec)
        rec["region_i"] = np.full(rec["key"].size, i, np.int64)
        rec["region_j"] = np.full(rec["key"].size, j, np.int64)
        recs.append(rec)
    if recs:
        rec = {f: np.concatenate([r[f] for r in recs]) for f in list(_FIELDS) + ["region_i", "region_j"]}
    else:
        rec = dict(_empty_records(len(elements)), region_i=np.zeros(0, np.int64), region_j=np.zeros(0, np.int64))
    pts = [Point(float(x), float(y)) for x, y in zip(rec["lon"], rec["lat"])]
    attrs = _point_attrs(rec["obs_id"], rec["sub"], rec["n_sub"], rec["mare"], rec["mare_frac"],
                         rec["lat"], rec["lon"], rec["value"], rec["sigma"], elements)
    attrs.update(region_i=rec["region_i"], region_j=rec["region_j"], row=rec["row"], col=rec["col"])
    path = path or folder / POINTS
    geo.write_vector(path, pts, attrs)
    return path
