"""classxrf:basemap - an albedo raster or a whole-Moon image as the project's lunar basemap."""
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
)

from ..class_qgis_plugin.choices import LUNAR_CRS
from ..class_qgis_plugin.specs import BasemapParams
from .base import SpecAlgorithm, style_on_load


class BasemapStyle(QgsProcessingLayerPostProcessorInterface):
    """Puts the basemap under the other layers and sets the project's CRS to the plugin's lunar CRS and its
    ellipsoid to the lunar sphere."""

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        from .lunar_project import lunar_ellipsoid
        from .styles import place_at_bottom, style_basemap

        if layer is None or not layer.isValid():
            return
        style_basemap(layer)
        project = context.project()
        if project is not None:
            crs = QgsCoordinateReferenceSystem(LUNAR_CRS)
            if crs.isValid() and project.crs() != crs:
                project.setCrs(crs)
            lunar_ellipsoid(project)  # distances on the 1737.4 km sphere, not on WGS 84 or NaN
            place_at_bottom(project, layer, "basemap")


class BasemapAlgorithm(SpecAlgorithm):
    ALG_NAME = "basemap"
    DISPLAY = "Lunar basemap (albedo / colour image)"
    GROUP = "5 Basemap and export"
    GROUP_ID = "display"
    STEP = "5.1"
    SPEC = BasemapParams
    NEEDS = ("numpy", "rasterio")
    WIDTH, HEIGHT, KIND = "WIDTH", "HEIGHT", "KIND"
    HELP = """<p>Makes the project's <b>basemap</b>: the image every classxrf layer is drawn on, in the plugin's lunar
CRS <b>ESRI:104903</b> (GCS_Moon_2000: latitude and east longitude on the sphere of radius 1737.4 km, the IAU
mean radius), the CRS of every layer the plugin writes: it reads back with its id from GeoTIFF, GeoPackage,
Shapefile and GeoJSON, so QGIS never has to transform between the plugin's layers and the project. The project
CRS must be lunar: transforms between the Moon and Earth CRSs are not defined, so Earth basemaps (OSM, XYZ
tiles) do not apply.</p>
<ul>
<li>An <b>equirectangular image</b> (PNG, JPG, ...) of the whole Moon, twice as wide as tall, e.g. the LROC WAC
colour mosaic <i>lroc_color_poles_1k.jpg</i>: it is georeferenced as a plate carree grid whose edges are the
poles and the 180 deg meridian (pixel column c spans longitude -180 + 360 c / width), written as a tiled,
compressed GeoTIFF. An image whose left edge is at 0 deg longitude (0..360) is rolled to -180..180.</li>
<li>A <b>GeoTIFF</b> (e.g. the simulated albedo, or a mosaic in a lunar CRS) is validated - georeferenced,
degrees of longitude and latitude on a Moon-sized sphere - and copied (or kept, when the output is the same
file). A GeoTIFF without a CRS but with a degree extent, or in another geographic lunar CRS (e.g.
IAU_2015:30100, or a bare +proj=longlat +R=1737400 that QGIS cannot transform), is labelled ESRI:104903 (the same
degrees); a raster in an Earth CRS is refused with a message naming the file.</li>
</ul>
<p>Overviews (averaged, x2, x4, ... down to about 256 pixels) are built so QGIS draws quickly at every scale.
The output is written under a temporary name and moved into place only when complete.</p>
<h3>Outputs</h3>
<p>The basemap GeoTIFF (loaded at the bottom of the layer tree; the project CRS set to ESRI:104903 and the project
ellipsoid to the 1737.4 km sphere, so that the measure tool and the scale bar measure on the Moon), its
width and height in pixels and what was done (georeferenced image, copied or kept GeoTIFF).</p>"""

    def add_own_parameters(self):
        self.addOutput(QgsProcessingOutputNumber(self.WIDTH, "Width (pixels)"))
        self.addOutput(QgsProcessingOutputNumber(self.HEIGHT, "Height (pixels)"))
        self.addOutput(QgsProcessingOutputString(self.KIND, "What was done"))

    def report(self, res, spec, values, context, feedback):
        kind = ("georeferenced image" if res["kind"] == "image" else
                ("copied GeoTIFF" if res["copied"] else "kept GeoTIFF"))
        feedback.pushInfo(f"{kind}: {res['width']} x {res['height']} px, {res['bands']} band(s), extent "
                          f"{res['bounds']}, CRS {res['crs']}, overviews {res['overviews']}")
        style_on_load(context, spec.output, BasemapStyle())
        return dict(spec.outputs(), **{self.WIDTH: res["width"], self.HEIGHT: res["height"], self.KIND: kind})
