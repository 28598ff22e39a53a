"""The mosaic (class_qgis_plugin/mosaic.py): the halo takes the neighbours' GIB pixels (across 180
deg too), the cross-fade weights of two neighbours sum to 1, two constant regions blend into the
analytic linear ramp, the seam ratio of a plane is 1 and of an offset large, and the COGs are
cloud-optimised GeoTIFFs with overviews in the lunar CRS."""
import numpy as np
import pytest

from class_qgis_plugin import geo, mosaic
from class_qgis_plugin.choices import ELEMENTS

R, C = geo.REGION_ROWS, geo.REGION_COLS


def _result(region, value, halo):
    r0, r1, c0, width = mosaic.extended_window(*region, halo)
    pred = np.broadcast_to(np.asarray(value, np.float32), (8, r1 - r0, width)).copy()
    return dict(prediction=pred, r0=r0, c0=c0, halo=halo, region=region)


def test_cross_fade_weights_of_two_neighbours_sum_to_one():
    h = 8
    a, b = _result((3, 4), 1.0, h), _result((3, 5), 3.0, h)
    wa, wb = mosaic.blend_weights(a), mosaic.blend_weights(b)
    row = 3 * R + 100 - a["r0"]                       # a row inside both regions' own rows
    border = 5 * C                                    # first column of (3, 5)
    cols = np.arange(border - h, border + h)
    sa = wa[row, cols - a["c0"]]
    sb = wb[row - (b["r0"] - a["r0"]), cols - b["c0"]]
    np.testing.assert_allclose(sa + sb, 1.0, atol=1e-6)
    # 1/2 + t / (2h), t the signed distance inside a's east edge (pixel centres): 1/2 +- 1/(4h) on the border pair
    np.testing.assert_allclose(sa[[h - 1, h]], [0.5 + 0.25 / h, 0.5 - 0.25 / h], atol=1e-6)
    assert wa[row, C // 2 + h] == 1.0


def test_two_constant_regions_blend_into_the_linear_ramp():
    h = 8
    m = mosaic.Mosaic()
    m.add(_result((3, 4), 1.0, h))
    m.add(_result((3, 5), 3.0, h))
    band = m.band(2)
    r0, r1, cols = m.window()
    row = 3 * R + 100 - r0
    j = np.arange(5 * C - 2 * h, 5 * C + 2 * h)
    got = band[row, np.searchsorted(cols, j)]
    # the weight of (3, 5) at global column c: 1/2 + (c - 5C + 0.5) / (2h), in [0, 1]
    wb = np.clip(0.5 + (j - 5 * C + 0.5) / (2 * h), 0, 1)
    np.testing.assert_allclose(got, 1.0 + 2.0 * wb, atol=1e-5)
    # with no halo: tiling, a step of 2 at the border
    t = mosaic.Mosaic()
    t.add(_result((3, 4), 1.0, 0))
    t.add(_result((3, 5), 3.0, 0))
    tb = t.band(2)
    tr0, _, tcols = t.window()
    k = np.searchsorted(tcols, 5 * C)
    assert tb[3 * R + 100 - tr0, k - 1] == 1.0 and tb[3 * R + 100 - tr0, k] == 3.0


def test_seam_ratio_of_a_plane_is_one_and_of_an_offset_is_large():
    rows = np.arange(3 * R, 4 * R)
    cols = np.arange(4 * C, 6 * C)
    plane = (0.01 * rows[:, None] + 0.02 * cols[None, :]).astype(np.float64)
    stack = np.broadcast_to(plane, (8,) + plane.shape).copy()
    window = (3 * R, 4 * R, cols)
    regions = [(3, 4), (3, 5)]
    ratios = mosaic.seam_ratios(stack, window, regions)
    # inside each region R (C - 1) steps of 0.02 along the rows and (R - 1) C of 0.01 down the columns;
    # across the border 0.02
    inner = (0.02 * R * (C - 1) + 0.01 * (R - 1) * C) / (R * (C - 1) + (R - 1) * C)
    assert ratios["Mg"] == pytest.approx(0.02 / inner, rel=1e-6)
    stack[:, :, C:] += 5.0
    assert mosaic.seam_ratios(stack, window, regions)["Mg"] == pytest.approx(5.02 / inner, rel=1e-6)


def test_cogs_are_cloud_optimised_with_overviews_and_cross_180_degrees(tmp_path):
    import rasterio
    m = mosaic.Mosaic()
    east = _result((3, 7), 2.0, 4)                     # 135..180 E
    west = _result((3, 0), 4.0, 4)                     # -180..-135
    east["prediction"][5] = np.nan                     # Si not predicted: nodata
    m.add(east)
    m.add(west)
    paths = mosaic.write_cogs(tmp_path / "mosaic", m)
    assert [p.split("mosaic_")[-1] for p in map(str, paths)] == [f"{el}.tif" for el in ELEMENTS]
    with rasterio.open(paths[2]) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.overviews(1) and src.crs.to_string() == "ESRI:104903"
        # one raster from 135 E eastwards across 180 deg (columns contiguous), halo columns included
        assert src.bounds.left == pytest.approx(135.0 - 4 * geo.PIXEL_DLON)
        assert src.width == 2 * C + 8
        data = src.read(1)
        r = 3 * R + 10 - (3 * R - 4)
        assert data[r, 10] == 2.0 and data[r, 2 * C] == 4.0      # 135 E + 10 px; beyond 180: the west region
    with rasterio.open(paths[5]) as src:
        d = src.read(1)
        assert src.nodata == geo.NODATA and d[r, 10] == geo.NODATA and d[r, 2 * C] == 4.0


def _write_gib(folder, i, j, value):
    from class_qgis_plugin.gib import region_path
    west, _, _, north = geo.region_bounds(i, j)
    data = np.full((17, R, C), np.nan, np.float32)
    data[0:8] = value + np.arange(C, dtype=np.float32)[None, None, :] / C
    data[8:16] = 0.1
    data[16] = 1.0
    geo.write_geotiff(region_path(folder, i, j), data, west, north, geo.PIXEL_DLON, geo.PIXEL_DLAT)


def test_the_halo_takes_the_neighbours_pixels_across_180_degrees(tmp_path):
    for (i, j, v) in ((3, 7, 10.0), (3, 0, 20.0), (2, 7, 30.0)):
        _write_gib(tmp_path, i, j, v)
    h = mosaic.halo_inputs(tmp_path, (3, 7), halo=5)
    t = h["target"]
    assert t.shape == (R + 10, C + 10, 8) and h["r0"] == 3 * R - 5 and h["c0"] == 7 * C - 5
    def ramp(v, n, rows):
        return np.broadcast_to(v + np.arange(n, dtype=np.float32) / C, (rows, n))
    np.testing.assert_allclose(t[5:-5, 5:-5, 0], ramp(10.0, C, R), rtol=1e-6)
    np.testing.assert_allclose(t[5:-5, -5:, 0], ramp(20.0, 5, R), rtol=1e-6)       # (3, 0), east of 180 deg
    np.testing.assert_allclose(t[:5, 5:-5, 0], ramp(30.0, C, 5), rtol=1e-6)        # (2, 7), north
    assert np.isnan(t[-5:, 5:-5]).all() and np.isnan(t[5:-5, :5]).all()      # (4, 7), (3, 6): no raster
    assert h["lon"][-1] > 180.0 and np.all(np.diff(h["lon"]) > 0)
    assert h["footprints"] is None
    with pytest.raises(Exception, match="no GIB raster"):
        mosaic.halo_inputs(tmp_path, (5, 5))
