"""Lunar geometry, CRS and the raster/vector writers every stage shares.

CRS choices (measured with QGIS 3.22 / GDAL 3.6 on Debian 12, see the project's ENVIRONMENT notes):

* rasters carry ``IAU_2015:30100`` ("Moon (2015) - Sphere / Ocentric"), which survives a GeoTIFF
  write/read round trip in rasterio, GDAL and QGIS with its authority id;
* vectors carry ``ESRI:104903`` (GCS_Moon_2000, the same 1,737,400 m sphere), because GDAL 3.6
  reads ``IAU_2015:30100`` back from a GeoPackage as an invalid CRS while ``ESRI:104903``
  round-trips in GeoPackage and Shapefile.

The Moon is split, as in the paper, into 8 x 8 regions of 22.5 deg of latitude by 45 deg of
longitude, each a grid of 342 x 682 pixels of about 2 km; region (i, j) has i = 0 at 90 N growing
southwards and j = 0 at 180 W growing eastwards.
"""
import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import ClassXRFError

LUNAR_RASTER_CRS = "IAU_2015:30100"
LUNAR_VECTOR_CRS = "ESRI:104903"
MOON_RADIUS_KM = 1737.4

REGION_ROWS, REGION_COLS = 342, 682
REGION_DLAT, REGION_DLON = 22.5, 45.0
N_REGION_ROWS, N_REGION_COLS = 8, 8
PIXEL_DLAT = REGION_DLAT / REGION_ROWS
PIXEL_DLON = REGION_DLON / REGION_COLS
NODATA = -9999.0


# --------------------------------------------------------------------------- regions
def region_bounds(i, j):
    """(west, south, east, north) in degrees of region (i, j)."""
    i, j = int(i), int(j)
    if not (0 <= i < N_REGION_ROWS and 0 <= j < N_REGION_COLS):
        raise ClassXRFError(None, f"region ({i}, {j}) outside the 8 x 8 partition", key="region")
    north = 90.0 - REGION_DLAT * i
    west = -180.0 + REGION_DLON * j
    return west, north - REGION_DLAT, west + REGION_DLON, north


def region_of(lat, lon):
    """Region indices (i, j) holding the point(s) ``lat``, ``lon`` (degrees; arrays broadcast)."""
    lat = np.asarray(lat, dtype=float)
    lon = wrap_lon(np.asarray(lon, dtype=float))
    i = np.clip(np.floor((90.0 - lat) / REGION_DLAT), 0, N_REGION_ROWS - 1).astype(int)
    j = np.clip(np.floor((lon + 180.0) / REGION_DLON), 0, N_REGION_COLS - 1).astype(int)
    if i.ndim == 0:
        return int(i), int(j)
    return i, j


def region_grid(i, j):
    """Pixel-centre latitudes (row 0 = north) and longitudes of region (i, j)."""
    west, _, _, north = region_bounds(i, j)
    lat = north - PIXEL_DLAT * (np.arange(REGION_ROWS) + 0.5)
    lon = west + PIXEL_DLON * (np.arange(REGION_COLS) + 0.5)
    return lat, lon


def region_pixel(i, j, lat, lon):
    """Row and column in region (i, j) of points ``lat``, ``lon``; -1 where outside the region."""
    west, south, east, north = region_bounds(i, j)
    lat = np.asarray(lat, dtype=float)
    lon = wrap_lon(np.asarray(lon, dtype=float))
    row = np.floor((north - lat) / PIXEL_DLAT).astype(int)
    col = np.floor((lon - west) / PIXEL_DLON).astype(int)
    inside = (row >= 0) & (row < REGION_ROWS) & (col >= 0) & (col < REGION_COLS)
    return np.where(inside, row, -1), np.where(inside, col, -1)


def wrap_lon(lon):
    """Longitude wrapped into [-180, 180)."""
    return (np.asarray(lon, dtype=float) + 180.0) % 360.0 - 180.0


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance on the lunar sphere in km (numpy broadcasting)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2, dtype=float) - np.asarray(lon1, dtype=float))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2.0 * MOON_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


# --------------------------------------------------------------------------- footprints
def unwrap_lons(lons, reference=None):
    """Longitudes shifted by multiples of 360 to lie within 180 deg of ``reference``."""
    lons = np.asarray(lons, dtype=float)
    ref = lons.flat[0] if reference is None else reference
    return ref + (lons - ref + 180.0) % 360.0 - 180.0


