"""Styles of the plugin's layers: abundance footprints graduated on lunar ranges, density heatmaps,
colour-ramped rasters with transparency where nothing is known, the basemap.

Element classes are fixed (not data-driven) so that maps of different regions, runs and papers read
the same: five classes per element inside the plausible range of lunar regolith
(:data:`class_qgis_plugin.composition.LUNAR_RANGE`; Lunar Sourcebook Table 7.15; Prettyman et al.
2006), with breaks placed so that the mean mare and highland soils fall in different classes
wherever they differ (Mg, Al, Ca, Ti, Fe, O). The first and last classes are open ("< 4 wt%",
">= 16 wt%") so that no value is left undrawn. Colours: ColorBrewer RdYlBu, reversed (blue = low,
red = high), a diverging scheme readable by colour-blind people.

The ``resources/styles/<element>.qml`` files are written from these functions by
``scripts/make_styles.py`` for people who load layers by hand (Layer Properties > Style > Load).
"""
import os

import math

from qgis.core import (
    NULL,
    QgsClassificationJenks,
    QgsColorRampShader,
    QgsFeature,
    QgsFeatureRequest,
    QgsFillSymbol,
    QgsGeometry,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsGraduatedSymbolRenderer,
    QgsHeatmapRenderer,
    QgsLayerTree,
    QgsMarkerSymbol,
    QgsRasterBandStats,
    QgsRasterShader,
    QgsRendererRange,
    QgsRuleBasedRenderer,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
    QgsSymbol,
    QgsUnitTypes,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtGui import QColor

from ..class_qgis_plugin.choices import STYLE_PREFERENCE
from ..class_qgis_plugin.composition import ELEMENTS, LUNAR_RANGE

#: Class breaks (wt%) per element: LUNAR_RANGE's ends with four inner breaks. Mean soils
#: (mare / highland, wt%): O 42.7/45.3, Mg 5.8/3.4, Al 7.7/14.7, Ca 8.4/11.5, Ti 2.1/0.2, Fe 12.2/3.7.
ELEMENT_BREAKS = {
    "O": (38.0, 41.0, 42.5, 44.0, 45.5, 48.0),
    "Na": (0.0, 0.2, 0.3, 0.4, 0.6, 2.0),
    "Mg": (0.0, 3.0, 4.5, 6.0, 8.0, 15.0),
    "Al": (2.0, 6.0, 9.0, 12.0, 15.0, 20.0),
    "Si": (15.0, 19.0, 20.5, 22.0, 23.5, 26.0),
    "Ca": (4.0, 7.0, 9.0, 11.0, 13.0, 16.0),
    "Ti": (0.0, 0.5, 1.5, 3.0, 5.0, 9.0),
    "Fe": (0.0, 4.0, 8.0, 12.0, 16.0, 20.0),
}
#: ColorBrewer RdYlBu (5 classes), reversed: low = blue, high = red.
CLASS_COLOURS = ("#2c7bb6", "#abd9e9", "#ffffbf", "#fdae61", "#d7191c")
#: Open ends of the first/last class: every value (even a slightly negative fit) falls in a class.
OPEN_LOW, OPEN_HIGH = -1000.0, 1000.0
OUTLINE = "#3a3a3a"


def _fmt(x):
    return f"{x:g}"


def class_labels(element):
    """Legend labels in wt% of the element's five classes."""
    b = ELEMENT_BREAKS[element]
    labels = [f"< {_fmt(b[1])} wt%"]
    labels += [f"{_fmt(b[k])} - {_fmt(b[k + 1])} wt%" for k in range(1, len(b) - 2)]
    labels.append(f">= {_fmt(b[-2])} wt%")
    return labels


def class_ranges(element):
    """(lower, upper, colour hex, label) of each class; the first and last classes are open."""
    b = list(ELEMENT_BREAKS[element])
    lows = [OPEN_LOW] + b[1:-1]
    highs = b[1:-1] + [OPEN_HIGH]
    return [(lo, hi, c, lab) for lo, hi, c, lab in zip(lows, highs, CLASS_COLOURS, class_labels(element))]


def _symbol(geometry_type, colour):
    if geometry_type == QgsWkbTypes.PointGeometry:
        sym = QgsMarkerSymbol.createSimple({"name": "circle", "color": colour, "size": "1.6",
                                            "outline_style": "no"})
    elif geometry_type == QgsWkbTypes.LineGeometry:
        sym = QgsSymbol.defaultSymbol(geometry_type)
        sym.setColor(QColor(colour))
    else:
        sym = QgsFillSymbol.createSimple({"color": colour, "outline_color": OUTLINE, "outline_width": "0.1",
                                          "outline_style": "solid", "style": "solid"})
    return sym


def element_renderer(element, field=None, geometry_type=QgsWkbTypes.PolygonGeometry):
    """Graduated renderer of one element on the fixed lunar classes, legend in wt%."""
    if element not in ELEMENT_BREAKS:
        raise ValueError(f"no lunar classes for {element!r}; elements: {', '.join(ELEMENTS)}")
    ranges = [QgsRendererRange(lo, hi, _symbol(geometry_type, colour), label)
              for lo, hi, colour, label in class_ranges(element)]
    renderer = QgsGraduatedSymbolRenderer(field or element, ranges)
    renderer.setSourceSymbol(_symbol(geometry_type, CLASS_COLOURS[2]))
    return renderer


def apply_element_style(layer, element, field=None):
    """Style ``layer`` graduated by ``element`` (column ``field``, default the element's name)."""
    field = field or element
    if layer.fields().indexOf(field) < 0:
        return None
    renderer = element_renderer(element, field, layer.geometryType())
    layer.setRenderer(renderer)
    if element in LUNAR_RANGE and f"{element} (wt%)" not in layer.name():
        layer.setName(f"{layer.name()} - {element} (wt%)" if layer.name() else f"{element} (wt%)")
    layer.triggerRepaint()
    return renderer


def _ramp(name, invert=False):
    ramp = QgsStyle.defaultStyle().colorRamp(name)
    if ramp is None:
        ramp = QgsStyle.defaultStyle().colorRamp("Viridis")
    if invert and ramp is not None:
        ramp.invert()
    return ramp


def finite_values(layer, field):
    """The finite numbers of ``field`` over the layer's features (NULL, text and NaN left out)."""
    idx = layer.fields().indexOf(field)
    if idx < 0:
        return []
    request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry).setSubsetOfAttributes([idx])
    values = []
    for f in layer.getFeatures(request):
        v = f.attribute(idx)
        if v is None or v == NULL or isinstance(v, str):
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            values.append(x)
    return values


