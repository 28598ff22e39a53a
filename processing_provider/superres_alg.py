"""classxrf:superresolve - the GATv2 + CNN hybrid map of one GIB region at 2 km."""
from qgis.core import QgsProcessingOutputNumber

from ..class_qgis_plugin.specs import SuperResParams
from .base import RasterStyle, SpecAlgorithm, style_on_load


class SuperResolveAlgorithm(SpecAlgorithm):
    ALG_NAME = "superresolve"
    DISPLAY = "Super-resolve region (GATv2 + CNN)"
    GROUP = "4 Abundance maps"
    GROUP_ID = "maps"
    STEP = "4.2"
    SPEC = SuperResParams
    NEEDS = ("numpy", "torch", "torch_geometric", "torch_optimizer", "rasterio")
    N_OBSERVED = "N_OBSERVED"
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
{"net_min_gain": 1} in the advanced settings gives drift + residual kriging alone. After the first of the three
sweeps the gate is tried on the network so far: when it keeps no element's correction, training stops there
(the map is then drift + kriging, as the full training's gate would give unless a correction passed only later);
{"gate_probe": 0} trains every sweep.</li>
</ul>
<h3>Outputs</h3>
<p>A GeoTIFF of the region in ESRI:104903, one band per element (wt%) and a support band (km to the nearest observed
pixel: large values mean extrapolation), loaded with a colour ramp on the element band with the most valid pixels
(an element never observed is nodata throughout); the training curve as CSV.</p>"""

    def add_own_parameters(self):
        self.addOutput(QgsProcessingOutputNumber(self.N_OBSERVED, "Observed GIB pixels used"))

    def report(self, res, spec, values, context, feedback):
        feedback.pushInfo(f"region ({res['region'][0]}, {res['region'][1]}): {res['n_observed']} observed pixels, "
                          f"{res['n_steps']} training steps")
        # the element band with the most valid pixels (an element never observed is nodata throughout)
        style_on_load(context, spec.output, RasterStyle("most_values", ramp="Spectral"))
        return dict(spec.outputs(), **{self.N_OBSERVED: res["n_observed"]})
