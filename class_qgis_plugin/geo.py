"""Lunar geometry, CRS and the raster/vector writers every stage shares.

CRS (measured with QGIS 3.22 / GDAL 3.6 / PROJ 9.1 on Debian 12, files written by rasterio and
pyogrio; see :data:`choices.LUNAR_CRS`): every raster and vector carries ``ESRI:104903``
(GCS_Moon_2000, longitude/latitude on the 1,737,400 m sphere), the one lunar CRS that reads back with
its authority id from GeoTIFF, GeoPackage, Shapefile and GeoJSON alike. ``IAU_2015:30100`` (the same
sphere) survives only GeoTIFF: GDAL 3.6 / QGIS 3.22 read it back from a GeoPackage or GeoJSON as an
invalid CRS and from a Shapefile as an unidentified custom one, and a layer in one CRS on a project
in the other makes QGIS transform between them. ``LUNAR_RASTER_CRS`` and ``LUNAR_VECTOR_CRS`` are
both that CRS.

The Moon is split, as in the paper, into 8 x 8 regions of 22.5 deg of latitude by 45 deg of
longitude, each a grid of 342 x 682 pixels of about 2 km; region (i, j) has i = 0 at 90 N growing
southwards and j = 0 at 180 W growing eastwards.
"""
import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

from .choices import LUNAR_CRS, N_REGION_COLS, N_REGION_ROWS
from .errors import ClassXRFError

LUNAR_RASTER_CRS = LUNAR_VECTOR_CRS = LUNAR_CRS
MOON_RADIUS_KM = 1737.4

REGION_ROWS, REGION_COLS = 342, 682
REGION_DLAT, REGION_DLON = 22.5, 45.0
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


def to_xyz(lat, lon):
    """Unit vectors (..., 3) of latitudes/longitudes in degrees."""
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def to_latlon(xyz):
    """Latitudes and longitudes (degrees) of vectors (..., 3)."""
    xyz = xyz / np.linalg.norm(xyz, axis=-1, keepdims=True)
    lat = np.degrees(np.arcsin(np.clip(xyz[..., 2], -1.0, 1.0)))
    lon = np.degrees(np.arctan2(xyz[..., 1], xyz[..., 0]))
    return lat, lon


class TangentPlane:
    """Azimuthal-equidistant plane (km) tangent to the lunar sphere at a centre unit vector."""

    def __init__(self, p0, radius_km=MOON_RADIUS_KM):
        p0 = np.asarray(p0, dtype=np.float64)
        self.p0 = p0 / np.linalg.norm(p0)
        self.R = float(radius_km)
        z = np.array([0.0, 0.0, 1.0])
        east = np.cross(z, self.p0)
        if np.linalg.norm(east) < 1e-9:            # at a pole: any tangent direction will do
            east = np.array([0.0, 1.0, 0.0])
        self.e1 = east / np.linalg.norm(east)
        self.e2 = np.cross(self.p0, self.e1)

    def forward(self, xyz):
        """Unit vectors (..., 3) -> plane coordinates (..., 2) km."""
        cosc = np.clip(xyz @ self.p0, -1.0, 1.0)
        c = np.arccos(cosc)
        u, v = xyz @ self.e1, xyz @ self.e2
        s = np.hypot(u, v)
        k = np.where(s > 1e-15, self.R * c / np.where(s > 1e-15, s, 1.0), self.R)
        return np.stack([k * u, k * v], axis=-1)

    def inverse(self, xy):
        """Plane coordinates (..., 2) km -> unit vectors (..., 3)."""
        xy = np.asarray(xy, dtype=np.float64)
        r = np.hypot(xy[..., 0], xy[..., 1])
        c = r / self.R
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.where(r > 1e-15, np.sin(c) / np.where(r > 1e-15, r, 1.0), 1.0 / self.R)
        return (np.cos(c)[..., None] * self.p0 + (f * xy[..., 0])[..., None] * self.e1
                + (f * xy[..., 1])[..., None] * self.e2)


#: latitude (deg) from which footprints are merged on the sphere (tangent plane), not in lon/lat
POLAR_LAT = 70.0