def pick_field(layer, fields, how="first_varying"):
    """The field of ``fields`` to style ``layer`` by, among those it has (None if it has none).

    ``first_varying``: the first with at least 2 distinct finite values, else the first present;
    ``most_values``: the one with the most finite values (ties: the order of ``fields``), e.g. the
    element constrained most often, as an unconstrained element is NULL."""
    present = [f for f in ([fields] if isinstance(fields, str) else list(fields)) if layer.fields().indexOf(f) >= 0]
    if not present:
        return None
    if how == "most_values":
        counts = {f: len(finite_values(layer, f)) for f in present}
        return max(present, key=lambda f: (counts[f], -present.index(f)))
    for f in present:
        if len(set(finite_values(layer, f))) >= 2:
            return f
    return present[0]


def element_order(preferred=None):
    """Elements in the order the styles prefer them on a tie (:data:`STYLE_PREFERENCE`), ``preferred`` first."""
    order = list(STYLE_PREFERENCE) + [e for e in ELEMENTS if e not in STYLE_PREFERENCE]
    if preferred in order:
        order.remove(preferred)
        order.insert(0, preferred)
    return order


#: legend units of the fields the plugin styles on a colour ramp
FIELD_UNITS = {"sol_T_MK": " MK", "sol_EM": " cm^-3", "counts": " counts", "exposure": " s"}
GOES_CLASSES = (("X", 1e-4), ("M", 1e-5), ("C", 1e-6), ("B", 1e-7), ("A", 1e-8))


