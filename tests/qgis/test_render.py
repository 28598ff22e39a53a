"""Styled outputs rendered by QGIS: inverted footprints over the basemap, the PNG export, the heatmap,
raster transparency and the shipped .qml styles.

The simulated set (simulate -> co-add -> solar fit -> invert, core functions) gives the footprints; the
expected class of each footprint is computed here from the documented class breaks (written out below,
not read from the code) and its colour is looked up in the rendered image.
"""
from pathlib import Path

import numpy as np
import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsGraduatedSymbolRenderer,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage

ROOT = Path(__file__).resolve().parents[2]
# The documented lunar classes (README / styles docstring): inner breaks in wt%, 5 classes, RdYlBu reversed.
BREAKS = {"O": (41, 42.5, 44, 45.5), "Na": (0.2, 0.3, 0.4, 0.6), "Mg": (3, 4.5, 6, 8), "Al": (6, 9, 12, 15),
          "Si": (19, 20.5, 22, 23.5), "Ca": (7, 9, 11, 13), "Ti": (0.5, 1.5, 3, 5), "Fe": (4, 8, 12, 16)}
COLOURS = np.array([(0x2C, 0x7B, 0xB6), (0xAB, 0xD9, 0xE9), (0xFF, 0xFF, 0xBF), (0xFD, 0xAE, 0x61),
                    (0xD7, 0x19, 0x1C)])


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from class_qgis_plugin.cli import run_demo

    out = tmp_path_factory.mktemp("demo")
    r = run_demo(out, tracks=3, progress=False)
    return dict(layer=Path(r["layer"]), albedo=Path(r["simulation"]["albedo"]), out=out)


@pytest.fixture(scope="module")
def basemap(simulated, run_alg):
    res = run_alg("classxrf:basemap", {"INPUT": str(simulated["albedo"]),
                                       "OUTPUT": str(simulated["out"] / "basemap.tif")})
    return res


def _to_array(img):
    img = img.convertToFormat(QImage.Format_RGBA8888)
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    a = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine())
    return a[:, : img.width() * 4].reshape(img.height(), img.width(), 4).copy()


def _render(layers, extent, size=(900, 700), background=QColor(0, 0, 0)):
    ms = QgsMapSettings()
    ms.setLayers(layers)
    ms.setDestinationCrs(QgsCoordinateReferenceSystem("ESRI:104903"))
    ms.setOutputSize(QSize(*size))
    ms.setExtent(extent)
    ms.setBackgroundColor(background)
    job = QgsMapRendererParallelJob(ms)
    job.start()
    job.waitForFinished()
    return _to_array(job.renderedImage()), ms.visibleExtent()


def _pixel(extent, size, lon, lat):
    col = int((lon - extent.xMinimum()) / extent.width() * size[0])
    row = int((extent.yMaximum() - lat) / extent.height() * size[1])
    return row, col


def test_basemap_algorithm_outputs_lunar_geotiff(basemap):
    lyr = QgsRasterLayer(basemap["OUTPUT"], "base")
    assert lyr.isValid()
    assert lyr.crs().authid() == "ESRI:104903"
    assert (basemap["WIDTH"], basemap["HEIGHT"]) == (682, 342)
    assert basemap["KIND"] == "copied GeoTIFF"
    assert lyr.dataProvider().hasPyramids() if hasattr(lyr.dataProvider(), "hasPyramids") else True


