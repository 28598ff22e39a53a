"""classxrf:exportmap - a PNG map of one element over the basemap, with legend, scale bar and title."""
import os

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsLayerTree,
    QgsLayout,
    QgsLayoutExporter,
    QgsLayoutItemLabel,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutItemScaleBar,
    QgsLayoutPoint,
    QgsLayoutSize,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsUnitTypes,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor, QFont

from ..class_qgis_plugin.choices import LUNAR_CRS, LUNAR_ELLIPSOID
from .base import ClassXrfAlgorithm

ELEMENTS = ["O", "Na", "Mg", "Al", "Si", "Ca", "Ti", "Fe"]
#: the explicit 1,737,400 m sphere (QgsDistanceArea returns NaN for the lunar CRSs' own ellipsoids on QGIS 3.22)
MOON_ELLIPSOID = LUNAR_ELLIPSOID


def _clone_vector(layer, name):
    lyr = QgsVectorLayer(layer.source(), name, layer.providerType())
    if not lyr.isValid():
        raise QgsProcessingException(f"{layer.source()}: the layer could not be opened again for the map")
    return lyr


def render_element_map(layer, element, out_png, basemap=None, width_mm=240.0, dpi=150, title=None,
                       extent=None):
    """Lay out ``layer`` graduated by ``element`` over ``basemap`` with legend, scale bar and title and
    export it to ``out_png`` with QgsLayoutExporter. Returns (path, extent used, map scale)."""
    from .styles import apply_element_style, style_basemap

    project = QgsProject()  # a private project: the user's is left alone
    crs = QgsCoordinateReferenceSystem(LUNAR_CRS)
    project.setCrs(crs)
    project.setEllipsoid(MOON_ELLIPSOID)
    vec = _clone_vector(layer, f"{element} (wt%)")
    if apply_element_style(vec, element) is None:
        raise QgsProcessingException(f"{layer.source()}: {element}: no such column in the layer")
    vec.setName(f"{element} (wt%)")
    layers = [vec]
    base = None
    if basemap is not None:
        base = QgsRasterLayer(basemap.source(), "Basemap", basemap.providerType())
        if not base.isValid():
            raise QgsProcessingException(f"{basemap.source()}: the basemap could not be opened")
        style_basemap(base)
        layers.append(base)
    project.addMapLayers(layers)

    if extent is None:
        extent = QgsRectangle(vec.extent())
        if extent.isEmpty():
            raise QgsProcessingException(f"{layer.source()}: the layer has no features to map")
        extent.scale(1.15)
    height_mm = width_mm * 0.62
    layout = QgsLayout(project)
    layout.initializeDefaults()
    page = layout.pageCollection().page(0)
    page.setPageSize(QgsLayoutSize(width_mm, height_mm, QgsUnitTypes.LayoutMillimeters))

    map_w, map_h = width_mm * 0.72, height_mm - 30.0
    # keep the extent's aspect: grow the short side so the map frame is filled
    aspect = map_w / map_h
    if extent.width() / max(extent.height(), 1e-12) < aspect:
        cx, w = extent.center().x(), extent.height() * aspect
        extent = QgsRectangle(cx - w / 2, extent.yMinimum(), cx + w / 2, extent.yMaximum())
    else:
        cy, h = extent.center().y(), extent.width() / aspect
        extent = QgsRectangle(extent.xMinimum(), cy - h / 2, extent.xMaximum(), cy + h / 2)

    item_map = QgsLayoutItemMap(layout)
    item_map.attemptMove(QgsLayoutPoint(5, 14, QgsUnitTypes.LayoutMillimeters))
    item_map.attemptResize(QgsLayoutSize(map_w, map_h, QgsUnitTypes.LayoutMillimeters))
    item_map.setCrs(crs)
    item_map.setLayers(layers)
    item_map.setExtent(extent)
    item_map.setFrameEnabled(True)
    item_map.setBackgroundColor(QColor(0, 0, 0))
    layout.addLayoutItem(item_map)

    label = QgsLayoutItemLabel(layout)
    label.setText(title or f"{element} abundance (wt%) - CLASS XRF")
    font = QFont()
    font.setPointSizeF(14)
    font.setBold(True)
    label.setFont(font)
    label.attemptMove(QgsLayoutPoint(5, 3, QgsUnitTypes.LayoutMillimeters))
    label.attemptResize(QgsLayoutSize(width_mm - 10, 10, QgsUnitTypes.LayoutMillimeters))
    layout.addLayoutItem(label)

    legend = QgsLayoutItemLegend(layout)
    legend.setTitle("Legend")
    legend.setLinkedMap(item_map)
    legend.setAutoUpdateModel(False)
    root = QgsLayerTree()
    root.addLayer(vec)  # the element's classes only: the basemap needs no legend
    legend.model().setRootGroup(root)
    legend.attemptMove(QgsLayoutPoint(map_w + 9, 14, QgsUnitTypes.LayoutMillimeters))
    layout.addLayoutItem(legend)

    bar = QgsLayoutItemScaleBar(layout)
    bar.setStyle("Single Box")
    bar.setLinkedMap(item_map)
    bar.setUnits(QgsUnitTypes.DistanceKilometers)
    bar.setUnitLabel("km")
    bar.setNumberOfSegments(2)
    bar.setNumberOfSegmentsLeft(0)
    bar.applyDefaultSize(QgsUnitTypes.DistanceKilometers)
    bar.attemptMove(QgsLayoutPoint(5, 14 + map_h + 2.5, QgsUnitTypes.LayoutMillimeters))
    layout.addLayoutItem(bar)

    exporter = QgsLayoutExporter(layout)
    settings = QgsLayoutExporter.ImageExportSettings()
    settings.dpi = float(dpi)
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    tmp = os.path.join(os.path.dirname(os.path.abspath(out_png)), "." + os.path.basename(out_png) + ".part.png")
    try:
        status = exporter.exportToImage(tmp, settings)
        if status != QgsLayoutExporter.Success:
            raise QgsProcessingException(f"{out_png}: the map could not be exported ({exporter.errorMessage()})")
        os.replace(tmp, out_png)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    scale = item_map.scale()
    segments_km = bar.unitsPerSegment()
    project.removeAllMapLayers()
    return out_png, extent, scale, segments_km