def format_value(field, value, digits):
    """``value`` of ``field`` for a legend with ``digits`` significant digits: a GOES class for
    ``goes_flux`` (W m^-2 in 1-8 A, e.g. C1.88), else the number and its unit."""
    if field == "goes_flux" and value > 0:
        letter, base = next(((k, b) for k, b in GOES_CLASSES if value >= b), GOES_CLASSES[-1])
        return f"{letter}{value / base:.{digits}g}"
    return f"{value:.{digits}g}{FIELD_UNITS.get(field, '')}"


def _labels(field, pairs):
    """Legend labels of ``pairs`` ((low, high), or (value, None) for one value): the fewest
    significant digits (3 to 10) that keep different numbers and different classes apart."""
    for digits in range(3, 11):
        labels = []
        ok = True
        for lo, hi in pairs:
            if hi is None:
                labels.append(format_value(field, lo, digits))
                continue
            a, b = format_value(field, lo, digits), format_value(field, hi, digits)
            ok &= (a != b) or lo == hi
            labels.append(a if lo == hi else f"{a} - {b}")
        if ok and len(set(labels)) == len(labels):
            return labels
    return labels


def apply_single_class(layer, label):
    """One symbol for every feature, with ``label`` in the legend: the style of a field that does
    not vary (Jenks classes of a constant field collapse into identical, empty classes)."""
    symbol = QgsSymbol.defaultSymbol(layer.geometryType())
    symbol.setOpacity(0.8)
    root = QgsRuleBasedRenderer.Rule(None)
    root.appendChild(QgsRuleBasedRenderer.Rule(symbol, 0, 0, "", label))
    renderer = QgsRuleBasedRenderer(root)
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return renderer


def single_class_label(field, values):
    """The legend label of a field with fewer than 2 distinct finite values."""
    if not values:
        what = "not constrained (NULL)" if field in ELEMENT_BREAKS else "no value (NULL)"
        return f"{field}: {what} in every feature"
    return f"{field} = {_labels(field, [(values[0], None)])[0]} in every feature"


def apply_graduated(layer, field, ramp="Spectral", classes=5, invert=False):
    """Style ``layer`` on ``field``; returns the renderer (None if the layer has no such field).

    * an element (O..Fe) with values: the fixed lunar classes (NULL features, i.e. unconstrained
      fits, are not drawn); an element without any value: one class saying so;
    * another field with fewer than 2 distinct finite values: one class, labelled with the value;
    * up to ``classes`` distinct values: one class per value, labelled with it;
    * more: Jenks natural-breaks classes, labelled with as many significant digits as keep them apart
      (GOES fluxes as GOES classes, e.g. C1.88).
    """
    if layer.fields().indexOf(field) < 0:
        return None
    values = finite_values(layer, field)
    distinct = sorted(set(values))
    if field in ELEMENT_BREAKS:
        if values:
            return apply_element_style(layer, field)
        return apply_single_class(layer, single_class_label(field, values))
    if len(distinct) < 2:
        return apply_single_class(layer, single_class_label(field, distinct))
    symbol = QgsSymbol.defaultSymbol(layer.geometryType())
    symbol.setOpacity(0.8)
    renderer = QgsGraduatedSymbolRenderer(field)
    renderer.setSourceSymbol(symbol)
    renderer.setSourceColorRamp(_ramp(ramp, invert))
    renderer.setClassificationMethod(QgsClassificationJenks())
    if len(distinct) <= classes:
        mids = [(a + b) / 2.0 for a, b in zip(distinct[:-1], distinct[1:])]
        lows, highs = [distinct[0]] + mids, mids + [distinct[-1]]
        for (lo, hi), label in zip(zip(lows, highs), _labels(field, [(v, None) for v in distinct])):
            renderer.addClassRange(QgsRendererRange(lo, hi, symbol.clone(), label))
    else:
        renderer.updateClasses(layer, classes)
        pairs = [(r.lowerValue(), r.upperValue()) for r in renderer.ranges()]
        for k, label in enumerate(_labels(field, pairs)):
            renderer.updateRangeLabel(k, label)
    renderer.updateColorRamp(_ramp(ramp, invert))
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return renderer


