"""The project's basemap: an albedo / colour image of the Moon as a lunar GeoTIFF with overviews.

Two kinds of input are accepted:

* an **equirectangular image** (PNG, JPG, or any raster without georeferencing) whose pixels cover
  the whole Moon, longitude -180..180 (or 0..360, ``west=0``) and latitude 90..-90, twice as wide as
  it is tall (e.g. ``lroc_color_poles_1k.jpg``, 1024 x 512). It is georeferenced in the plugin's
  lunar CRS ``ESRI:104903`` (GCS_Moon_2000: longitude/latitude on the 1,737,400 m sphere; see
  :data:`choices.LUNAR_CRS`):
  pixel (row r, col c) spans lon ``-180 + c * 360 / w`` .. ``+ 360 / w``, lat
  ``90 - r * 180 / h`` .. ``- 180 / h`` (the plate carree convention: edges, not centres, at the
  poles and the antimeridian). A 0..360 image is rolled by half its width so the output always
  spans -180..180, like every other layer of the plugin.
* a **GeoTIFF** already georeferenced: it is validated (readable, georeferenced, a lunar CRS, a
  geographic extent inside -180..360, -90..90) and kept, or copied to the output, with overviews
  added when it has none. A GeoTIFF without a CRS but with a degree extent, or in another geographic
  lunar CRS (e.g. ``IAU_2015:30100``, or a bare ``+proj=longlat +R=1737400`` that QGIS reads as a
  custom CRS it cannot transform), is labelled ``ESRI:104903``: the same longitudes and latitudes,
  in the CRS of every other layer of the plugin, so QGIS never transforms between them.
  An Earth CRS is refused: the Moon -> Earth transforms are not defined and would silently put the
  basemap in the wrong place.

The output is tiled, deflate-compressed, with internal overviews (averaged, factors 2, 4, 8, ...
down to about 256 pixels) so QGIS draws it quickly at every scale. It is written to a temporary
name beside the output and moved into place only when complete.
"""
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ClassXRFError
from .geo import LUNAR_RASTER_CRS, atomic_output
from .progress import as_progress

GEOTIFF_SUFFIXES = (".tif", ".tiff")
#: Mean radius of the Moon (m): IAU 2015 (Archinal et al. 2018) and the ESRI/IAU 2000 spheres.
MOON_RADIUS_M = 1737400.0


@dataclass
class BasemapResult:
    path: Path          #: the GeoTIFF written (or kept)
    kind: str           #: "image" (georeferenced here) or "geotiff" (validated)
    width: int
    height: int
    bands: int
    bounds: tuple       #: (west, south, east, north) degrees
    crs: str            #: CRS string of the output
    overviews: list     #: overview factors of band 1
    copied: bool        #: False when a valid GeoTIFF was kept in place


def overview_factors(width, height, smallest=256):
    """Overview decimation factors 2, 4, 8, ... until the longer side is at most ``smallest`` px."""
    factors, f = [], 2
    while max(width, height) / f >= smallest / 2:
        factors.append(f)
        if max(width, height) / f <= smallest:
            break
        f *= 2
    return factors


def equirect_transform(width, height, west=-180.0):
    """Affine transform of a whole-Moon plate carree image of ``width`` x ``height`` pixels."""
    from rasterio.transform import from_origin

    return from_origin(west, 90.0, 360.0 / width, 180.0 / height)


def _is_lunar(crs):
    """True when ``crs`` (rasterio CRS) is a geographic CRS on a Moon-sized body."""
    if crs is None:
        return False
    text = crs.to_string()
    if "30100" in text and "IAU" in text.upper():
        return True
    try:
        from pyproj import CRS
        p = CRS.from_wkt(crs.to_wkt())
        a = p.ellipsoid.semi_major_metre if p.ellipsoid is not None else None
    except Exception:  # unparseable CRS: not lunar as far as we can tell
        return False
    return a is not None and abs(a - MOON_RADIUS_M) < 0.01 * MOON_RADIUS_M


