"""Albedo maps and the mare / highland split used as the prior of track population.

Two sources of the class of a place on the Moon:

* :class:`AlbedoMap`: an albedo raster, either a georeferenced GeoTIFF (any lunar geographic CRS,
  or a projected lunar CRS that pyproj can transform to) or a plain equirectangular image (PNG,
  JPG such as ``lroc_color_poles_1k.jpg``) taken to span longitude -180..180 and latitude
  -90..90 (pixel corners) with row 0 at the north. Colour images are turned into relative
  luminance (see :func:`luminance`). The mare / highland split is a threshold on this albedo
  chosen by Otsu's method applied to log(albedo) (:func:`otsu_albedo_threshold`), or one given
  by the user. Reproducible: it depends only on the raster.
* :class:`MarePolygons`: a user's polygon layer (read with :func:`geo.read_vector`) whose polygons
  are mare.

Flag convention used everywhere (``mare_flag``): **1 = mare** (dark), **0 = highland**
(bright), **-1 = unknown** (outside the raster, nodata, NaN coordinates).
"""
import os
import warnings

import numpy as np

from .errors import ClassXRFError

MARE = 1
HIGHLAND = 0
UNKNOWN = -1

VECTOR_EXTENSIONS = (".gpkg", ".shp", ".geojson", ".json", ".gml", ".kml", ".sqlite", ".fgb")


