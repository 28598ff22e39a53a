"""Outputs loaded into a project as the Toolbox loads them (``processing.runAndLoadResults``: the
layer post-processors run there, not with ``processing.run``):

* every format the plugin writes (GeoTIFF, GeoJSON, GeoPackage, Shapefile) comes back in the
  project's CRS, which the basemap algorithm sets: no transform between layer and project, none that
  QGIS cannot make (no "Cannot create transform" / "No transform available" message), even for a
  basemap made from a GeoTIFF in a bare ``+proj=longlat +R=1737400`` CRS (a custom CRS QGIS cannot
  transform to the plugin's);
* the simulated truth and albedo rasters go to the bottom of the layer tree (above the basemap),
  never over the maps, also when simulate runs after them;
* the solar-fit layer's legend is informative (not "0 - 0" five times), populate's points and the
  super-resolved raster are styled by an element that has values (not Fe when Fe is NULL), and a
  field that does not vary gets one class with a meaningful label.
"""
import math

import numpy as np
import pytest
from qgis.core import (
    NULL,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDistanceArea,
    QgsFeature,
    QgsGeometry,
    QgsGraduatedSymbolRenderer,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsPointXY,
    QgsProcessingContext,
    QgsProject,
    QgsRasterLayer,
    QgsRuleBasedRenderer,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication, QSize

ELEMENTS = ["O", "Na", "Mg", "Al", "Si", "Ca", "Ti", "Fe"]
TRANSFORM_ERRORS = ("Cannot create transform", "No transform available")


@pytest.fixture(scope="module")
def loaded(plugin, tmp_path_factory):
    import processing

    from class_qgis_plugin import geo

    project = QgsProject.instance()
    project.clear()
    messages = []

    def _log(message, tag, level):
        messages.append(message)

    QgsApplication.messageLog().messageReceived.connect(_log)
    # the map canvas as in QGIS desktop: a layer-tree bridge shows the project's layers on it and gives
    # an empty project the CRS of the first layer added; the canvas follows the project CRS (Processing
    # reads the canvas extent: dataobjects.createExpressionContext). pytest-qgis's canvas alone stays
    # in EPSG:4326 without layers.
    from qgis.gui import QgsLayerTreeMapCanvasBridge
    from qgis.utils import iface

    canvas = iface.mapCanvas()
    bridge = QgsLayerTreeMapCanvasBridge(project.layerTreeRoot(), canvas)

    def _follow_project_crs():
        canvas.setDestinationCrs(project.crs())

    project.crsChanged.connect(_follow_project_crs)
    # a new project of QGIS desktop: EPSG:4326 on the WGS 84 ellipsoid
    project.setCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    project.setEllipsoid("EPSG:7030")
    tmp = tmp_path_factory.mktemp("loading")

    def run(alg_id, params):
        res = processing.runAndLoadResults(alg_id, params)
        QCoreApplication.processEvents()  # the desktop's event loop: the bridge updates the canvas
        return res

    # the basemap first, from a lunar GeoTIFF whose CRS is a bare proj string: QGIS reads that as a
    # custom CRS which PROJ cannot transform to ESRI:104903 ("Cannot create transform between
    # ESRI:104903 and ...", in the desktop "No transform available between ESRI:104903 and Custom CRS")
    rng = np.random.default_rng(0)
    proj_tif = geo.write_geotiff(tmp / "albedo_proj.tif", rng.uniform(0.05, 0.2, (1, 171, 341)), 0.0, 22.5,
                                 45.0 / 341, 22.5 / 171, crs="+proj=longlat +R=1737400 +no_defs")
    base = run("classxrf:basemap", {"INPUT": str(proj_tif), "OUTPUT": str(tmp / "base.tif")})
    # A new project is in EPSG:4326 until the first layer's CRS is adopted: what QGIS logs on the way
    # (the Earth CRS to the lunar one) is QGIS's doing. From here on the project CRS is the basemap's.
    assert project.crs().authid() == "ESRI:104903"
    messages.clear()
    sim = run("classxrf:simulate", {"SEED": 3, "TRACKS": 2, "FLARE_CLASS": "C", "OUTPUT_FOLDER": str(tmp / "sim")})
    co = run("classxrf:coadd", {"INPUT": sim["FRAMES"], "WINDOW": 12, "STRIDE": 12, "RMF": sim["RMF_OUT"],
                                "ARF": sim["ARF_OUT"], "BACKGROUND": sim["BACKGROUND"],
                                "OUTPUT_FOLDER": str(tmp / "pha"), "OUTPUT": str(tmp / "obs.geojson")})
    sol = run("classxrf:solarfit", {"INPUT": co["OUTPUT"], "XSM_FOLDER": sim["XSM"],
                                    "OUTPUT_FOLDER": str(tmp / "solar"), "OUTPUT": str(tmp / "obs_solar.gpkg")})
    inv = run("classxrf:invert", {"INPUT": sol["OUTPUT"], "RMF": sim["RMF_OUT"], "ARF": sim["ARF_OUT"],
                                  "BACKGROUND": sim["BACKGROUND"], "OUTPUT": str(tmp / "abund.shp")})
    pop = run("classxrf:populate", {"INPUT": inv["OUTPUT"], "ALBEDO": sim["ALBEDO"], "GIB_FOLDER": str(tmp / "gib"),
                                    "OUTPUT": str(tmp / "sub.gpkg")})
    # simulate again, now that maps are loaded: its rasters must not cover them
    sim2 = run("classxrf:simulate", {"SEED": 4, "TRACKS": 1, "FLARE_CLASS": "C", "OUTPUT_FOLDER": str(tmp / "sim2")})
    yield dict(project=project, messages=messages, tmp=tmp, sim=sim, sim2=sim2, base=base, co=co, sol=sol,
               inv=inv, pop=pop, canvas=canvas, bridge=bridge)
    QgsApplication.messageLog().messageReceived.disconnect(_log)
    project.crsChanged.disconnect(_follow_project_crs)
    project.clear()


def _layer(project, path):
    found = [lyr for lyr in project.mapLayers().values() if lyr.source().split("|")[0] == str(path)]
    assert len(found) == 1, (path, [lyr.source() for lyr in project.mapLayers().values()])
    return found[0]


def test_every_output_format_loads_in_the_project_crs_without_transform_errors(loaded):
    project, messages = loaded["project"], loaded["messages"]
    assert project.crs().authid() == "ESRI:104903"  # set by the basemap algorithm
    # and the ellipsoid: distances on the lunar sphere (WGS 84's would need a Moon -> Earth transform)
    assert project.ellipsoid() == "PARAMETER:1737400:1737400"
    gib = QgsRasterLayer(str(loaded["tmp"] / "gib" / "gib_r3_c4.tif"), "GIB")
    project.addMapLayer(gib)
    try:
        _check_every_format(loaded, project, messages, gib)
    finally:
        project.removeMapLayer(gib.id())


def _check_every_format(loaded, project, messages, gib):
    paths = {"GeoTIFF (simulate)": loaded["sim"]["ALBEDO"], "GeoTIFF (truth)": loaded["sim"]["TRUTH"],
             "GeoTIFF (basemap, from a proj-string CRS)": loaded["base"]["OUTPUT"],
             "GeoTIFF (GIB)": gib.source(), "GeoJSON": loaded["co"]["OUTPUT"], "GeoPackage": loaded["sol"]["OUTPUT"],
             "Shapefile": loaded["inv"]["OUTPUT"], "GeoPackage points": loaded["pop"]["OUTPUT"]}
    assert str(loaded["co"]["OUTPUT"]).endswith(".geojson") and str(loaded["inv"]["OUTPUT"]).endswith(".shp")
    layers = {}
    for what, path in paths.items():
        lyr = _layer(project, path)
        assert lyr.isValid(), what
        crs = lyr.crs()
        assert crs.isValid() and crs.authid() == project.crs().authid(), (what, crs.userFriendlyIdentifier())
        assert crs.isGeographic(), what
        ct = QgsCoordinateTransform(crs, project.crs(), project)
        assert ct.isValid(), what
        p = ct.transform(QgsPointXY(22.5, 11.0))
        assert (p.x(), p.y()) == pytest.approx((22.5, 11.0)), what
        # what the measure tool, the identify tool and $length do with the layer: QgsDistanceArea from the
        # layer's CRS on the project's ellipsoid; 1 degree of the equator on the 1737.4 km sphere
        da = QgsDistanceArea()
        da.setSourceCrs(crs, project.transformContext())
        assert da.setEllipsoid(project.ellipsoid())
        one_degree = da.measureLine(QgsPointXY(0.0, 0.0), QgsPointXY(1.0, 0.0))
        assert one_degree == pytest.approx(1737400 * math.pi / 180, rel=1e-6), what
        layers[what] = lyr
    # draw every layer of the project as the map canvas does (each layer transformed to the project CRS)
    settings = QgsMapSettings()
    settings.setLayers(list(project.mapLayers().values()))
    settings.setDestinationCrs(project.crs())
    settings.setTransformContext(project.transformContext())
    settings.setOutputSize(QSize(300, 200))
    settings.setExtent(layers["GeoTIFF (GIB)"].extent())
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    QCoreApplication.processEvents()
    assert not job.renderedImage().isNull()
    canvas = loaded["canvas"]
    assert canvas.mapSettings().destinationCrs() == project.crs()
    canvas.setExtent(layers["GeoTIFF (GIB)"].extent())
    canvas.refresh()
    canvas.waitWhileRendering()
    QCoreApplication.processEvents()
    bad = [m for m in messages if any(e in m for e in TRANSFORM_ERRORS)]
    assert not bad, bad


def test_reference_rasters_load_at_the_bottom_above_the_basemap(loaded):
    project = loaded["project"]
    order = [node.layer().source().split("|")[0] for node in project.layerTreeRoot().findLayers()]  # top first
    refs = {loaded[k][o] for k in ("sim", "sim2") for o in ("ALBEDO", "TRUTH")}
    maps = {str(loaded[k]["OUTPUT"]) for k in ("co", "sol", "inv", "pop")}
    assert order[-1] == loaded["base"]["OUTPUT"]  # the basemap under everything
    assert set(order[len(maps):-1]) == refs and set(order[:len(maps)]) == maps, order
    # truth above the albedo of the same run; the second run's rasters are still under every map
    for k in ("sim", "sim2"):
        assert order.index(loaded[k]["TRUTH"]) < order.index(loaded[k]["ALBEDO"])
        truth = _layer(project, loaded[k]["TRUTH"])
        assert isinstance(truth.renderer(), QgsSingleBandPseudoColorRenderer)


def test_solarfit_legend_tells_the_observations_apart(loaded):
    lyr = _layer(loaded["project"], loaded["sol"]["OUTPUT"])
    r = lyr.renderer()
    assert isinstance(r, QgsGraduatedSymbolRenderer) and r.classAttribute() in ("goes_flux", "sol_T_MK", "sol_EM")
    labels = [rng.label() for rng in r.ranges()]
    values = {f[r.classAttribute()] for f in lyr.getFeatures()}
    assert 2 <= len(labels) <= len(values)
    assert len(set(labels)) == len(labels) and not any(lab.startswith("0 - 0") for lab in labels), labels
    if r.classAttribute() == "goes_flux":  # GOES classes: the simulated flares are C class
        assert all(lab.startswith("C") for lab in labels), labels


def test_populate_points_are_styled_by_an_element_with_values(loaded):
    lyr = _layer(loaded["project"], loaded["pop"]["OUTPUT"])
    r = lyr.renderer()
    assert isinstance(r, QgsGraduatedSymbolRenderer)
    element = r.classAttribute()
    counts = {e: sum(1 for f in lyr.getFeatures() if f[e] is not None and f[e] != NULL) for e in ELEMENTS}
    assert counts["Fe"] == 0  # with the fluorescence norm free, Fe is unconstrained: NULL throughout
    assert element in ELEMENTS and counts[element] == max(counts.values()) > 0
    assert f"{element} (wt%)" in lyr.name()


def _raster(path, bands):
    from class_qgis_plugin import geo

    data = np.stack([bands[name] for name in ELEMENTS + ["support_km"]])
    return geo.write_geotiff(path, data, 0.0, 22.5, 45.0 / 682, 22.5 / 342, band_names=ELEMENTS + ["support_km"])


def test_superresolved_raster_is_styled_by_the_element_with_most_pixels(plugin, loaded, tmp_path):
    from class_qgis.processing_provider.base import RasterStyle

    full = np.full((342, 682), 10.0, np.float32)
    half = full.copy()
    half[:, 341:] = np.nan
    bands = {e: full for e in ELEMENTS}
    bands.update(Fe=np.full_like(full, np.nan), Ti=np.full_like(full, np.nan), Al=half, support_km=full)
    path = _raster(tmp_path / "sr.tif", bands)
    lyr = QgsRasterLayer(str(path), "Super-resolved abundances")
    context = QgsProcessingContext()
    context.setProject(loaded["project"])
    styler = RasterStyle("most_values", ramp="Spectral")
    styler.postProcessLayer(lyr, context, None)
    # Mg: every pixel, and first in the style preference among those (Al has half of them, Fe none)
    assert styler.used == ELEMENTS.index("Mg") + 1
    assert isinstance(lyr.renderer(), QgsSingleBandPseudoColorRenderer) and lyr.renderer().band() == styler.used
    assert lyr.name().endswith("Mg (wt%)")
    # the chain's own GIB raster: Fe and Ti never constrained, so neither is chosen
    gib = QgsRasterLayer(str(loaded["tmp"] / "gib" / "gib_r3_c4.tif"), "GIB")
    styler = RasterStyle("most_values")
    styler.postProcessLayer(gib, context, None)
    assert styler.used not in (ELEMENTS.index("Fe") + 1, ELEMENTS.index("Ti") + 1)


def _memory_layer(values, field="sol_T_MK"):
    lyr = QgsVectorLayer(f"Polygon?crs=ESRI:104903&field={field}:double", "obs", "memory")
    feats = []
    for k, v in enumerate(values):
        f = QgsFeature(lyr.fields())
        f.setGeometry(QgsGeometry.fromWkt(f"POLYGON(({k} 0, {k + 1} 0, {k + 1} 1, {k} 1, {k} 0))"))
        f.setAttribute(0, NULL if v is None else v)
        feats.append(f)
    assert lyr.dataProvider().addFeatures(feats)[0] and lyr.featureCount() == len(values)
    return lyr


def _single_label(renderer):
    assert isinstance(renderer, QgsRuleBasedRenderer)
    rules = renderer.rootRule().children()
    assert len(rules) == 1 and not rules[0].filterExpression() and not rules[0].isElse()
    items = renderer.legendSymbolItems()
    assert len(items) == 1
    return items[0].label()


@pytest.mark.parametrize("values, field, label", [
    ([12.0, 12.0, None, 12.0], "sol_T_MK", "sol_T_MK = 12 MK in every feature"),
    ([1.88e-6] * 3, "goes_flux", "goes_flux = C1.88 in every feature"),
    ([0.0, 0.0, 0.0, 0.0, 0.0], "goes_flux", "goes_flux = 0 in every feature"),
    ([None, None], "sol_T_MK", "sol_T_MK: no value (NULL) in every feature"),
    ([None, math.nan], "Fe", "Fe: not constrained (NULL) in every feature"),
])
def test_a_field_that_does_not_vary_gets_one_labelled_class(plugin, values, field, label):
    from class_qgis.processing_provider.styles import apply_graduated

    lyr = _memory_layer(values, field)
    assert _single_label(apply_graduated(lyr, field, ramp="Reds")) == label
    assert lyr.renderer().rootRule().children()[0].symbol() is not None  # every feature drawn


def test_few_distinct_values_get_one_class_each_many_get_jenks_classes(plugin):
    from class_qgis.processing_provider.base import GraduatedStyle
    from class_qgis.processing_provider.styles import apply_graduated

    lyr = _memory_layer([1.8800e-6, 1.8829e-6, 1.8829e-6, None], "goes_flux")
    r = apply_graduated(lyr, "goes_flux")
    assert isinstance(r, QgsGraduatedSymbolRenderer)
    assert [x.label() for x in r.ranges()] == ["C1.88", "C1.883"]
    assert all(r.rangeForValue(v) is not None for v in (1.8800e-6, 1.8829e-6))
    lyr = _memory_layer([float(v) for v in (1, 2, 3, 10, 11, 12, 30, 31, 50)])
    r = apply_graduated(lyr, "sol_T_MK", classes=5)
    labels = [x.label() for x in r.ranges()]
    assert len(labels) == 5 and len(set(labels)) == 5 and labels[0].startswith("1 MK") and labels[-1].endswith("50 MK")
    # the first field that varies: goes_flux is constant here, so the temperature
    lyr = QgsVectorLayer("Point?crs=ESRI:104903&field=goes_flux:double&field=sol_T_MK:double", "obs", "memory")
    feats = []
    for k, t in enumerate((11.0, 12.0, 13.0)):
        f = QgsFeature(lyr.fields())
        f.setGeometry(QgsGeometry.fromWkt(f"POINT({k} 0)"))
        f.setAttributes([2e-6, t])
        feats.append(f)
    assert lyr.dataProvider().addFeatures(feats)[0] and lyr.featureCount() == 3
    styler = GraduatedStyle(("goes_flux", "sol_T_MK", "sol_EM"), ramp="Reds")
    styler.postProcessLayer(lyr, QgsProcessingContext(), None)
    assert styler.used == "sol_T_MK" and lyr.renderer().classAttribute() == "sol_T_MK"


def test_a_lunar_project_gets_the_lunar_sphere_as_ellipsoid(plugin, loaded):
    """QGIS desktop gives a new project the first layer's CRS and that CRS's ellipsoid (ESRI:107903 for
    ESRI:104903): distances NaN, and a transform to the ellipsoid's CRS that QGIS cannot make ("No
    transform available between ESRI:104903 and Custom CRS"). The provider keeps the current project
    on the lunar sphere; loading a plugin layer does the same for any project."""
    from class_qgis.processing_provider.base import GraduatedStyle

    project = loaded["project"]
    da = QgsDistanceArea()
    da.setSourceCrs(project.crs(), project.transformContext())
    da.setEllipsoid("ESRI:107903")
    assert math.isnan(da.measureLine(QgsPointXY(0.0, 0.0), QgsPointXY(1.0, 0.0)))
    project.setEllipsoid("ESRI:107903")  # what the desktop's first-layer adoption does
    assert project.ellipsoid() == "PARAMETER:1737400:1737400"
    project.setCrs(QgsCoordinateReferenceSystem("ESRI:104903"), True)
    assert project.ellipsoid() == "PARAMETER:1737400:1737400"
    project.setEllipsoid("NONE")  # planimetric on purpose: left alone
    assert project.ellipsoid() == "NONE"
    project.setEllipsoid("PARAMETER:1737400:1737400")
    # another project (not the current one): a plugin layer loaded into it
    other = QgsProject()
    other.setCrs(QgsCoordinateReferenceSystem("ESRI:104903"))
    other.setEllipsoid("ESRI:107903")
    context = QgsProcessingContext()
    context.setProject(other)
    GraduatedStyle("counts").postProcessLayer(_memory_layer([1.0, 2.0], "counts"), context, None)
    assert other.ellipsoid() == "PARAMETER:1737400:1737400"
    # a project on the Earth keeps its ellipsoid
    earth = QgsProject()
    earth.setCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    earth.setEllipsoid("EPSG:7030")
    context.setProject(earth)
    GraduatedStyle("counts").postProcessLayer(_memory_layer([1.0, 2.0], "counts"), context, None)
    assert earth.ellipsoid() == "EPSG:7030"