class ExportMapAlgorithm(ClassXrfAlgorithm):
    ALG_NAME = "exportmap"
    DISPLAY = "Export a PNG map of an element"
    GROUP = "5 Basemap and export"
    GROUP_ID = "display"
    STEP = "5.2"
    HELP = """<p>Renders a <b>PNG map</b> of one element's abundance over the lunar basemap - the figure the
paper's authors made by hand - with a title, a legend in wt% and a scale bar in km. It runs headless (QGIS's
layout engine: QgsLayout + QgsLayoutExporter), so it works in batch, in a model and from qgis_process.</p>
<ul>
<li>The footprints (or sub-footprint points) are graduated on the plugin's <b>fixed lunar classes</b> of the
element (five classes inside the range of lunar regolith, Lunar Sourcebook Table 7.15 and Prettyman et al.
2006; first and last classes open), coloured blue (low) to red (high) - the same classes as the
resources/styles/&lt;element&gt;.qml files, so maps of different regions compare directly.</li>
<li>The map is drawn in ESRI:104903, the CRS of every layer of the plugin; distances on the scale bar are measured
on the 1737.4 km sphere.</li>
</ul>
<h3>Parameters</h3>
<p><b>Abundance layer</b>: the output of FP inversion or of track population (a column per element, wt%).
<b>Element</b>: which column to map. <b>Basemap</b> (optional): a raster drawn underneath, e.g. the output of
the basemap algorithm. <b>Title</b> (optional). <b>Width</b> of the page (mm) and <b>resolution</b> (dpi).</p>
<h3>Outputs</h3><p>The PNG file (written under a temporary name, then moved into place).</p>"""

    def flags(self):
        # layout items are QObjects: build and export them on the main thread
        return super().flags() | QgsProcessingAlgorithm.FlagNoThreading

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterVectorLayer(
            "INPUT", "Abundance layer", [QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeVectorPoint]))
        self.addParameter(QgsProcessingParameterEnum(
            "ELEMENT", "Element", options=ELEMENTS, defaultValue="Fe", usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterRasterLayer("BASEMAP", "Basemap", optional=True))
        self.addParameter(QgsProcessingParameterString("TITLE", "Title", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            "WIDTH_MM", "Page width (mm)", type=QgsProcessingParameterNumber.Double, defaultValue=240.0,
            minValue=60.0, maxValue=1200.0))
        self.addParameter(QgsProcessingParameterNumber(
            "DPI", "Resolution (dpi)", type=QgsProcessingParameterNumber.Integer, defaultValue=150,
            minValue=30, maxValue=600))
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT", "PNG map", fileFilter="PNG image (*.png)"))

    def execute(self, parameters, context, feedback, progress):
        layer = self.parameterAsVectorLayer(parameters, "INPUT", context)
        if layer is None or not layer.isValid():
            raise QgsProcessingException("The abundance layer could not be loaded")
        element = self.parameterAsEnumString(parameters, "ELEMENT", context)
        if layer.fields().indexOf(element) < 0:
            raise QgsProcessingException(f"{layer.source()}: {element}: no such column (the layer has: "
                                         f"{', '.join(layer.fields().names())})")
        basemap = self.parameterAsRasterLayer(parameters, "BASEMAP", context)
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        if not out.lower().endswith(".png"):
            out += ".png"
        progress.set(0.1, "laying out the map")
        path, extent, scale, seg = render_element_map(
            layer, element, out, basemap=basemap,
            width_mm=self.parameterAsDouble(parameters, "WIDTH_MM", context),
            dpi=self.parameterAsInt(parameters, "DPI", context),
            title=self.parameterAsString(parameters, "TITLE", context) or None)
        feedback.pushInfo(f"map of {element} at 1:{scale:,.0f}, extent {extent.toString(3)}, scale bar "
                          f"segments of {seg:g} km -> {path}")
        progress.set(1.0, "map written")
        return {"OUTPUT": path}
