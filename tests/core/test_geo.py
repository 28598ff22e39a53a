"""Lunar geometry, regions and CRS round trips of the shared writers."""
import numpy as np
import pytest
from shapely.geometry import Polygon

from class_qgis_plugin import geo
from class_qgis_plugin.errors import ClassXRFError


def test_region_partition_matches_paper_convention():
    # i = 0 at 90N, j = 0 at 180W; 22.5 x 45 degrees
    assert geo.region_bounds(0, 0) == (-180.0, 67.5, -135.0, 90.0)
    assert geo.region_bounds(7, 7) == (135.0, -90.0, 180.0, -67.5)
    assert geo.region_of(-17.0, 3.9) == (4, 4)
    lat, lon = geo.region_grid(4, 4)
    assert lat.shape == (342,) and lon.shape == (682,)
    # pixel of about 2 km: 22.5 deg of a 1737.4 km sphere over 342 rows
    assert abs(np.radians(22.5) * 1737.4 / 342 - 2.0) < 0.01
    r, c = geo.region_pixel(4, 4, lat[10], lon[20])
    assert (r, c) == (10, 20)
    with pytest.raises(ClassXRFError):
        geo.region_bounds(8, 0)


def test_haversine_quarter_circumference():
    d = geo.haversine_km(0.0, 0.0, 0.0, 90.0)
    assert d == pytest.approx(np.pi / 2 * 1737.4, rel=1e-12)


def test_footprint_across_antimeridian_is_split_and_keeps_area():
    lats = [1.0, -1.0, -1.0, 1.0]
    lons = [179.5, 179.5, -179.5, -179.5]
    g = geo.footprint_polygon(lats, lons)
    assert g.geom_type == "MultiPolygon"
    assert g.area == pytest.approx(2.0 * 1.0)  # 1 deg of longitude x 2 deg of latitude
    minx, _, maxx, _ = g.bounds
    assert minx >= -180 and maxx <= 180
    with pytest.raises(ClassXRFError):
        geo.footprint_polygon([1, np.nan, 0, 1], [0, 1, 1, 0])


def test_union_footprints_over_meridian():
    a = geo.footprint_polygon([1, -1, -1, 1], [178.0, 178.0, 179.8, 179.8])
    b = geo.footprint_polygon([1, -1, -1, 1], [179.5, 179.5, -179.0, -179.0])
    u = geo.union_footprints([a, b])
    assert u.area == pytest.approx(2 * (3.0))  # from 178 to 181 (=-179)
    assert u.contains(a.buffer(-1e-9))


def test_geotiff_crs_round_trip(tmp_path):
    import rasterio
    data = np.arange(2 * 20 * 30, dtype=np.float32).reshape(2, 20, 30)
    data[0, 0, 0] = np.nan
    p = geo.write_geotiff(tmp_path / "a.tif", data, 10.0, 5.0, 0.1, 0.1, band_names=["Mg", "Al"])
    with rasterio.open(p) as src:
        assert src.crs.to_string() == "ESRI:104903"
        assert src.descriptions == ("Mg", "Al")
    back, meta = geo.read_geotiff(p)
    assert np.isnan(back[0, 0, 0])
    assert np.array_equal(back[1], data[1])
    assert meta["west"] == pytest.approx(10.0) and meta["north"] == pytest.approx(5.0)


@pytest.mark.parametrize("ext", [".gpkg", ".shp", ".geojson"])
def test_vector_round_trip_keeps_lunar_crs(tmp_path, ext):
    from pyproj import CRS
    polys = [Polygon([(0, 0), (1, 0), (1, 1), (0, 1)]), geo.footprint_polygon([1, -1, -1, 1], [179.5, 179.5, -179.5, -179.5])]
    path = tmp_path / f"obs{ext}"
    geo.write_vector(path, polys, {"obs_id": [1, 2], "pha_path": ["a.pha", "b.pha"], "Mg": [4.5, np.nan]})
    geoms, attrs, crs = geo.read_vector(path)
    assert len(geoms) == 2 and geoms[1].area == pytest.approx(2.0)
    assert list(attrs["pha_path"]) == ["a.pha", "b.pha"]
    c = CRS.from_user_input(crs)
    assert c.is_geographic
    assert c.ellipsoid.semi_major_metre == pytest.approx(1737400.0)
    # one CRS for rasters and vectors, read back with its id (QGIS's side: tests/qgis/test_crs.py)
    assert geo.LUNAR_RASTER_CRS == geo.LUNAR_VECTOR_CRS == "ESRI:104903"
    assert c.to_authority() == ("ESRI", "104903")