def footprint_polygon(lats, lons):
    """The footprint polygon of corner latitudes/longitudes (degrees) in lon/lat.

    Corners are unwrapped around the first one, so a footprint that crosses the 180 deg meridian
    is cut there into a MultiPolygon whose parts lie in [-180, 180].
    """
    from shapely.geometry import Polygon

    lats = np.asarray(lats, dtype=float)
    lons = np.asarray(lons, dtype=float)
    if lats.shape != lons.shape or lats.size < 3:
        raise ClassXRFError(None, "a footprint needs at least 3 corners with a latitude and a longitude")
    if not (np.all(np.isfinite(lats)) and np.all(np.isfinite(lons))):
        raise ClassXRFError(None, "footprint corner is NaN or infinite")
    steps = (np.diff(np.append(lons, lons[0])) + 180.0) % 360.0 - 180.0
    winding = steps.sum()
    if abs(winding) > 180.0:
        # The ring encloses a pole: walk the corners with continuous longitudes, then close the
        # polygon along the pole's edge of the lon/lat plane.
        ulon = lons[0] + np.concatenate([[0.0], np.cumsum(steps)])
        pole = 90.0 if lats.mean() > 0 else -90.0
        ring = list(zip(ulon, np.append(lats, lats[0])))
        ring += [(ulon[-1], pole), (ulon[0], pole)]
        poly = Polygon(ring)
        if not poly.is_valid:
            poly = poly.buffer(0)
        lo = np.floor((min(ulon) + 180.0) / 360.0)
        return split_antimeridian(poly if lo == 0 else __import__("shapely").affinity.translate(poly, -360.0 * lo))
    ulon = unwrap_lons(lons)
    poly = Polygon(zip(ulon, lats))
    if not poly.is_valid:
        poly = poly.buffer(0)
    return split_antimeridian(poly)


def split_antimeridian(geom):
    """Cut a lon/lat geometry whose longitudes run past +-180 into parts inside [-180, 180]."""
    from shapely import affinity
    from shapely.geometry import MultiPolygon, box
    from shapely.ops import unary_union

    minx, _, maxx, _ = geom.bounds
    if minx >= -180.0 and maxx <= 180.0:
        return geom
    parts = []
    for shift in (-360.0, 0.0, 360.0):
        window = box(-180.0 - shift, -90.0, 180.0 - shift, 90.0)
        piece = geom.intersection(window)
        if not piece.is_empty and piece.area > 0:
            parts.append(affinity.translate(piece, xoff=shift))
    merged = unary_union(parts)
    if merged.geom_type == "Polygon":
        return MultiPolygon([merged])
    return merged


def union_footprints(polygons):
    """Union of footprint polygons that may lie on both sides of the 180 deg meridian."""
    from shapely import affinity
    from shapely.ops import unary_union

    polys = list(polygons)
    if not polys:
        raise ClassXRFError(None, "no footprint to merge")
    ref = polys[0].representative_point().x
    shifted = []
    for p in polys:
        parts = getattr(p, "geoms", [p])
        for part in parts:
            dx = 0.0
            cx = part.representative_point().x
            if cx - ref > 180.0:
                dx = -360.0
            elif ref - cx > 180.0:
                dx = 360.0
            shifted.append(affinity.translate(part, xoff=dx))
    return split_antimeridian(unary_union(shifted))


# --------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    A file already at ``path`` stays untouched when the block raises (bad input, cancel).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp = Path(tmp)
    try:
        yield tmp
        if path.suffix.lower() == ".shp":
            for ext in SHAPEFILE_PARTS:
                src = tmp.with_suffix(ext)
                if src.exists():
                    os.replace(src, path.with_suffix(ext))
        else:
            os.replace(tmp, path)
    finally:
        for leftover in _companions(tmp):
            if leftover.exists():
                leftover.unlink()


SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix")


def _companions(tmp):
    if tmp.suffix.lower() == ".shp":
        return [tmp.with_suffix(e) for e in SHAPEFILE_PARTS]
    return [tmp, Path(str(tmp) + ".aux.xml"), Path(str(tmp) + "-journal"), Path(str(tmp) + "-wal"),
            Path(str(tmp) + "-shm")]


