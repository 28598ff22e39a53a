"""classxrf:simulate - the synthetic CLASS data set with known truth (the embedded default)."""
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingOutputFile,
    QgsProcessingOutputFolder,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
)

from ..class_qgis_plugin.specs import SimulateParams
from .base import RasterStyle, SpecAlgorithm, style_on_load


class SimulateAlgorithm(SpecAlgorithm):
    ALG_NAME = "simulate"
    DISPLAY = "Simulate a CLASS data set (known truth)"
    GROUP = "1 Data"
    GROUP_ID = "data"
    STEP = "1.1"
    SPEC = SimulateParams
    NEEDS = ("numpy", "scipy", "astropy", "xraylib", "rasterio", "shapely")
    #: outputs: the summary's keys -> (output key, kind, description)
    RESULTS = (("albedo", "ALBEDO", QgsProcessingOutputRasterLayer, "Albedo"),
               ("truth", "TRUTH", QgsProcessingOutputRasterLayer, "Truth abundance (wt%)"),
               ("frames", "FRAMES", QgsProcessingOutputFolder, "Folder of 8-s CLASS L1 frames"),
               ("xsm", "XSM", QgsProcessingOutputFolder, "Folder of XSM spectra"),
               ("rmf", "RMF_OUT", QgsProcessingOutputFile, "RMF"),
               ("arf", "ARF_OUT", QgsProcessingOutputFile, "ARF"),
               ("background", "BACKGROUND", QgsProcessingOutputFile, "Background PHA"),
               ("solar", "SOLAR", QgsProcessingOutputFile, "Solar spectrum table"),
               ("n_frames", "N_FRAMES", QgsProcessingOutputNumber, "Number of frames"))
    HELP = """<p>Makes a synthetic but physically modelled CLASS data set with known truth, so that every
other stage of the chain runs with no download. It is the plugin's embedded default.</p>
<ul>
<li>An <b>albedo</b> GeoTIFF of one GIB region (342 x 682 pixels of about 2 km, ESRI:104903) with dark
mare and bright highland units, and the <b>truth abundance</b> GeoTIFF (8 bands, wt% of O, Na, Mg, Al, Si,
Ca, Ti, Fe): mixtures of the mean mare and highland soils (Lunar Sourcebook Table 7.15; Prettyman et al.
2006) with correlated variations; oxygen by oxide stoichiometry; bands sum to 100.</li>
<li>Near-polar <b>orbit tracks</b> of 8-s frames: footprints 12.5 km across and along track, 12 frames
spanning about 100 km (the paper's co-added footprint), with a few frames dropped as in real data.</li>
<li><b>Solar flares</b> of the chosen GOES classes (an optically thin thermal spectrum per class), written as
solar tables in the format of ISRO's modelop files.</li>
<li><b>8-s CLASS L1 spectra</b> (OGIP PHA, 2048 channels, CLASS header keys) drawn with Poisson noise from the
fundamental-parameters forward model of each footprint's true composition plus the instrument background,
a CLASS-like RMF/ARF (or the real ones when given) and a long night-side background PHA.</li>
<li><b>XSM spectra</b> of the same flares (one per track, 512 PI channels) so that the solar fit runs on the set.</li>
</ul>
<h3>Outputs</h3>
<p>The output folder (class_l1/ with the frames, xsm/ with one XSM spectrum per track and its ARF, response/,
background.pha, solar/ with the true I0 tables, frames.csv with the truth of every frame), the albedo and truth
rasters (loaded with a colour ramp at the bottom of the layer tree, above the basemap: references, never over the
maps), and the paths the next stages need (frames folder, RMF, ARF, background, solar table).</p>"""

    def add_own_parameters(self):
        for _, key, kind, label in self.RESULTS:
            self.addOutput(kind(key, label))

    def report(self, res, spec, values, context, feedback):
        albedo, truth = res["albedo"], res["truth"]
        for path, name in ((albedo, "Simulated albedo"), (truth, "Simulated truth (wt%)")):
            context.addLayerToLoadOnCompletion(path, QgsProcessingContext.LayerDetails(name, context.project(), name))
        # references, not the map: at the bottom of the layer tree (above the basemap, truth above albedo)
        style_on_load(context, albedo, RasterStyle(1, ramp="Greys", bottom_rank="albedo"))
        style_on_load(context, truth, RasterStyle(3, ramp="Viridis", bottom_rank="truth"))
        return dict(spec.outputs(), **{key: res[name] for name, key, _, _ in self.RESULTS})