def test_footprints_render_in_their_lunar_class_colours(plugin, simulated, basemap):
    import shapely

    from class_qgis_plugin import geo

    element = "Al"
    styles = __import__("class_qgis.processing_provider.styles", fromlist=["x"])
    vec = QgsVectorLayer(str(simulated["layer"]), "abund", "ogr")
    base = QgsRasterLayer(basemap["OUTPUT"], "base")
    assert vec.isValid() and base.isValid()
    styles.apply_element_style(vec, element)
    assert isinstance(vec.renderer(), QgsGraduatedSymbolRenderer)
    assert [r.label() for r in vec.renderer().ranges()][-1] == ">= 15 wt%"

    size = (900, 700)
    ext = vec.extent()
    ext.scale(1.1)
    img, vis = _render([vec, base], ext, size)
    geoms, attrs, _ = geo.read_vector(simulated["layer"])
    values = np.asarray(attrs[element], float)
    expected_class = np.digitize(values, BREAKS[element])
    px_deg = vis.width() / size[0]
    checked, classes_seen = 0, set()
    for n, g in enumerate(geoms):
        others = shapely.union_all([h for m, h in enumerate(geoms) if m != n])
        core = g.buffer(-2.5 * px_deg).difference(others.buffer(2.5 * px_deg))
        if core.is_empty or not np.isfinite(values[n]) or np.min(np.abs(values[n] - np.array(BREAKS[element]))) < 1e-6:
            continue
        p = core.representative_point()
        r, c = _pixel(vis, size, p.x, p.y)
        assert tuple(img[r, c, :3]) == tuple(COLOURS[expected_class[n]]), (n, values[n], img[r, c])
        checked += 1
        classes_seen.add(int(expected_class[n]))
    assert checked >= 0.8 * len(geoms)
    assert len(classes_seen) >= 2  # the simulated region holds both mare (Al ~ 8) and highland (Al ~ 15) soils
    # outside every footprint the basemap (grey albedo) shows, in no class colour
    union = shapely.union_all(geoms).buffer(3 * px_deg)
    rng = np.random.default_rng(0)
    greys = 0
    for _ in range(200):
        x = vis.xMinimum() + rng.random() * vis.width()
        y = vis.yMinimum() + rng.random() * vis.height()
        if union.contains(shapely.Point(x, y)):
            continue
        r, c = _pixel(vis, size, x, y)
        rgb = img[r, c, :3]
        assert not any(np.array_equal(rgb, col) for col in COLOURS)
        greys += int(rgb[0] == rgb[1] == rgb[2] and rgb[0] > 0)
    assert greys > 20


