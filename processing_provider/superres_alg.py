"""classxrf:superresolve - the GATv2 + CNN hybrid map of one GIB region at 2 km."""
from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterString,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
)

from .base import ClassXrfAlgorithm, RasterStyle, require, run_core, style_on_load


class SuperResolveAlgorithm(ClassXrfAlgorithm):
    ALG_NAME = "superresolve"
    DISPLAY = "Super-resolve region (GATv2 + CNN)"
    GROUP = "4 Abundance maps"
    GROUP_ID = "maps"
    STEP = "4.2"
    HELP = """<p>The paper's "abundance generalisation": learns, for one region of the 8 x 8 partition, the map
from surface characteristics and position to abundances from the sparse Global Information Bank, and predicts
every 2 km pixel (342 x 682).</p>
<ul>
<li><b>Features</b>: for every pixel, a vector W of albedo statistics over a 12.5 x 12.5 km window (multi-scale
mean, spread, percentiles, gradients, Laplacian and difference of Gaussians, texture), reduced by mRMR; cached per
region. (A ResNet50 extractor with weights from a file is available in the core for GPU users.)</li>
<li><b>Graph</b>: 78 overlapping subgraphs of 100 x 100 pixels with stride 50; each node linked to its top-k nodes by
w = exp(-alpha haversine - beta ||W_i - W_j||^2), beta &gt; alpha.</li>
<li><b>Model</b>: two GATv2Conv layers (edge weight as edge attribute) and three convolutions with max-pooling on the
subgraph's grid, fused into 8 outputs; node input W, mare/highland flag, latitude and longitude (a Fourier encoding
of the position is optional: with it the network competes with the kriging in space, and loses).</li>
<li><b>Training</b>: weighted masked MSE and log losses, feature-similarity and spatial-similarity losses, deviation
from 100 %; two phases, Yogi, cosine annealing, gradient clipping at 1.0, sweeps over the subgraphs in sliding
order; seeded. The MSE and log losses compare each footprint's measured value with the mean of the network's pixels
over that footprint's sub-footprints (read from the GIB's sidecar, <code>gib_r{i}_c{j}.npz</code>): how the GIB splits
a footprint among its sub-footprints is the population's mare/highland prior, not a measurement, and a network
fitted to the GIB pixels learns that prior's contrast instead of the surface's. Without the sidecar (or with
{"footprint_loss": false}) they compare GIB pixels, as the paper does.</li>
<li><b>Hybrid with kriging</b>: the network corrects a classical drift per element (the mean, the 12.5 km albedo
mean, or that plus position, chosen by cross-validation over column blocks of the observed pixels), and the
residuals on the observed pixels are kriged (regression kriging; variogram fitted with 20 lag bins, every observation
up to 4,000 in the system); an element whose GIB-recorded errors make up at least half the variance of its footprints'
residuals is kriged as one value per footprint at the footprint's centre instead (its sub-footprints share one
measurement error, which pixel kriging would copy into the map as along-track structure). 20 % of the observed pixels (whole track strips, by column blocks) are kept out of the
network's training: an element keeps the network's correction only where it lowers the error of those footprints'
means by more than 1 %, otherwise its map is drift + kriging. The training curve's last row says which elements
kept it, and which elements were kriged by footprint. On the simulated benchmark the network, fitted to the
footprints, finds little the drift and the kriging have not already explained (the gate kept a correction in one of
5 hold-out draws): the map is essentially drift + residual kriging, and it beats inverse-distance weighting, ordinary
kriging and kriging with the albedo drift on every element (README, Figures).
{"net_min_gain": 1} in the advanced settings gives drift + residual kriging alone.</li>
</ul>
<h3>Parameters</h3>
<p><b>GIB folder</b> (populate's output) and <b>albedo</b> raster; the <b>region</b> as row i (0 at 90 N) and column j
(0 at 180 W), or an <b>extent</b> in lunar degrees whose centre picks the region; <b>k</b> neighbours (the paper used
100; 16 trains in minutes on a laptop CPU), <b>sweeps</b>, <b>steps per subgraph</b>, <b>seed</b> and the <b>device</b>
(cpu, or cuda where a GPU is present). Advanced: further settings of the core as a JSON object (subgraph stride and
size, number of features, hidden sizes, loss weights, drift, residual kriging, kriging_points, variogram_lags,
net_validation, net_min_gain, footprint_loss, footprint_kriging; unknown names are refused).</p>
<h3>Outputs</h3>
<p>A GeoTIFF of the region in ESRI:104903, one band per element (wt%) and a support band (km to the nearest observed
pixel: large values mean extrapolation), loaded with a colour ramp on the element band with the most valid pixels
(an element never observed is nodata throughout); the training curve as CSV.</p>"""

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            "GIB", "GIB folder", behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterFile("ALBEDO", "Albedo raster / image"))
        self.addParameter(QgsProcessingParameterNumber(
            "REGION_I", "Region row i", type=QgsProcessingParameterNumber.Integer, defaultValue=3,
            minValue=0, maxValue=7))
        self.addParameter(QgsProcessingParameterNumber(
            "REGION_J", "Region column j", type=QgsProcessingParameterNumber.Integer, defaultValue=4,
            minValue=0, maxValue=7))
        self.addParameter(QgsProcessingParameterExtent(
            "EXTENT", "Extent (its centre picks the region; overrides i, j)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            "K", "Top-k neighbours", type=QgsProcessingParameterNumber.Integer, defaultValue=16, minValue=1,
            maxValue=200))
        self.addParameter(QgsProcessingParameterNumber(
            "SWEEPS", "Sweeps over the subgraphs", type=QgsProcessingParameterNumber.Integer, defaultValue=3,
            minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            "STEPS", "Optimiser steps per subgraph", type=QgsProcessingParameterNumber.Integer, defaultValue=8,
            minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            "SEED", "Seed", type=QgsProcessingParameterNumber.Integer, defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            "DEVICE", "Device", options=["cpu", "cuda"], defaultValue="cpu", usesStaticStrings=True))
        extra = QgsProcessingParameterString(
            "SETTINGS", "Further training settings (JSON, e.g. {\"stride\": 50, \"hidden\": 32})", optional=True)
        extra.setFlags(extra.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(extra)
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Super-resolved abundances"))
        self.addParameter(QgsProcessingParameterFileDestination(
            "CURVE", "Training curve", fileFilter="CSV files (*.csv)", optional=True))
        self.addOutput(QgsProcessingOutputNumber("N_OBSERVED", "Observed GIB pixels used"))

    def execute(self, parameters, context, feedback, progress):
        require("numpy", "torch", "torch_geometric", "torch_optimizer", "rasterio")
        i = self.parameterAsInt(parameters, "REGION_I", context)
        j = self.parameterAsInt(parameters, "REGION_J", context)
        extent = None
        if parameters.get("EXTENT"):
            crs = self.parameterAsExtentCrs(parameters, "EXTENT", context)
            if crs.isValid() and not crs.isGeographic():
                raise QgsProcessingException(f"The extent must be in a lunar geographic CRS (got {crs.authid()})")
            e = self.parameterAsExtent(parameters, "EXTENT", context)
            extent = [e.xMinimum(), e.yMinimum(), e.xMaximum(), e.yMaximum()]   # the core picks the region
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        if not out.lower().endswith((".tif", ".tiff")):
            raise QgsProcessingException(f"{out}: the output must be a GeoTIFF (.tif)")
        curve = self.parameterAsFileOutput(parameters, "CURVE", context) or None
        settings = {}
        text = self.parameterAsString(parameters, "SETTINGS", context).strip()
        if text:
            import json
            try:
                settings = json.loads(text)
            except ValueError as exc:
                raise QgsProcessingException(f"SETTINGS is not valid JSON: {exc}") from exc
            if not isinstance(settings, dict):
                raise QgsProcessingException("SETTINGS must be a JSON object of setting names and values")
        settings.update(k=self.parameterAsInt(parameters, "K", context),
                        sweeps=self.parameterAsInt(parameters, "SWEEPS", context),
                        steps_per_subgraph=self.parameterAsInt(parameters, "STEPS", context),
                        seed=self.parameterAsInt(parameters, "SEED", context))
        feedback.pushInfo(f"region ({i}, {j})")
        res = run_core("superresolve", dict(
            gib=self.parameterAsFile(parameters, "GIB", context),
            albedo=self.parameterAsFile(parameters, "ALBEDO", context), region=[i, j], extent=extent, output=out,
            curve_output=curve, settings=settings,
            device=self.parameterAsEnumString(parameters, "DEVICE", context)), feedback)
        # the element band with the most valid pixels (an element never observed is nodata throughout)
        style_on_load(context, out, RasterStyle("most_values", ramp="Spectral"))
        result = {"OUTPUT": out, "N_OBSERVED": res["n_observed"]}
        if curve:
            result["CURVE"] = curve
        return result