# ------------------------------------------------------------------------------ density heatmap
def density_ramp():
    """Transparent -> yellow -> red: empty sky shows the basemap, dense coverage glows."""
    ramp = QgsGradientColorRamp(QColor(255, 255, 178, 0), QColor(189, 0, 38, 230))
    ramp.setStops([QgsGradientStop(0.25, QColor(254, 204, 92, 150)), QgsGradientStop(0.6, QColor(240, 59, 32, 200))])
    return ramp


def heatmap_renderer(radius_mm=4.0, weight=None):
    """A heatmap renderer of point density (kernel radius in mm on the map)."""
    r = QgsHeatmapRenderer()
    r.setColorRamp(density_ramp())
    r.setRadius(radius_mm)
    r.setRadiusUnit(QgsUnitTypes.RenderMillimeters)
    r.setRenderQuality(1)
    if weight:
        r.setWeightExpression(weight)
    return r


def density_layer(layer, name=None):
    """A memory point layer of the footprints' centroids (one per observation), for the heatmap."""
    out = QgsVectorLayer(f"Point?crs={layer.crs().authid() or layer.crs().toWkt()}", name or
                         f"{layer.name()} - observation density", "memory")
    if not out.crs().isValid():
        out.setCrs(layer.crs())
    feats = []
    for f in layer.getFeatures():
        g = f.geometry()
        if g is None or g.isEmpty():
            continue
        nf = QgsFeature()
        nf.setGeometry(QgsGeometry(g.centroid()) if g.type() != QgsWkbTypes.PointGeometry else g)
        feats.append(nf)
    out.dataProvider().addFeatures(feats)
    out.updateExtents()
    return out


def apply_heatmap(layer, radius_mm=4.0, weight=None):
    """Heatmap of observation density on a point layer (QGIS's heatmap draws points only: for a
    footprint layer use :func:`density_layer` first). Returns the renderer or None."""
    if layer.geometryType() != QgsWkbTypes.PointGeometry:
        return None
    r = heatmap_renderer(radius_mm, weight)
    layer.setRenderer(r)
    layer.triggerRepaint()
    return r


# ------------------------------------------------------------------------------ rasters
def _band_element(layer, band):
    desc = layer.dataProvider().generateBandName(band)
    try:
        desc = layer.bandName(band)
    except Exception:
        pass
    for token in (desc or "").replace(":", " ").split():
        if token in ELEMENT_BREAKS:
            return token
    return None


def apply_raster_ramp(layer, band=1, ramp="Viridis", element=None, classes=5):
    """Pseudocolour renderer on ``band``; transparent where the band is nodata (nothing known).

    When the band holds an element (given, or named O..Fe in its description) the ramp spans the
    element's lunar range so that maps compare across regions; otherwise the band's min..max.
    """
    provider = layer.dataProvider()
    provider.setUseSourceNoDataValue(band, True)
    element = element or _band_element(layer, band)
    if element in LUNAR_RANGE:
        lo, hi = LUNAR_RANGE[element]
    else:
        stats = provider.bandStatistics(band, QgsRasterBandStats.Min | QgsRasterBandStats.Max)
        lo, hi = stats.minimumValue, stats.maximumValue
    if not (hi > lo):
        hi = lo + 1.0
    fcn = QgsColorRampShader(lo, hi)
    fcn.setSourceColorRamp(_ramp(ramp))
    fcn.setColorRampType(QgsColorRampShader.Interpolated)
    fcn.setClip(False)
    items = []
    src = _ramp(ramp)
    for k in range(classes):
        t = k / (classes - 1)
        v = lo + t * (hi - lo)
        unit = " wt%" if element else ""
        items.append(QgsColorRampShader.ColorRampItem(v, src.color(t), f"{v:.3g}{unit}"))
    fcn.setColorRampItemList(items)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(fcn)
    renderer = QgsSingleBandPseudoColorRenderer(provider, band, shader)
    renderer.setClassificationMin(lo)
    renderer.setClassificationMax(hi)
    renderer.setNodataColor(QColor(0, 0, 0, 0))
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return renderer