def _crs_radius(crs):
    try:
        from pyproj import CRS
        p = CRS.from_wkt(crs.to_wkt())
        return p.ellipsoid.semi_major_metre if p.ellipsoid is not None else None
    except Exception:
        return None


def _has_georeferencing(src):
    t = src.transform
    return not (t.is_identity or (t.a == 1.0 and t.e == 1.0 and t.c == 0.0 and t.f == 0.0)) or bool(src.gcps[0])


def _open(path):
    import rasterio

    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise ClassXRFError(path, f"not a readable image or raster ({exc})") from exc


def make_basemap(source, output, west=-180.0, progress=None):
    """Turn ``source`` (equirectangular image or lunar GeoTIFF) into the basemap GeoTIFF ``output``.

    ``west``: longitude of the left edge of an equirectangular image, -180 (default) or 0.
    ``output`` may equal ``source`` for a GeoTIFF, which is then validated and kept (overviews
    added if missing). Returns a :class:`BasemapResult`. Raises :class:`ClassXRFError` naming the
    file for an unreadable file, an image that is not 2:1, or a raster in a non-lunar CRS.
    """
    p = as_progress(progress)
    source, output = Path(source), Path(output)
    if not source.exists():
        raise ClassXRFError(source, "basemap source not found")
    if output.suffix.lower() not in GEOTIFF_SUFFIXES:
        raise ClassXRFError(output, "the basemap output must be a GeoTIFF (.tif or .tiff)")
    if west not in (-180.0, 0.0, -180, 0):
        raise ClassXRFError(None, f"west edge must be -180 or 0 degrees, got {west}", key="west")
    p.set(0.0, f"reading {source.name}")
    with _open(source) as src:
        georef = _has_georeferencing(src)
        info = dict(width=src.width, height=src.height, count=src.count, crs=src.crs,
                    bounds=tuple(src.bounds), driver=src.driver, dtypes=src.dtypes,
                    overviews=src.overviews(1) if src.count else [])
    if info["count"] == 0:
        raise ClassXRFError(source, "raster has no band")
    if georef:
        return _from_geotiff(source, output, info, p)
    return _from_image(source, output, float(west), info, p)


def _from_geotiff(source, output, info, p):
    crs = info["crs"]
    west, south, east, north = info["bounds"]
    if crs is not None and not crs.is_geographic and not _is_lunar(crs):
        raise ClassXRFError(source, f"the raster's CRS ({crs.to_string()}) is projected and not lunar; "
                                    f"reproject it to {LUNAR_RASTER_CRS} first", key="CRS")
    if crs is not None and not _is_lunar(crs):
        r = _crs_radius(crs)
        what = f"a body of radius {r / 1000:.1f} km" if r else "an unknown body"
        raise ClassXRFError(source, f"the raster's CRS ({crs.to_string()}) is on {what}, not the Moon "
                                    f"({MOON_RADIUS_M / 1000:.1f} km); a lunar basemap needs "
                                    f"{LUNAR_RASTER_CRS}", key="CRS")
    if crs is not None and not crs.is_geographic:
        raise ClassXRFError(source, f"the raster's CRS ({crs.to_string()}) is a projected lunar CRS; "
                                    f"the plugin's layers use the geographic {LUNAR_RASTER_CRS}", key="CRS")
    eps = 1e-6
    if not (-180 - eps <= west < east <= 360 + eps and -90 - eps <= south < north <= 90 + eps):
        raise ClassXRFError(source, f"extent {west:.4g}, {south:.4g}, {east:.4g}, {north:.4g} is not in "
                                    "degrees of longitude/latitude", key="extent")
    same = output.exists() and os.path.samefile(source, output)
    # a geographic lunar CRS that is not the plugin's (checked above) is relabelled: same degrees
    needs_crs = crs is None or crs.to_string() != LUNAR_RASTER_CRS
    needs_ovr = not info["overviews"]
    factors = overview_factors(info["width"], info["height"])
    if same and not needs_crs and not (needs_ovr and factors):
        p.set(1.0, "basemap kept as is")
        return _result(output, "geotiff", copied=False)
    p.set(0.2, "copying the GeoTIFF")
    with atomic_output(output) as tmp:
        shutil.copyfile(source, tmp)
        p.check()
        _finish(tmp, factors if needs_ovr else [], LUNAR_RASTER_CRS if needs_crs else None, p)
    p.set(1.0, "basemap ready")
    return _result(output, "geotiff", copied=not same)