def union_footprint_corners(corner_lats, corner_lons, step_km=1.0):
    """The union of footprints given by their corners (lists of (4,) arrays, degrees), as a lon/lat
    (Multi)Polygon. In lon/lat where every corner lies within :data:`POLAR_LAT` of the equator;
    otherwise on the sphere: the corners are taken to the plane tangent at their mean direction
    (azimuthal equidistant, :class:`TangentPlane`), the quadrilaterals are merged there, and the
    outline comes back to lon/lat densified every ``step_km`` (a pole inside it is closed along the
    pole's edge of the lon/lat plane, as :func:`footprint_polygon` does). Merging in lon/lat near a
    pole overstates the area (a window of frames around the north pole: 2,227 km2 in lon/lat for
    frames whose union covers 1,329 km2)."""
    lats = [np.asarray(a, float) for a in corner_lats]
    lons = [np.asarray(a, float) for a in corner_lons]
    if not lats:
        raise ClassXRFError(None, "no footprint to merge")
    if max(float(np.max(np.abs(a))) for a in lats) < POLAR_LAT:
        return union_footprints([footprint_polygon(a, o) for a, o in zip(lats, lons)])
    from shapely.geometry import Polygon
    from shapely.ops import unary_union
    xyz = [to_xyz(a, o) for a, o in zip(lats, lons)]
    centre = np.mean(np.concatenate(xyz), axis=0)
    plane = TangentPlane(centre)
    merged = unary_union([Polygon(plane.forward(v)).buffer(0) for v in xyz])
    parts = []
    for part in getattr(merged, "geoms", [merged]):
        ring = np.asarray(part.exterior.segmentize(step_km).coords)[:-1]
        la, lo = to_latlon(plane.inverse(ring))
        parts.append(footprint_polygon(la, lo))
    return union_footprints(parts)


def footprint_area_km2(geom, step_deg=0.01):
    """Area (km2) on the lunar sphere of a lon/lat (Multi)Polygon, in a Lambert azimuthal
    equal-area projection centred on it (pyproj), edges densified every ``step_deg``."""
    from pyproj import Transformer
    from shapely.ops import transform
    c = geom.representative_point()
    xyz = to_xyz(np.asarray([c.y]), np.asarray([c.x]))
    lat0, lon0 = (float(v[0]) for v in to_latlon(xyz))
    tr = Transformer.from_proj(f"+proj=longlat +R={MOON_RADIUS_KM * 1000:.0f} +no_defs",
                               f"+proj=laea +lat_0={lat0} +lon_0={lon0} +R={MOON_RADIUS_KM * 1000:.0f} +units=km",
                               always_xy=True)
    return float(transform(tr.transform, geom.segmentize(step_deg)).area)


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
def _remove_stale_temporaries(path):
    """Temporary files of earlier writes of ``path`` whose process is gone (a kill -9 in the middle of
    a write): ``.<stem>.<pid>.<random><suffix>`` and their companions."""
    for leftover in path.parent.glob(f".{path.stem}.*"):
        parts = leftover.name[len(path.stem) + 2:].split(".")
        try:
            pid = int(parts[0])
        except (ValueError, IndexError):
            continue
        try:
            os.kill(pid, 0)
            continue                      # still running: its write is not ours to touch
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            leftover.unlink()
        except OSError:
            pass


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    A file already at ``path`` stays untouched when the block raises (bad input, cancel); the
    temporary name carries the process id, so what a killed write left is removed by the next write
    of the same path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}.", suffix=path.suffix, dir=path.parent)
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


def save_figure(fig, path, dpi=90):
    """Save the matplotlib figure ``fig`` as a PNG at ``path`` atomically and close it -> the path."""
    import matplotlib.pyplot as plt
    path = os.fspath(path)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


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
    ids = attributes.get("obs_id")
    for r, g in enumerate(geoms):       # an empty geometry would turn the layer's type to Unknown
        if g is None or g.is_empty:
            who = f"obs_id {ids[r]}" if ids is not None else f"row {r}"
            raise ClassXRFError(path, f"{who} has an empty footprint (its corners enclose no area); leave it out")
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