def test_vector_refuses_long_shapefile_names_and_keeps_old_file(tmp_path):
    path = tmp_path / "obs.shp"
    geo.write_vector(path, [Polygon([(0, 0), (1, 0), (1, 1)])], {"a": [1]})
    before = path.read_bytes()
    with pytest.raises(ClassXRFError, match="longername12"):
        geo.write_vector(path, [Polygon([(0, 0), (1, 0), (1, 1)])], {"longername12": [1]})
    assert path.read_bytes() == before


def test_footprint_around_the_pole_is_closed_along_the_pole():
    # a square of half-side 5 km centred on the north pole: corners at 4 longitudes
    d = np.degrees(5.0 / 1737.4) * np.sqrt(2)
    lats = np.full(4, 90.0 - d)
    lons = np.array([45.0, 135.0, -135.0, -45.0])
    g = geo.footprint_polygon(lats, lons)
    minx, miny, maxx, maxy = g.bounds
    assert maxy == pytest.approx(90.0)
    assert miny == pytest.approx(90.0 - d)
    assert minx == pytest.approx(-180.0) and maxx == pytest.approx(180.0)
    # in lon/lat, the cap covers every longitude from the ring's lowest latitude to the pole
    assert g.contains(__import__("shapely").Point(0.0, 90.0 - d / 2 + 0.3 * d))


def test_superresolve_refuses_an_extent_off_the_moon_and_a_region_that_does_not_exist(tmp_path):
    """An extent reaching past a pole (or west > east) is an error naming EXTENT, not a silent clamp
    to region (0, 0); so is a region index outside 0..7; an extent on the Moon picks its region by
    its centre (here 10 E, 30 N: region (2, 4))."""
    from class_qgis_plugin import tasks
    from class_qgis_plugin.errors import ClassXRFError
    kw = dict(gib=str(tmp_path), albedo="albedo.tif", output=str(tmp_path / "o.tif"))
    with pytest.raises(ClassXRFError, match="EXTENT.*not on the Moon"):
        tasks.run("superresolve", kw, extent=[0, 80, 10, 100])
    with pytest.raises(ClassXRFError, match="EXTENT"):
        tasks.run("superresolve", kw, extent=[20, 0, 10, 5])
    with pytest.raises(ClassXRFError, match=r"REGION_I.*at most 7, got 9"):
        tasks.run("superresolve", kw, region_i=9, region_j=2)
    with pytest.raises(ClassXRFError, match=r"no GIB raster for region \(2, 4\)"):
        tasks.run("superresolve", kw, region_i=0, region_j=0, extent=[5, 25, 15, 35])


def test_a_killed_write_leaves_no_temporary_after_the_next_write(tmp_path):
    """kill -9 in the middle of an atomic write leaves its temporary file; the next write of the same
    path removes it (its process is gone) and leaves a running process's temporary alone."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path
    from class_qgis_plugin.geo import atomic_output
    root = str(Path(__file__).resolve().parents[2])
    target = tmp_path / "map.tif"
    code = (f"import os, signal, sys\nsys.path.insert(0, {root!r})\nfrom class_qgis_plugin.geo import atomic_output\n"
            f"with atomic_output({str(target)!r}) as tmp:\n    open(tmp, 'w').write('half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".map.") and not target.exists()
    mine = tmp_path / f".map.{os.getpid()}.abc.tif"
    mine.write_text("a write under way")
    with atomic_output(target) as tmp:
        tmp.write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, "map.tif"])