def _from_image(source, output, west, info, p):
    import rasterio
    from rasterio.enums import ColorInterp

    w, h = info["width"], info["height"]
    if abs(w - 2 * h) > 1:
        raise ClassXRFError(source, f"an equirectangular image of the whole Moon is twice as wide as it is tall "
                                    f"(360 x 180 degrees); this one is {w} x {h} pixels", key="size")
    if info["count"] not in (1, 3, 4):
        raise ClassXRFError(source, f"{info['count']} bands: expected grey (1), RGB (3) or RGBA (4)", key="bands")
    with _open(source) as src:
        data = src.read()
    p.check()
    p.set(0.3, "georeferencing")
    if west == 0.0:
        data = np.roll(data, -(w // 2), axis=2)  # 0..360 -> -180..180 (half a turn)
    dtype = data.dtype
    if dtype not in (np.uint8, np.uint16, np.int16, np.float32):
        data = data.astype(np.float32)
    profile = dict(driver="GTiff", width=w, height=h, count=data.shape[0], dtype=data.dtype.name,
                   crs=LUNAR_RASTER_CRS, transform=equirect_transform(w, h, -180.0), compress="deflate",
                   tiled=True, blockxsize=256, blockysize=256, interleave="pixel")
    if w < 256 or h < 256:
        profile.update(tiled=False)
        profile.pop("blockxsize")
        profile.pop("blockysize")
    if data.shape[0] >= 3 and data.dtype == np.uint8:
        profile["photometric"] = "RGB"
    with atomic_output(output) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            if data.shape[0] == 1:
                dst.colorinterp = [ColorInterp.gray]
            elif data.shape[0] == 3:
                dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
            elif data.shape[0] == 4:
                dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
            dst.update_tags(SOURCE=source.name, GEOREFERENCE="equirectangular, whole Moon, -180..180, -90..90")
        p.check()
        p.set(0.6, "building overviews")
        _finish(tmp, overview_factors(w, h), None, p)
    p.set(1.0, "basemap ready")
    return _result(output, "image", copied=True)


def _finish(path, factors, assign_crs, p):
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path, "r+") as dst:
        if assign_crs is not None:
            dst.crs = assign_crs
        if factors:
            dst.build_overviews(factors, Resampling.average)
            dst.update_tags(ns="rio_overview", resampling="average")
    p.check()


def _result(path, kind, copied):
    with _open(path) as src:
        return BasemapResult(path=Path(path), kind=kind, width=src.width, height=src.height, bands=src.count,
                             bounds=tuple(src.bounds), crs=src.crs.to_string() if src.crs else "",
                             overviews=list(src.overviews(1)), copied=copied)


def lonlat_to_pixel(lon, lat, width, height, west=-180.0):
    """(col, row) of the pixel holding (lon, lat) in a whole-Moon plate carree image (floor convention)."""
    col = np.floor((np.asarray(lon, float) - west) % 360.0 / (360.0 / width)).astype(int)
    row = np.floor((90.0 - np.asarray(lat, float)) / (180.0 / height)).astype(int)
    return np.clip(col, 0, width - 1), np.clip(row, 0, height - 1)


__all__ = ["BasemapResult", "make_basemap", "overview_factors", "equirect_transform", "lonlat_to_pixel",
           "MOON_RADIUS_M"]