# --------------------------------------------------------------------------- rasters
def write_geotiff(path, data, west, north, xres_deg, yres_deg, nodata=NODATA, band_names=None,
                  crs=LUNAR_RASTER_CRS, overviews=False):
    """Write ``data`` (bands, rows, cols) as a float32 tiled GeoTIFF in a lunar CRS, atomically.

    NaN becomes ``nodata``. ``band_names`` set the band descriptions QGIS shows.
    """
    import rasterio
    from rasterio.transform import from_origin

    arr = np.asarray(data, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ClassXRFError(path, f"raster data must be (bands, rows, cols), got shape {arr.shape}")
    arr = np.where(np.isfinite(arr), arr, np.float32(nodata)).astype(np.float32)
    bands, rows, cols = arr.shape
    profile = dict(driver="GTiff", width=cols, height=rows, count=bands, dtype="float32",
                   crs=crs, transform=from_origin(west, north, xres_deg, yres_deg), nodata=nodata,
                   compress="deflate", predictor=3)
    if rows >= 16 and cols >= 16:
        profile.update(tiled=True, blockxsize=256 if cols >= 256 else 16 * (cols // 16),
                       blockysize=256 if rows >= 256 else 16 * (rows // 16))
    with atomic_output(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arr)
            if band_names:
                for b, name in enumerate(band_names, start=1):
                    dst.set_band_description(b, str(name))
            if overviews and min(rows, cols) >= 64:
                from rasterio.enums import Resampling
                factors = [f for f in (2, 4, 8, 16) if min(rows, cols) // f >= 32]
                if factors:
                    dst.build_overviews(factors, Resampling.average)
    return Path(path)


def read_geotiff(path):
    """Read a GeoTIFF: (float32 data with NaN where nodata, meta dict)."""
    import rasterio

    path = Path(path)
    if not path.exists():
        raise ClassXRFError(path, "raster file not found")
    try:
        with rasterio.open(path) as src:
            data = src.read().astype(np.float32)
            nodata = src.nodata
            t = src.transform
            meta = dict(west=t.c, north=t.f, xres=t.a, yres=-t.e, band_names=list(src.descriptions),
                        crs=src.crs.to_string() if src.crs else None, nodata=nodata,
                        rows=src.height, cols=src.width)
    except rasterio.errors.RasterioIOError as exc:
        raise ClassXRFError(path, f"not a readable raster ({exc})") from exc
    if nodata is not None:
        data[data == np.float32(nodata)] = np.nan
    return data, meta


# --------------------------------------------------------------------------- vectors
def _driver_for(path):
    ext = Path(path).suffix.lower()
    if ext == ".gpkg":
        return "GPKG"
    if ext == ".shp":
        return "ESRI Shapefile"
    if ext in (".geojson", ".json"):
        return "GeoJSON"
    raise ClassXRFError(path, "vector output must end in .gpkg, .shp or .geojson")


def write_vector(path, geometries, attributes, crs=LUNAR_VECTOR_CRS, layer=None):
    """Write shapely geometries with attribute columns to a GeoPackage or Shapefile, atomically.

    ``attributes`` maps field name -> sequence (numbers, strings, bools). Shapefile field names are
    limited to 10 characters: longer names are refused rather than silently truncated.
    """
    import shapely
    from pyogrio.raw import write

    driver = _driver_for(path)
    geoms = list(geometries)
    n = len(geoms)
    names, columns = [], []
    for name, values in attributes.items():
        if driver == "ESRI Shapefile" and len(name) > 10:
            raise ClassXRFError(path, "Shapefile field names are limited to 10 characters", key=name)
        arr = np.asarray(values)
        if arr.shape[0] != n:
            raise ClassXRFError(path, f"column has {arr.shape[0]} values for {n} geometries", key=name)
        if arr.dtype == bool:
            arr = arr.astype(np.int32)
        elif arr.dtype.kind in "US":
            arr = arr.astype(object)
        elif arr.dtype.kind == "i":
            arr = arr.astype(np.int64)
        names.append(name)
        columns.append(arr)
    types = {g.geom_type for g in geoms}
    if types <= {"Polygon", "MultiPolygon"} and types:
        gtype, promote = "MultiPolygon", True
    elif types <= {"Point"} and types:
        gtype, promote = "Point", False
    else:
        gtype, promote = ("Unknown" if types else "Polygon"), False
    if promote:
        geoms = [g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g]) for g in geoms]
    wkb = np.array([shapely.to_wkb(g) for g in geoms], dtype=object)
    layer = layer or Path(path).stem
    # GeoPackage 1.2: GDAL 3.6 (QGIS 3.22 on Debian 12) warns that 1.4 "may only be partially supported"
    options = {"VERSION": "1.2"} if driver == "GPKG" else None
    with atomic_output(path) as tmp:
        write(str(tmp), wkb, columns, names, driver=driver, geometry_type=gtype, crs=crs,
              layer=layer, promote_to_multi=False, dataset_options=options)
    return Path(path)


def read_vector(path, columns=None):
    """Read a vector file: (list of shapely geometries, dict of numpy columns, CRS string)."""
    import shapely
    from pyogrio.raw import read

    path = Path(path)
    if not path.exists():
        raise ClassXRFError(path, "vector file not found")
    try:
        meta, _, geometry, field_data = read(str(path), columns=columns)
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise ClassXRFError(path, f"not a readable vector layer ({exc})") from exc
    geoms = [shapely.from_wkb(g) if g is not None else None for g in geometry]
    attrs = {name: np.asarray(col) for name, col in zip(meta["fields"], field_data)}
    return geoms, attrs, meta.get("crs")


def require_columns(path, attrs, names):
    """Raise a clear error naming the layer and the first missing column."""
    for name in names:
        if name not in attrs:
            raise ClassXRFError(path, "column missing from the observation layer "
                                      f"(it has: {', '.join(sorted(attrs)) or 'none'})", key=name)