def _srgb_to_linear(v):
    """sRGB transfer function inverted (IEC 61966-2-1): encoded 0..1 -> linear 0..1."""
    v = np.asarray(v, dtype=np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def luminance(rgb, max_value=255.0):
    """Relative luminance of an sRGB image (bands, rows, cols) -> (rows, cols) in 0..1.

    The encoded values are divided by ``max_value``, linearised with the sRGB transfer function
    (IEC 61966-2-1) and combined with the ITU-R BT.709 primaries' weights
    Y = 0.2126 R + 0.7152 G + 0.0722 B. Linear luminance is proportional to reflected light, so
    it is the quantity an albedo threshold should act on. A single band is linearised alone.
    """
    rgb = np.asarray(rgb, dtype=np.float64) / float(max_value)
    if rgb.ndim == 2:
        return _srgb_to_linear(rgb)
    if rgb.shape[0] == 1:
        return _srgb_to_linear(rgb[0])
    if rgb.shape[0] < 3:
        raise ValueError("a colour image needs 3 bands (R, G, B)")
    lin = _srgb_to_linear(rgb[:3])
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def otsu_threshold(values, weights=None, bins=256):
    """Otsu's threshold (Otsu 1979, IEEE Trans. SMC 9, 62) of ``values``, optionally weighted.

    The finite values are put into ``bins`` equal bins spanning [min, max] (weights summed per
    bin). For every cut after bin k the between-class variance
    ``sigma_B^2(k) = w0 w1 (mu0 - mu1)^2`` (w: class weight fractions, mu: class means of the bin
    centres) is computed, and the cut that maximises it is chosen. Cuts inside a run of empty bins
    all give the same variance; the threshold is then the middle of that plateau (the mid point
    between the upper edge of the last non-empty bin below and the lower edge of the first
    non-empty bin above), so the result does not depend on the tie-break. Values strictly below
    the threshold form the dark class.

    ``weights`` (same shape as ``values``) e.g. cos(latitude) for an equirectangular map, so that
    each pixel counts by its area.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    w = np.ones_like(v) if weights is None else np.broadcast_to(np.asarray(weights, np.float64),
                                                                 np.shape(values)).ravel()
    ok = np.isfinite(v) & np.isfinite(w) & (w > 0)
    v, w = v[ok], w[ok]
    if v.size == 0:
        raise ValueError("no finite albedo values to threshold")
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        raise ValueError("the albedo is constant: no mare / highland split exists")
    edges = np.linspace(lo, hi, bins + 1)
    hist, _ = np.histogram(v, bins=edges, weights=w)
    centres = 0.5 * (edges[:-1] + edges[1:])
    p = hist / hist.sum()
    w0 = np.cumsum(p)[:-1]                       # weight of the dark class for a cut after bin k
    m0 = np.cumsum(p * centres)[:-1]
    mt = float(np.sum(p * centres))
    w1 = 1.0 - w0
    with np.errstate(invalid="ignore", divide="ignore"):
        sb = np.where((w0 > 0) & (w1 > 0), (mt * w0 - m0) ** 2 / (w0 * w1), -np.inf)
    best = np.max(sb)
    k = int(np.argmax(sb))                       # first maximising cut
    # Extend over the plateau of tied cuts (runs of empty bins): the last non-empty bin at or
    # before k, and the first non-empty bin after k.
    nonempty = np.nonzero(hist > 0)[0]
    below = nonempty[nonempty <= k]
    above = nonempty[nonempty > k]
    k_lo = int(below.max()) if below.size else k
    k_hi = int(above.min()) if above.size else k + 1
    assert np.isfinite(best)
    return 0.5 * (edges[k_lo + 1] + edges[k_hi])


def otsu_albedo_threshold(albedo, weights=None, bins=256):
    """The mare / highland albedo threshold: Otsu's method on log(albedo), returned as albedo.

    Why the logarithm: mare and highland differ by a factor in reflectance, and the residual
    illumination and photometric differences of a mosaic are multiplicative too; in log space the
    two populations are two shifted modes of similar width, which is the case Otsu's criterion
    assumes. On the LROC WAC colour mosaic ``lroc_color_poles_1k.jpg`` (area-weighted by
    cos(latitude)) Otsu on linear luminance cuts through the broad highland mode (41 % of the
    surface called mare), while on log luminance the cut falls in the valley between the dark mode
    (about 0.08) and the highland mode (about 0.3): about 20 % of the surface is mare, close to
    the 16-17 % of the Moon mapped as mare basalt. Non-positive albedos are ignored.
    """
    a = np.asarray(albedo, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        la = np.where(a > 0, np.log(np.where(a > 0, a, 1.0)), np.nan)
    return float(np.exp(otsu_threshold(la, weights=weights, bins=bins)))


def _normalise_lon(lon):
    return (np.asarray(lon, dtype=np.float64) + 180.0) % 360.0 - 180.0


class AlbedoMap:
    """An albedo raster with a mare / highland threshold.

    Build it with :func:`read_albedo`. ``albedo`` is (rows, cols) float64 (NaN = nodata).
    ``lon_of_col(c)`` / ``lat_of_row(r)`` of a geographic grid are defined by ``west``, ``north``,
    ``xres``, ``yres`` (degrees, pixel corners); projected GeoTIFFs keep their affine transform and
    a pyproj transformer from lunar longitude/latitude.
    """

    def __init__(self, albedo, west, north, xres, yres, path=None, threshold=None, crs=None,
                 transform=None, to_raster=None, global_lon=False):
        self.albedo = np.asarray(albedo, dtype=np.float64)
        self.west, self.north, self.xres, self.yres = float(west), float(north), float(xres), float(yres)
        self.path = path
        self.crs = crs
        self._transform = transform      # affine, for projected rasters
        self._to_raster = to_raster      # pyproj Transformer lon/lat -> raster x/y
        self.global_lon = bool(global_lon)
        if threshold is None:
            threshold = otsu_albedo_threshold(self.albedo, self.pixel_area_weights())
        self.threshold = float(threshold)

    def pixel_area_weights(self):
        """cos(latitude) of each row for a geographic grid (pixel areas); ones otherwise."""
        rows, cols = self.albedo.shape
        if self._transform is not None:
            return np.ones_like(self.albedo)
        lat = self.north - (np.arange(rows) + 0.5) * self.yres
        w = np.clip(np.cos(np.radians(lat)), 0.0, None)
        return np.broadcast_to(w[:, None], (rows, cols))

    def _pixel_index(self, lat, lon):
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        rows, cols = self.albedo.shape
        if self._transform is not None:
            x, y = self._to_raster.transform(lon, lat)
            x = np.asarray(x, dtype=np.float64)
            y = np.asarray(y, dtype=np.float64)
            inv = ~self._transform
            cf, rf = inv * (x, y)
            col = np.floor(np.asarray(cf, dtype=np.float64))
            row = np.floor(np.asarray(rf, dtype=np.float64))
        else:
            ln = _normalise_lon(lon)
            if self.global_lon:
                col = np.floor(((ln - self.west) % 360.0) / self.xres)
                col = np.where(col == cols, cols - 1, col)   # rounding at the seam
            else:
                d = ln - self.west
                # a raster given in 0..360 longitudes: bring the point into its span
                d = np.where(d < 0, d + 360.0, d)
                d = np.where(d >= cols * self.xres + 1e-9, d - 360.0, d)
                col = np.floor(d / self.xres)
            row = np.floor((self.north - lat) / self.yres)
            row = np.where(np.isclose(lat, self.north - rows * self.yres), rows - 1, row)
        ok = (np.isfinite(row) & np.isfinite(col) & (row >= 0) & (row < rows)
              & (col >= 0) & (col < cols))
        return np.where(ok, row, 0).astype(np.int64), np.where(ok, col, 0).astype(np.int64), ok

    def sample_albedo(self, lat, lon):
        """Albedo at (lat, lon) degrees (nearest pixel, arrays broadcast); NaN outside / nodata."""
        lat, lon = np.broadcast_arrays(np.asarray(lat, np.float64), np.asarray(lon, np.float64))
        r, c, ok = self._pixel_index(lat, lon)
        out = self.albedo[r, c]
        return np.where(ok, out, np.nan)

    def mare_flag(self, lat, lon):
        """int8 flag at (lat, lon): 1 mare (albedo below the threshold), 0 highland, -1 unknown."""
        a = self.sample_albedo(lat, lon)
        flag = np.where(a < self.threshold, MARE, HIGHLAND).astype(np.int8)
        return np.where(np.isfinite(a), flag, UNKNOWN).astype(np.int8)

    def mare_fraction(self):
        """Area-weighted fraction of the known pixels that are mare (a sanity figure)."""
        a, w = self.albedo, self.pixel_area_weights()
        ok = np.isfinite(a)
        return float(np.sum(w[ok] * (a[ok] < self.threshold)) / np.sum(w[ok]))


class MarePolygons:
    """Mare from a user's polygon layer: a point inside any selected polygon is mare.

    Every polygon of the layer is mare, unless the layer has a field ``mare`` (or ``MARE``):
    then only the features whose value is 1 are mare. Coordinates are longitude/latitude degrees
    (the layer must be in a lunar geographic CRS); longitudes are compared both as given and
    shifted by 360 deg so a layer in 0..360 works too. Everything outside is highland (0).
    """

    def __init__(self, geometries, path=None):
        import shapely
        geoms = [g for g in geometries if g is not None and not g.is_empty]
        self.path = path
        self.union = shapely.union_all(geoms) if geoms else shapely.Polygon()
        shapely.prepare(self.union)

    def mare_flag(self, lat, lon):
        import shapely
        lat, lon = np.broadcast_arrays(np.asarray(lat, np.float64), np.asarray(lon, np.float64))
        ok = np.isfinite(lat) & np.isfinite(lon)
        la = np.where(ok, lat, 0.0)
        ln = np.where(ok, _normalise_lon(lon), 0.0)
        inside = shapely.contains_xy(self.union, ln, la) | shapely.contains_xy(self.union, ln + 360.0, la)
        flag = np.where(inside, MARE, HIGHLAND).astype(np.int8)
        return np.where(ok, flag, UNKNOWN).astype(np.int8)


def _is_vector(path):
    return str(path).lower().endswith(VECTOR_EXTENSIONS)


def read_albedo(path, threshold=None, band=None):
    """Read an albedo raster (GeoTIFF or equirectangular image) -> :class:`AlbedoMap`.

    A raster with a geotransform is placed by it: a geographic CRS (or none, with a transform in
    degrees) is read as longitude/latitude; a projected CRS is handled through pyproj from lunar
    longitude/latitude (``ESRI:104903``). A raster without georeferencing (PNG/JPG) is the whole
    Moon, -180..180 x -90..90, row 0 at 90N. Several bands are combined into luminance
    (:func:`luminance`) unless ``band`` (1-based) picks one. ``threshold`` overrides Otsu's.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    if not os.path.exists(str(path)):
        raise ClassXRFError(path, "albedo raster not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(str(path)) as ds:
                data = ds.read().astype(np.float64)
                nodata = ds.nodata
                crs = ds.crs
                transform = ds.transform
                georef = (not transform.is_identity) or bool(ds.gcps[0]) or crs is not None
                dtype = ds.dtypes[0]
    except RasterioIOError as exc:
        raise ClassXRFError(path, f"cannot read the albedo raster ({exc})") from exc
    if nodata is not None:
        data[data == nodata] = np.nan
    bands, rows, cols = data.shape
    if band is not None:
        if not 1 <= int(band) <= bands:
            raise ClassXRFError(path, f"band {band} does not exist (the raster has {bands})", key="band")
        img = data[int(band) - 1]
    elif bands >= 3 and dtype == "uint8":
        img = luminance(data[:3], 255.0)
    elif bands >= 3 and dtype == "uint16":
        img = luminance(data[:3], 65535.0)
    elif bands >= 3:
        img = 0.2126 * data[0] + 0.7152 * data[1] + 0.0722 * data[2]
    else:
        img = data[0]
        if dtype == "uint8":
            img = _srgb_to_linear(img / 255.0)
    if not np.any(np.isfinite(img)):
        raise ClassXRFError(path, "the albedo raster holds no valid value")

    kw = dict(path=str(path), threshold=threshold)
    if not georef:
        return AlbedoMap(img, -180.0, 90.0, 360.0 / cols, 180.0 / rows, global_lon=True, **kw)
    if abs(transform.b) > 0 or abs(transform.d) > 0:
        raise ClassXRFError(path, "rotated geotransforms are not supported; warp the raster first")
    if crs is None or crs.is_geographic:
        west, north = transform.c, transform.f
        xres, yres = transform.a, -transform.e
        if xres <= 0 or yres <= 0:
            raise ClassXRFError(path, "the geotransform must run west to east and north to south")
        glob = abs(cols * xres - 360.0) < 1e-6 * 360.0
        return AlbedoMap(img, west, north, xres, yres, crs=None if crs is None else crs.to_string(),
                         global_lon=glob, **kw)
    from pyproj import CRS, Transformer
    try:
        to_raster = Transformer.from_crs(CRS.from_user_input("ESRI:104903"),
                                         CRS.from_user_input(crs.to_wkt()), always_xy=True)
    except Exception as exc:  # pyproj raises several kinds
        raise ClassXRFError(path, f"cannot relate the raster CRS to lunar longitude/latitude ({exc})",
                            key="crs") from exc
    return AlbedoMap(img, transform.c, transform.f, transform.a, -transform.e, crs=crs.to_string(),
                     transform=transform, to_raster=to_raster, **kw)


def read_mare_polygons(path):
    """Read a mare polygon layer (any format :func:`geo.read_vector` reads) -> :class:`MarePolygons`."""
    from . import geo

    if not os.path.exists(str(path)):
        raise ClassXRFError(path, "mare polygon layer not found")
    geoms, attrs, _crs = geo.read_vector(str(path))
    key = next((k for k in attrs if k.lower() == "mare"), None)
    if key is not None:
        sel = np.asarray(attrs[key])
        try:
            sel = sel.astype(np.float64) == 1
        except (TypeError, ValueError) as exc:
            raise ClassXRFError(path, "the mare field must hold 1 (mare) or 0", key=key) from exc
        geoms = [g for g, s in zip(geoms, sel) if s]
    bad = [g for g in geoms if g is not None and g.geom_type not in ("Polygon", "MultiPolygon")]
    if bad:
        raise ClassXRFError(path, f"the mare layer must hold polygons, found {bad[0].geom_type}")
    return MarePolygons(geoms, path=str(path))


def load_classifier(source, threshold=None):
    """An object with ``mare_flag(lat, lon)`` from a path (raster, image or polygon layer) or itself."""
    if hasattr(source, "mare_flag"):
        return source
    if _is_vector(source):
        return read_mare_polygons(source)
    return read_albedo(source, threshold=threshold)
