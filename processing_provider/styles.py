"""Styles applied to outputs when they load: graduated footprints, colour-ramped rasters."""
from qgis.core import (
    QgsClassificationJenks,
    QgsColorRampShader,
    QgsGraduatedSymbolRenderer,
    QgsRasterBandStats,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
    QgsSymbol,
)


def _ramp(name, invert=False):
    ramp = QgsStyle.defaultStyle().colorRamp(name)
    if ramp is None:
        ramp = QgsStyle.defaultStyle().colorRamp("Viridis")
    if invert and ramp is not None:
        ramp.invert()
    return ramp


def apply_graduated(layer, field, ramp="Spectral", classes=5, invert=False):
    """Graduated renderer on ``field`` with Jenks natural-breaks classes; returns the renderer."""
    if layer.fields().indexOf(field) < 0:
        return None
    symbol = QgsSymbol.defaultSymbol(layer.geometryType())
    symbol.setOpacity(0.8)
    renderer = QgsGraduatedSymbolRenderer(field)
    renderer.setSourceSymbol(symbol)
    renderer.setSourceColorRamp(_ramp(ramp, invert))
    renderer.setClassificationMethod(QgsClassificationJenks())
    renderer.updateClasses(layer, classes)
    renderer.updateColorRamp(_ramp(ramp, invert))
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return renderer


def apply_raster_ramp(layer, band=1, ramp="Viridis"):
    """Pseudocolour renderer on ``band`` stretched over its min..max; nodata stays transparent."""
    provider = layer.dataProvider()
    stats = provider.bandStatistics(band, QgsRasterBandStats.Min | QgsRasterBandStats.Max)
    lo, hi = stats.minimumValue, stats.maximumValue
    if not (hi > lo):
        hi = lo + 1.0
    fcn = QgsColorRampShader(lo, hi)
    fcn.setSourceColorRamp(_ramp(ramp))
    fcn.setColorRampType(QgsColorRampShader.Interpolated)
    fcn.classifyColorRamp(5, band, layer.extent(), provider)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(fcn)
    renderer = QgsSingleBandPseudoColorRenderer(provider, band, shader)
    renderer.setClassificationMin(lo)
    renderer.setClassificationMax(hi)
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return renderer
