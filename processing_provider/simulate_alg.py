"""classxrf:simulate - the synthetic CLASS data set with known truth (the embedded default)."""
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingOutputFile,
    QgsProcessingOutputFolder,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
)

from .base import ClassXrfAlgorithm, RasterStyle, require, run_core, style_on_load

FLARE_CLASSES = ["A", "B", "C", "M", "X"]


class SimulateAlgorithm(ClassXrfAlgorithm):
    ALG_NAME = "simulate"
    DISPLAY = "Simulate a CLASS data set (known truth)"
    GROUP = "1 Data"
    GROUP_ID = "data"
    STEP = "1.1"
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
<h3>Parameters</h3>
<p><b>Seed</b> (same seed, same files), <b>region</b> row i (0 at 90N) and column j (0 at 180W) of the 8 x 8
partition, <b>number of tracks</b>, <b>flare class</b>, optional real <b>RMF/ARF</b>.</p>
<h3>Outputs</h3>
<p>The output folder (class_l1/ with the frames, xsm/ with one XSM spectrum per track and its ARF, response/,
background.pha, solar/ with the true I0 tables, frames.csv with the truth of every frame), the albedo and truth
rasters (loaded with a colour ramp at the bottom of the layer tree, above the basemap: references, never over the
maps), and the paths the next stages need (frames folder, RMF, ARF, background, solar table).</p>"""

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterNumber(
            "SEED", "Random seed", type=QgsProcessingParameterNumber.Integer, defaultValue=42))
        self.addParameter(QgsProcessingParameterNumber(
            "REGION_I", "Region row i (0 = 67.5..90 N)", type=QgsProcessingParameterNumber.Integer,
            defaultValue=3, minValue=0, maxValue=7))
        self.addParameter(QgsProcessingParameterNumber(
            "REGION_J", "Region column j (0 = 180..135 W)", type=QgsProcessingParameterNumber.Integer,
            defaultValue=4, minValue=0, maxValue=7))
        self.addParameter(QgsProcessingParameterNumber(
            "TRACKS", "Number of orbit tracks", type=QgsProcessingParameterNumber.Integer, defaultValue=24,
            minValue=1, maxValue=400))
        self.addParameter(QgsProcessingParameterEnum(
            "FLARE_CLASS", "Flare class", options=FLARE_CLASSES, defaultValue="C", usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterFile("RMF", "Real CLASS RMF (optional)", optional=True))
        self.addParameter(QgsProcessingParameterFile("ARF", "Real CLASS ARF (optional)", optional=True))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", "Output folder"))
        self.addOutput(QgsProcessingOutputRasterLayer("ALBEDO", "Albedo"))
        self.addOutput(QgsProcessingOutputRasterLayer("TRUTH", "Truth abundance (wt%)"))
        self.addOutput(QgsProcessingOutputFolder("FRAMES", "Folder of 8-s CLASS L1 frames"))
        self.addOutput(QgsProcessingOutputFolder("XSM", "Folder of XSM spectra"))
        self.addOutput(QgsProcessingOutputFile("RMF_OUT", "RMF"))
        self.addOutput(QgsProcessingOutputFile("ARF_OUT", "ARF"))
        self.addOutput(QgsProcessingOutputFile("BACKGROUND", "Background PHA"))
        self.addOutput(QgsProcessingOutputFile("SOLAR", "Solar spectrum table"))
        self.addOutput(QgsProcessingOutputNumber("N_FRAMES", "Number of frames"))

    def execute(self, parameters, context, feedback, progress):
        require("numpy", "scipy", "astropy", "xraylib", "rasterio", "shapely")
        klass = self.parameterAsEnumString(parameters, "FLARE_CLASS", context)
        folder = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        res = run_core("simulate", dict(
            folder=folder, seed=self.parameterAsInt(parameters, "SEED", context),
            region=[self.parameterAsInt(parameters, "REGION_I", context),
                    self.parameterAsInt(parameters, "REGION_J", context)],
            tracks=self.parameterAsInt(parameters, "TRACKS", context), flare_class=klass,
            rmf=self.parameterAsFile(parameters, "RMF", context) or None,
            arf=self.parameterAsFile(parameters, "ARF", context) or None), feedback)
        albedo, truth = res["albedo"], res["truth"]
        for path, name in ((albedo, "Simulated albedo"), (truth, "Simulated truth (wt%)")):
            context.addLayerToLoadOnCompletion(path, QgsProcessingContext.LayerDetails(name, context.project(), name))
        # references, not the map: at the bottom of the layer tree (above the basemap, truth above albedo)
        style_on_load(context, albedo, RasterStyle(1, ramp="Greys", bottom_rank="albedo"))
        style_on_load(context, truth, RasterStyle(3, ramp="Viridis", bottom_rank="truth"))
        return {"OUTPUT_FOLDER": folder, "ALBEDO": albedo, "TRUTH": truth, "FRAMES": res["frames"], "XSM": res["xsm"],
                "RMF_OUT": res["rmf"], "ARF_OUT": res["arf"], "BACKGROUND": res["background"],
                "SOLAR": res["solar"], "N_FRAMES": res["n_frames"]}
