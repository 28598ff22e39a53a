"""Basemap: equirectangular images georeferenced on the Moon, GeoTIFFs validated, overviews."""
import numpy as np
import pytest
import rasterio
from PIL import Image
from pyproj import CRS

from class_qgis_plugin import geo
from class_qgis_plugin.basemap import make_basemap, overview_factors
from class_qgis_plugin.errors import ClassXRFError

from conftest import shared_data


def _pattern(w, h):
    """RGB image whose red = column % 256, green = row % 256, blue = column // 256 (unique per pixel)."""
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))
    return np.stack([cols % 256, rows % 256, cols // 256], axis=-1).astype(np.uint8)


def _sample(path, lon, lat):
    with rasterio.open(path) as src:
        r, c = src.index(lon, lat)
        return src.read(window=((r, r + 1), (c, c + 1)))[:, 0, 0]


def test_png_is_georeferenced_plate_carree_in_the_lunar_crs(tmp_path):
    w, h = 720, 360  # 0.5 degree pixels: pixel (r, c) spans lon -180 + 0.5 c, lat 90 - 0.5 r
    img = _pattern(w, h)
    Image.fromarray(img).save(tmp_path / "moon.png")
    res = make_basemap(tmp_path / "moon.png", tmp_path / "moon.tif")
    assert res.kind == "image" and res.copied
    assert res.bounds == pytest.approx((-180.0, -90.0, 180.0, 90.0))
    with rasterio.open(tmp_path / "moon.tif") as src:
        assert src.crs.to_string() == "ESRI:104903"
        assert CRS.from_wkt(src.crs.to_wkt()).ellipsoid.semi_major_metre == pytest.approx(1737400.0)
        assert src.count == 3 and src.dtypes[0] == "uint8"
        assert np.array_equal(src.read(), np.moveaxis(img, -1, 0))
        assert src.overviews(1) == [2, 4]  # down to 180 px on the longer side
    # hand-computed pixels: lon 10.25, lat -30.25 -> col (10.25 + 180) / 0.5 = 380, row (90 + 30.25) / 0.5 = 240
    assert list(_sample(tmp_path / "moon.tif", 10.25, -30.25)) == [380 % 256, 240 % 256, 380 // 256]
    assert list(_sample(tmp_path / "moon.tif", -179.9, 89.9)) == [0, 0, 0]
    assert list(_sample(tmp_path / "moon.tif", 179.9, -89.9)) == [719 % 256, 359 % 256, 719 // 256]


def test_overview_is_block_average(tmp_path):
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, size=(512, 1024), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    res = make_basemap(tmp_path / "g.png", tmp_path / "g.tif")
    assert res.bands == 1 and res.overviews == [2, 4]
    with rasterio.open(tmp_path / "g.tif", OVERVIEW_LEVEL=0) as ov:
        lvl = ov.read(1).astype(float)
    expected = grey.reshape(256, 2, 512, 2).astype(float).mean(axis=(1, 3))
    assert lvl.shape == (256, 512)
    assert np.max(np.abs(lvl - expected)) <= 1.0  # GDAL rounds the average to uint8


def test_overview_factors_stop_near_256_pixels():
    assert overview_factors(1024, 512) == [2, 4]
    assert overview_factors(8192, 4096) == [2, 4, 8, 16, 32]
    assert overview_factors(200, 100) == []


def test_image_spanning_0_to_360_is_rolled_to_minus_180(tmp_path):
    w, h = 360, 180
    img = _pattern(w, h)
    Image.fromarray(img).save(tmp_path / "east.png")
    make_basemap(tmp_path / "east.png", tmp_path / "east.tif", west=0.0)
    # In the source, lon 200.5 (= -159.5) is column 200; lon 20.5 is column 20.
    assert list(_sample(tmp_path / "east.tif", -159.5, 0.5)) == list(img[89, 200])
    assert list(_sample(tmp_path / "east.tif", 20.5, 0.5)) == list(img[89, 20])
    with rasterio.open(tmp_path / "east.tif") as src:
        assert tuple(src.bounds) == pytest.approx((-180.0, -90.0, 180.0, 90.0))


def test_real_lroc_jpg(tmp_path):
    jpg = shared_data("basemap", "lroc_color_poles_1k.jpg")
    res = make_basemap(jpg, tmp_path / "lroc.tif")
    assert (res.width, res.height, res.bands) == (1024, 512, 3)
    assert res.crs == "ESRI:104903" and res.overviews == [2, 4]
    ref = np.asarray(Image.open(jpg).convert("RGB"))  # an independent JPEG decoder (Pillow)
    with rasterio.open(tmp_path / "lroc.tif") as src:
        data = np.moveaxis(src.read(), 0, -1).astype(int)
    assert np.mean(np.abs(data - ref)) < 1.0
    # Mare Imbrium (about 33N, 16W) is darker than the southern highlands near Tycho (43S, 11W)
    mare = _sample(tmp_path / "lroc.tif", -16.0, 33.0).astype(float).mean()
    highland = _sample(tmp_path / "lroc.tif", -11.0, -43.0).astype(float).mean()
    assert mare < highland


def test_lunar_geotiff_kept_or_copied_with_overviews(tmp_path):
    data = np.arange(2 * 342 * 682, dtype=np.float32).reshape(2, 342, 682)
    src = geo.write_geotiff(tmp_path / "albedo.tif", data, -45.0, 22.5, 45.0 / 682, 22.5 / 342)
    res = make_basemap(src, tmp_path / "base.tif")
    assert res.kind == "geotiff" and res.copied and res.overviews == [2, 4]
    back, meta = geo.read_geotiff(tmp_path / "base.tif")
    assert np.array_equal(back, data) and meta["west"] == pytest.approx(-45.0)
    # the same file again: kept, not rewritten
    mtime = (tmp_path / "base.tif").stat().st_mtime_ns
    res2 = make_basemap(tmp_path / "base.tif", tmp_path / "base.tif")
    assert not res2.copied and (tmp_path / "base.tif").stat().st_mtime_ns == mtime


def test_geotiff_without_crs_gets_the_lunar_one(tmp_path):
    from rasterio.transform import from_origin

    with rasterio.open(tmp_path / "nocrs.tif", "w", driver="GTiff", width=40, height=20, count=1, dtype="uint8",
                       transform=from_origin(-180, 90, 9, 9)) as dst:
        dst.write(np.full((1, 20, 40), 7, np.uint8))
    res = make_basemap(tmp_path / "nocrs.tif", tmp_path / "out.tif")
    assert res.crs == "ESRI:104903"


@pytest.mark.parametrize("crs", ["IAU_2015:30100", "+proj=longlat +R=1737400 +no_defs"])
def test_geotiff_in_another_lunar_crs_is_labelled_with_the_plugins(tmp_path, crs):
    """A lunar GeoTIFF in IAU_2015:30100 or a bare proj string (a custom CRS QGIS cannot transform to
    ESRI:104903) comes out in ESRI:104903 with the same pixels and degrees."""
    data = np.arange(20 * 40, dtype=np.float32).reshape(1, 20, 40)
    src = geo.write_geotiff(tmp_path / "other.tif", data, -45.0, 22.5, 45.0 / 40, 22.5 / 20, crs=crs)
    res = make_basemap(src, tmp_path / "out.tif")
    assert res.crs == "ESRI:104903" and res.copied
    back, meta = geo.read_geotiff(tmp_path / "out.tif")
    assert np.array_equal(back, data) and (meta["west"], meta["north"]) == pytest.approx((-45.0, 22.5))


def test_bad_inputs_name_the_file_and_leave_output_untouched(tmp_path):
    out = tmp_path / "out.tif"
    out.write_bytes(b"previous")
    Image.fromarray(np.zeros((100, 150, 3), np.uint8)).save(tmp_path / "square.png")
    with pytest.raises(ClassXRFError, match=r"square\.png: size: .*150 x 100"):
        make_basemap(tmp_path / "square.png", out)
    earth = geo.write_geotiff(tmp_path / "earth.tif", np.ones((1, 10, 20)), -180, 90, 18, 18, crs="EPSG:4326")
    with pytest.raises(ClassXRFError, match=r"earth\.tif: CRS: .*6378\.1 km, not the Moon"):
        make_basemap(earth, out)
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(ClassXRFError, match=r"junk\.jpg: not a readable"):
        make_basemap(tmp_path / "junk.jpg", out)
    with pytest.raises(ClassXRFError, match="not found"):
        make_basemap(tmp_path / "missing.png", out)
    with pytest.raises(ClassXRFError, match="GeoTIFF"):
        make_basemap(tmp_path / "square.png", tmp_path / "out.png")
    assert out.read_bytes() == b"previous"