def test_export_map_png_has_legend_and_classes(run_alg, simulated, basemap, tmp_path):
    out = tmp_path / "map_al.png"
    res = run_alg("classxrf:exportmap", {"INPUT": str(simulated["layer"]), "ELEMENT": "Al",
                                         "BASEMAP": basemap["OUTPUT"], "WIDTH_MM": 200, "DPI": 100,
                                         "OUTPUT": str(out)})
    assert Path(res["OUTPUT"]) == out and out.exists()
    img = _to_array(QImage(str(out)))
    assert img.shape[1] == round(200 / 25.4 * 100)
    map_right = int(img.shape[1] * (5 + 0.72 * 200) / 200)  # the map frame ends at 5 mm + 72 % of the page
    legend = img[:, map_right + 2:, :3]
    mapped = img[:, :map_right, :3]
    for k, col in enumerate(COLOURS):
        # every class has its patch in the legend, right of the map
        assert np.any(np.all(legend == col, axis=-1)), f"class {k} missing from the legend"
    present = {int(c) for c in np.digitize(np.asarray(
        __import__("class_qgis_plugin.geo", fromlist=["x"]).read_vector(simulated["layer"])[1]["Al"], float),
        BREAKS["Al"])}
    for k in present:
        assert np.any(np.all(mapped == COLOURS[k], axis=-1)), f"class {k} not drawn on the map"
    # the scale bar (below the map, bottom-left) draws black boxes
    bottom = img[-int(img.shape[0] * 0.07):, : map_right // 2, :3]
    assert np.any(np.all(bottom < 40, axis=-1))


def test_export_map_rejects_missing_column(run_alg, simulated, tmp_path):
    from qgis.core import QgsProcessingException

    from class_qgis_plugin import geo

    geoms, attrs, _ = geo.read_vector(simulated["layer"])
    geo.write_vector(tmp_path / "noal.gpkg", geoms, {"obs_id": attrs["obs_id"]})
    with pytest.raises(QgsProcessingException, match="Al: no such column"):
        run_alg("classxrf:exportmap", {"INPUT": str(tmp_path / "noal.gpkg"), "ELEMENT": "Al",
                                       "OUTPUT": str(tmp_path / "x.png")})
    assert not (tmp_path / "x.png").exists()


def test_density_heatmap_glows_on_the_tracks(plugin, simulated):
    import shapely

    from class_qgis_plugin import geo

    styles = __import__("class_qgis.processing_provider.styles", fromlist=["x"])
    vec = QgsVectorLayer(str(simulated["layer"]), "abund", "ogr")
    dens = styles.density_layer(vec)
    assert dens.featureCount() == vec.featureCount()
    assert styles.apply_heatmap(vec) is None  # polygons: QGIS's heatmap draws points only
    assert styles.apply_heatmap(dens) is not None
    size = (600, 500)
    ext = vec.extent()
    ext.scale(1.3)
    img, vis = _render([dens], ext, size, background=QColor(0, 0, 0, 0))
    geoms = geo.read_vector(simulated["layer"])[0]
    cents = [g.centroid for g in geoms]
    on = [img[_pixel(vis, size, p.x, p.y)][3] for p in cents]
    assert min(on) > 0
    far = shapely.union_all(geoms).buffer(vis.width() / 6)
    corner = (vis.xMinimum() + 1e-3, vis.yMaximum() - 1e-3)
    if not far.contains(shapely.Point(*corner)):
        assert img[_pixel(vis, size, *corner)][3] == 0  # nothing observed: transparent


def test_raster_ramp_is_transparent_where_nothing_is_known(plugin, tmp_path):
    from class_qgis_plugin import geo

    styles = __import__("class_qgis.processing_provider.styles", fromlist=["x"])
    data = np.full((1, 20, 40), np.nan, np.float32)
    data[0, :, :10] = 0.0      # Fe lunar range 0..20 wt%: the ramp's first colour
    data[0, :, 30:] = 20.0     # ... and its last
    path = geo.write_geotiff(tmp_path / "fe.tif", data, 0.0, 10.0, 0.5, 0.5, band_names=["Fe"])
    lyr = QgsRasterLayer(str(path), "fe")
    styles.apply_raster_ramp(lyr, 1, ramp="Viridis")
    assert lyr.renderer().classificationMin() == 0.0 and lyr.renderer().classificationMax() == 20.0
    img, vis = _render([lyr], lyr.extent(), (400, 200), background=QColor(0, 0, 0, 0))
    # Viridis ends: #440154 and #fde725 (van der Walt and Smith, matplotlib's published colormap)
    assert np.abs(img[100, 50, :3].astype(int) - (0x44, 0x01, 0x54)).max() <= 2 and img[100, 50, 3] == 255
    assert np.abs(img[100, 350, :3].astype(int) - (0xFD, 0xE7, 0x25)).max() <= 2
    assert img[100, 200, 3] == 0  # nodata: transparent


@pytest.mark.parametrize("element", list(BREAKS))
def test_shipped_qml_styles_load_with_lunar_classes(plugin, element):
    styles = __import__("class_qgis.processing_provider.styles", fromlist=["x"])
    lyr = QgsVectorLayer(f"Polygon?crs=ESRI:104903&field={element}:double", "t", "memory")
    qml = ROOT / "resources" / "styles" / f"{element}.qml"
    msg, ok = lyr.loadNamedStyle(str(qml))
    assert ok, msg
    r = lyr.renderer()
    assert isinstance(r, QgsGraduatedSymbolRenderer) and r.classAttribute() == element
    ranges = r.ranges()
    assert [rg.upperValue() for rg in ranges[:-1]] == list(BREAKS[element])
    assert [rg.lowerValue() for rg in ranges[1:]] == list(BREAKS[element])
    assert all(rg.label().endswith("wt%") for rg in ranges)
    assert [tuple(rg.symbol().color().getRgb()[:3]) for rg in ranges] == [tuple(c) for c in COLOURS]
    # the .qml is what the code applies today (regenerate with scripts/make_styles.py)
    assert styles.load_element_qml(lyr, element)
