"""The Global Information Bank (GIB): populated sub-footprint abundances on the 2 km grid.

Layout of a GIB folder
----------------------
* ``gib_r{i}_c{j}.tif``: one GeoTIFF per region touched (:func:`region_path`; read by :func:`read_gib`
  and :func:`read_region`, the region a name stands for by :func:`region_of_path`): REGION_ROWS x REGION_COLS,
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
  ``t_end``) when the abundance layer has those columns (the co-added spectrum each row was inverted
  from), else the content key itself. The
  content key is a SHA-256 of the row (obs_id, identity fields, geometry, X, X_err, X_ok), the
  albedo / mare source file's SHA-256, the priors and the sub-footprint size.
  Populating again with the same inputs finds every key already there and changes nothing (no
  file is rewritten); an observation whose identity is known with another key (re-inverted, or
  populated with another albedo) replaces its old contribution in the regions it touched.
* ``gib_points.gpkg``: the point layer of all populated sub-footprints in the GIB (ESRI:104903),
  rewritten from the sidecars when something changed.

Only the regions holding added or removed contributions are rewritten (the paper's "dynamic" GIB).

Populating: :func:`populate` (footprints and their attributes already read; the populate stage,
:func:`class_qgis_plugin.tasks.populate`, reads the layer and writes the point layer in one
transaction with the GIB). The
super-resolution reads a region through :func:`read_gib` and :func:`footprint_groups_of_gib` (the
sidecar's footprints, :class:`class_qgis_plugin.superres.kriging.FootprintGroups`): this module alone
knows the GIB's file names.
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
    """The file of region (i, j) in a GIB folder: ``gib_r{i}_c{j}`` + ``ext``."""
    return Path(folder) / f"gib_r{int(i)}_c{int(j)}{ext}"


def region_of_path(path):
    """The region (i, j) a GIB file is named for (``gib_r{i}_c{j}``, any extension), or None when its
    name is another (a renamed raster cannot be told apart from another region's)."""
    name = Path(path).stem
    try:
        i, j = (int(v) for v in name[len("gib_r"):].split("_c"))
    except ValueError:
        return None
    return (i, j) if region_path("", i, j, "").name == name else None


def sidecar_path(gib_tif):
    """The sidecar of a GIB region raster: the same name, ``.npz``."""
    return Path(os.path.splitext(os.path.abspath(str(gib_tif)))[0] + ".npz")


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


def read_gib(gib_tif):
    """The GIB region raster ``gib_tif`` -> (wt% (rows, cols, 8), their errors (rows, cols, 8), n_obs
    (rows, cols), meta); NaN = nodata. A raster without the 17 bands or the region's size is an error
    naming it."""
    data, meta = geo.read_geotiff(gib_tif)
    if data.shape[0] < 17:
        raise ClassXRFError(gib_tif, f"a GIB raster has 17 bands (8 wt%, 8 errors, n_obs), this one has "
                                     f"{data.shape[0]}", key="bands")
    if data.shape[1:] != (geo.REGION_ROWS, geo.REGION_COLS):
        raise ClassXRFError(gib_tif, f"a GIB raster is {geo.REGION_ROWS} x {geo.REGION_COLS} pixels, this one is "
                                     f"{data.shape[1]} x {data.shape[2]}", key="size")
    return (np.moveaxis(data[0:8], 0, -1), np.moveaxis(data[8:16], 0, -1), data[16], meta)


def footprint_records(gib_tif, region=None):
    """The sidecar records of the GIB region raster ``gib_tif`` (:func:`load_region_records`), or None:
    without a sidecar, when its name is not the canonical name of ``region`` (default: the region
    its name gives) or when the sidecar holds no contribution."""
    side = sidecar_path(gib_tif)
    if not side.is_file():
        return None
    named = region_of_path(gib_tif)
    if named is None or (region is not None and named != tuple(int(v) for v in region)):
        return None
    rec = load_region_records(side.parent, *named)
    return rec if rec["key"].size else None


def footprint_groups_of_gib(gib_tif, region=None):
    """The footprints behind the pixels of the GIB region raster ``gib_tif``, from its sidecar
    (:func:`footprint_records`), as :class:`class_qgis_plugin.superres.kriging.FootprintGroups` (a
    footprint identified by its observation key), or None without usable records."""
    rec = footprint_records(gib_tif, region)
    if rec is None:
        return None
    from .superres.kriging import FootprintGroups
    return FootprintGroups(rec["row"] * geo.REGION_COLS + rec["col"], rec["key"], rec["value"], rec["sigma"])


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


# ------------------------------------------------------------------------------ populating: the steps
class _Plan:
    """What one populate run does. Per row of the layer: ``idents`` (observation identity), ``keys``
    (content key), ``obs_ids``; the rows to populate ``new_rows`` (new or changed), of those ``replaced``
    (known with another key), ``already`` (rows unchanged in the GIB), ``skipped`` [(obs_id, reason)];
    then (:func:`_populate_rows`) the sub-footprints ``result`` (:class:`population.Population`) with their
    rows ``fp_rows``, keys ``sub_keys`` and regions ``ri``, ``rj``, the rows that got sub-footprints
    ``populated_rows``; and (:func:`_plan_removals`) the contributions to take out ``remove_keys`` and
    the regions to rewrite ``regions``."""


def open_folder(gib_folder):
    """The GIB folder (a Path), made if needed, after finishing (or dropping) what a killed run left."""
    from . import transact
    folder = Path(gib_folder)
    if folder.exists() and not folder.is_dir():
        raise ClassXRFError(folder, "the GIB folder is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    transact.recover(folder)
    return folder


def _source_context(albedo, threshold, mare_wt, highland_wt, sub_size_km, prior):
    """The mare classifier of ``albedo`` and what every content key includes besides the row (the
    albedo source's SHA-256, the threshold, the priors, the sub-footprint size and prior form) ->
    (classifier, threshold or None, context)."""
    from . import albedo as albedo_mod
    if hasattr(albedo, "mare_flag"):
        classifier, src_hash = albedo, f"object:{type(albedo).__name__}:{getattr(albedo, 'path', '')}"
    else:
        classifier = albedo_mod.load_classifier(albedo, threshold=threshold)
        src_hash = file_sha256(albedo)
    thr = getattr(classifier, "threshold", None)
    thr = None if thr is None else float(thr)
    context = dict(albedo=src_hash, threshold=thr, mare=[float(v) for v in mare_wt],
                   high=[float(v) for v in highland_wt], sub=sub_size_km, prior=prior)
    return classifier, thr, context


def _plan_rows(geoms, attrs, values, errors, ok, context, known):
    """Identity and key of every row, and which rows to populate (a :class:`_Plan`): a row whose identity
    the GIB (its ledger's ``known`` observations) has with the same key is already there; a second row
    of one observation in the layer is skipped."""
    plan = _Plan()
    n = len(geoms)
    plan.obs_ids = (np.asarray(attrs["obs_id"]).astype(np.int64) if "obs_id" in attrs
                    else np.arange(n, dtype=np.int64))
    pairs = [_identity_and_key(attrs, r, geoms[r], values, errors, ok, context) for r in range(n)]
    plan.idents, plan.keys = [i for i, _ in pairs], [k for _, k in pairs]
    plan.new_rows, plan.replaced, plan.already, plan.skipped = [], [], 0, []
    seen = {}
    for r, ident in enumerate(plan.idents):
        if ident in seen:
            plan.skipped.append((int(plan.obs_ids[r]), f"duplicate of row {seen[ident]} in the same layer "
                                                       f"(same observation {ident})"))
            continue
        seen[ident] = r
        prev = known.get(ident)
        if prev is not None and prev["key"] == plan.keys[r]:
            plan.already += 1
            continue
        if prev is not None:
            plan.replaced.append(r)
        plan.new_rows.append(r)
    return plan


def _populate_rows(plan, geoms, values, errors, ok, classifier, mare_wt, highland_wt, sub_size_km, prior,
                   progress):
    """Sub-footprints: the plan's rows split, classified and solved (:func:`population.populate_footprints`);
    each sub-footprint's row, content key and region."""
    from . import population as pop
    from .composition import ELEMENTS
    rows = plan.new_rows
    res = pop.populate_footprints([geoms[r] for r in rows], values[rows], errors[rows], ok[rows], classifier,
                                  mare_wt, highland_wt, ELEMENTS, sub_size_km=sub_size_km, progress=progress,
                                  prior=prior)
    for local, reason in res.skipped:
        plan.skipped.append((int(plan.obs_ids[rows[local]]), reason))
    plan.result = res
    plan.fp_rows = np.asarray(rows, np.int64)[res.footprint] if res.footprint.size else np.zeros(0, np.int64)
    plan.sub_keys = np.asarray([plan.keys[r] for r in plan.fp_rows], dtype="U64")
    ri, rj = geo.region_of(res.lat, res.lon) if plan.fp_rows.size else (np.zeros(0, int), np.zeros(0, int))
    plan.ri, plan.rj = np.atleast_1d(ri), np.atleast_1d(rj)
    plan.populated_rows = sorted(set(plan.fp_rows.tolist()))


def _plan_removals(plan, known):
    """The old contributions to take out: replaced identities (their old key), and any stale copy of a
    new key (a run interrupted after writing some regions but before the ledger); the regions touched.
    A replaced observation whose new version was skipped is taken out too (its old values are
    superseded), and said so."""
    plan.remove_keys = set(plan.keys[r] for r in plan.populated_rows)
    touched = set(zip(plan.ri.tolist(), plan.rj.tolist()))
    for r in plan.replaced:
        prev = known[plan.idents[r]]
        plan.remove_keys.add(prev["key"])
        touched.update(tuple(x) for x in prev["regions"])
    for r in plan.replaced:
        if r not in plan.populated_rows:
            plan.skipped.append((int(plan.obs_ids[r]), "new version could not be populated; its previous "
                                                       "contribution was removed from the GIB"))
    plan.regions = sorted(touched)


def _merged_region(folder, i, j, plan, n_el):
    """Region (i, j)'s records less the plan's removed contributions, plus its new sub-footprints ->
    (records, keys added)."""
    rec = load_region_records(folder, i, j, n_el)
    keep = ~np.isin(rec["key"], list(plan.remove_keys)) if rec["key"].size else np.zeros(0, bool)
    rec = _select(rec, keep)
    sel = (plan.ri == i) & (plan.rj == j)
    if not sel.any():
        return rec, []
    res = plan.result
    row, col = pixel_of(i, j, res.lat[sel], res.lon[sel])
    add = dict(key=plan.sub_keys[sel], obs_id=plan.obs_ids[plan.fp_rows[sel]], sub=res.sub[sel].astype(np.int64),
               n_sub=res.n_sub[sel].astype(np.int64), lat=res.lat[sel], lon=res.lon[sel],
               row=row.astype(np.int64), col=col.astype(np.int64), mare=res.mare[sel].astype(np.int8),
               mare_frac=res.mare_frac[sel], value=res.value[sel], sigma=res.sigma[sel])
    return _concat(rec, add), np.unique(add["key"])


def _write_regions(folder, plan, tx, p):
    """Every touched region merged (:func:`_merged_region`), its raster and sidecar staged in ``tx``
    (both removed when it is left empty) -> (files, records by region, regions of each added key)."""
    from .composition import ELEMENTS
    files, new_records, regions_of_key = [], {}, {}
    rp = subrange(p, 0.5, 0.95)
    for n_done, (i, j) in enumerate(plan.regions):
        rp.check()
        rp.set(n_done / max(len(plan.regions), 1), f"region ({i}, {j})")
        rec, added = _merged_region(folder, i, j, plan, len(ELEMENTS))
        for k in added:
            regions_of_key.setdefault(str(k), []).append([int(i), int(j)])
        new_records[(i, j)] = rec
        tif, npz = region_path(folder, i, j), region_path(folder, i, j, ".npz")
        if rec["key"].size:
            _save_records(folder, i, j, rec, path=tx.path(npz))
            write_region(folder, i, j, rec, ELEMENTS, path=tx.path(tif))
            files += [str(tif), str(npz)]
        else:
            tx.remove(tif)
            tx.remove(npz)
    return files, new_records, regions_of_key


def _write_ledger_and_points(folder, plan, led, new_records, regions_of_key, source, tx, p):
    """The ledger (replaced identities dropped, populated ones recorded with their regions) and the GIB's
    point layer, staged in ``tx`` when a region changed -> files."""
    from .composition import ELEMENTS
    if not plan.regions:
        return []
    known = led["observations"]
    for r in plan.replaced:
        known.pop(plan.idents[r], None)
    for r in plan.populated_rows:
        known[plan.idents[r]] = dict(key=plan.keys[r], regions=regions_of_key.get(plan.keys[r], []),
                                     obs_id=int(plan.obs_ids[r]), source=None if source is None else str(source))
    _write_ledger(folder, led, path=tx.path(folder / LEDGER))
    p.set(0.96, "writing the GIB point layer")
    write_gib_points(folder, ELEMENTS, path=tx.path(folder / POINTS), override=new_records)
    return [str(folder / LEDGER), str(folder / POINTS)]


def _write_gib(folder, plan, led, source, tx, p):
    """Regions, sidecars, ledger and point layer staged in ``tx`` -> files."""
    files, new_records, regions_of_key = _write_regions(folder, plan, tx, p)
    return files + _write_ledger_and_points(folder, plan, led, new_records, regions_of_key, source, tx, p)


# ------------------------------------------------------------------------------ entry points
def populate(geoms, attrs, albedo, gib_folder, *, source=None, sub_size_km=None, prior="fraction", progress=None,
             place=None, threshold=None, mare_wt=None, highland_wt=None):
    """Populate footprints into the GIB folder (created if needed) -> ``(point geometries, point
    attributes, summary)`` of this run's populated sub-footprints.

    ``geoms`` (N shapely polygons, lon/lat) and ``attrs`` (their columns: X, X_err, X_ok for every
    element X, ``obs_id``, and ``pha_path``, ``t_start``, ``t_end`` when known: the observation's
    identity) are an abundance layer's rows; ``source`` its path (named in errors and in the ledger).
    ``place``: an open :class:`transact.Transaction` the GIB's files are staged in, for the caller to
    commit with its own outputs (all or nothing); None: populate stages them in its own transaction and
    commits it.

    ``albedo``: an albedo raster / equirectangular image, a mare polygon layer (.gpkg, .shp, ...)
    or an object with ``mare_flag(lat, lon)``. ``threshold`` overrides Otsu's albedo threshold.
    ``prior``: how a sub-footprint's prior D is formed (see :func:`population.populate_footprints`).

    Summary keys: ``footprints`` (rows read), ``populated`` (footprints newly added or replaced),
    ``already_in_gib`` (unchanged, skipped), ``replaced``, ``sub_footprints`` (added this run),
    ``regions_touched`` (sorted [(i, j)]), ``skipped`` ([(obs_id or row, reason)]),
    ``element_skips`` ({element: footprints where it was not populated}), ``element_notes``
    ({element: why measured values were left out, e.g. rows with X_err = 0}), ``files`` (written),
    ``threshold`` (albedo threshold used, or None).
    """
    from . import population as pop
    from . import transact
    from .composition import ELEMENTS, HIGHLAND_WT, MARE_WT

    p = as_progress(progress)
    folder = open_folder(gib_folder)
    mare_wt = np.asarray(MARE_WT if mare_wt is None else mare_wt, np.float64)
    highland_wt = np.asarray(HIGHLAND_WT if highland_wt is None else highland_wt, np.float64)
    values, errors, ok = pop.abundance_columns(attrs, len(geoms), ELEMENTS, source)
    classifier, thr, context = _source_context(albedo, threshold, mare_wt, highland_wt, sub_size_km, prior)
    led = _read_ledger(folder)
    plan = _plan_rows(geoms, attrs, values, errors, ok, context, led["observations"])
    p.set(0.05, "splitting and solving")
    _populate_rows(plan, geoms, values, errors, ok, classifier, mare_wt, highland_wt, sub_size_km, prior,
                   subrange(p, 0.05, 0.5))
    _plan_removals(plan, led["observations"])
    if place is None:
        with transact.Transaction(folder) as tx:     # rasters, sidecars, ledger, layer: all or nothing
            files = _write_gib(folder, plan, led, source, tx, p)
            p.check()
        p.set(1.0, "GIB updated")
    else:
        files = _write_gib(folder, plan, led, source, place, p)
    res = plan.result
    pts, pattrs = _point_layer(res, plan.obs_ids[plan.fp_rows] if plan.fp_rows.size else np.zeros(0, np.int64),
                               ELEMENTS)
    summary = dict(footprints=len(geoms), populated=len(plan.populated_rows), already_in_gib=plan.already,
                   replaced=len([r for r in plan.replaced if r in plan.populated_rows]),
                   sub_footprints=int(plan.fp_rows.size), regions_touched=plan.regions, skipped=plan.skipped,
                   element_skips=res.element_skips, element_notes=res.element_notes, files=files,
                   threshold=thr)
    return pts, pattrs, summary


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


def _point_layer(res, obs_ids, elements):
    """Points and attributes (with their regions) of populated sub-footprints ``res``."""
    from shapely.geometry import Point
    pts = [Point(float(x), float(y)) for x, y in zip(res.lon, res.lat)]
    ri, rj = (geo.region_of(res.lat, res.lon) if len(pts) else (np.zeros(0, int), np.zeros(0, int)))
    attrs = _point_attrs(obs_ids, res.sub, res.n_sub, res.mare, res.mare_frac, res.lat, res.lon,
                         res.value, res.sigma, elements)
    attrs["region_i"] = np.atleast_1d(ri).astype(np.int64)
    attrs["region_j"] = np.atleast_1d(rj).astype(np.int64)
    return pts, attrs


def write_gib_points(folder, elements=None, path=None, override=None):
    """Rewrite ``gib_points.gpkg`` (or ``path``) from all region sidecars of the GIB folder;
    ``override`` {(i, j): records} replaces the folder's records of those regions (a populate
    whose new sidecars are still staged)."""
    from shapely.geometry import Point
    elements = tuple(elements or _elements())
    folder = Path(folder)
    override = override or {}
    recs = []
    found = {region_of_path(npz) for npz in folder.glob("gib_r*_c*.npz")} - {None}
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