def band_with_most_values(layer, bands, samples=(256, 128)):
    """The band of ``bands`` with the most valid (not nodata) cells, counted on a grid of about
    ``samples`` cells over the raster (ties: the order of ``bands``). An element that was never
    observed (e.g. Fe when unconstrained) is nodata everywhere."""
    provider = layer.dataProvider()
    cols, rows = min(layer.width(), samples[0]), min(layer.height(), samples[1])
    best, best_n = None, -1
    for band in bands:
        if not 1 <= band <= layer.bandCount():
            continue
        provider.setUseSourceNoDataValue(band, True)
        block = provider.block(band, provider.extent(), cols, rows)
        n = 0
        for r in range(rows):
            for c in range(cols):
                if not block.isNoData(r, c) and math.isfinite(block.value(r, c)):
                    n += 1
        if n > best_n:
            best, best_n = band, n
    return best


def element_bands(layer):
    """``{element: band}`` of a raster whose band descriptions name elements (O..Fe)."""
    out = {}
    for band in range(1, layer.bandCount() + 1):
        element = _band_element(layer, band)
        if element and element not in out:
            out[element] = band
    return out


#: layer custom property: the rank of a layer the plugin keeps at the bottom of the layer tree
BOTTOM_RANK = "classxrf/bottom_rank"
#: bottom ranks, lowest first: the basemap under everything, then the simulated albedo and truth
BOTTOM_RANKS = {"basemap": 0, "albedo": 1, "truth": 2}


def place_at_bottom(project, layer, rank):
    """Move ``layer`` to the bottom of its group in the layer tree, above the layers placed there with
    a lower or the same ``rank`` (the newest on top; basemap 0 < simulated albedo 1 < simulated truth
    2): reference layers never cover the maps, and the basemap stays under everything. Returns the
    new node (None if the layer is not in the tree)."""
    rank = BOTTOM_RANKS.get(rank, rank)
    root = project.layerTreeRoot()
    node = root.findLayer(layer.id())
    if node is None:
        return None
    layer.setCustomProperty(BOTTOM_RANK, rank)
    parent = node.parent()
    kids = parent.children()
    pos = next(k for k, c in enumerate(kids) if QgsLayerTree.isLayer(c) and c.layerId() == layer.id())
    others = [c for k, c in enumerate(kids) if k != pos]

    def _rank(child):
        if not QgsLayerTree.isLayer(child) or child.layer() is None:
            return None
        value = child.layer().customProperty(BOTTOM_RANK)
        try:
            return None if value is None else int(value)
        except (TypeError, ValueError):
            return None

    k = len(others)
    while k > 0 and _rank(others[k - 1]) is not None and _rank(others[k - 1]) <= rank:
        k -= 1
    index = k if k <= pos else k + 1  # index in ``kids``, where ``node`` still is
    if index in (pos, pos + 1):
        return node
    clone = node.clone()
    parent.insertChildNode(index, clone)  # the clone first: a layer without a node leaves the project
    parent.removeChildNode(node)
    return clone


def style_basemap(layer):
    """The basemap under everything: a little dimmed so the abundance classes stand out."""
    if layer.renderer() is not None:
        layer.renderer().setOpacity(0.9)
    layer.triggerRepaint()
    return layer.renderer()


# ------------------------------------------------------------------------------ .qml files
def qml_path(element, style_dir=None):
    from .base import STYLE_DIR

    return os.path.join(style_dir or STYLE_DIR, f"{element}.qml")


def write_element_qml(element, path):
    """Write the element's graduated style as a QGIS .qml file (a polygon layer with the element field)."""
    layer = QgsVectorLayer(f"Polygon?crs=ESRI:104903&field={element}:double", element, "memory")
    apply_element_style(layer, element)
    msg, ok = layer.saveNamedStyle(str(path))
    if not ok:
        raise OSError(f"could not write {path}: {msg}")
    return path


def load_element_qml(layer, element, style_dir=None):
    """Load resources/styles/<element>.qml onto ``layer``; returns True on success."""
    msg, ok = layer.loadNamedStyle(qml_path(element, style_dir))
    if ok:
        layer.triggerRepaint()
    return ok
