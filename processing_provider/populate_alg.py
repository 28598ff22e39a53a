"""classxrf:populate - track population into the Global Information Bank (GIB)."""
from qgis.core import QgsProcessingOutputNumber, QgsProcessingOutputString

from ..class_qgis_plugin.choices import STYLE_PREFERENCE
from ..class_qgis_plugin.specs import PopulateParams
from .base import GraduatedStyle, SpecAlgorithm, style_on_load


class PopulateAlgorithm(SpecAlgorithm):
    ALG_NAME = "populate"
    DISPLAY = "Track population (GIB)"
    GROUP = "4 Abundance maps"
    GROUP_ID = "maps"
    STEP = "4.1"
    SPEC = PopulateParams
    NEEDS = ("numpy", "rasterio", "shapely", "pyogrio")
    N_SUB, REGIONS = "N_SUB", "REGIONS"
    HELP = """<p>Splits every inverted footprint into sub-footprints along its track and fills the
<b>Global Information Bank</b> (GIB), the paper's "abundance population" step.</p>
<ul>
<li>Each footprint (its polygon in the abundance layer) is cut into equal squares of its width along its length:
a 12.5 x 100 km strip gives 8 sub-footprints of 12.5 x 12.5 km, shorter co-adds fewer. Polar and
180-deg-crossing footprints are handled on the sphere's tangent plane; every footprint that is skipped is reported
with its reason.</li>
<li>Each sub-footprint is classed mare or highland from the <b>albedo</b> raster (Otsu's threshold on log albedo,
pixels weighted by cos(latitude)), an equirectangular image covering -180..180, -90..90, or a polygon layer of mare units.</li>
<li>The paper's problem, minimise ||A B - D||_F^2 subject to the mean of the sub-footprints equalling the footprint
(mass balance) and C &gt;= 0, with D the mean mare or highland soil (Lunar Sourcebook Table 7.15; Prettyman et al.
2006), is solved <i>exactly</i>: per element it is the Euclidean projection of the priors onto
{c &gt;= 0, sum c = n a}, c = max(d - tau, 0) (Held, Wolfe and Crowder 1974), batched over all footprints.
The <b>prior</b> D of a sub-footprint is by default the mean composition given its mare fraction (f MARE + (1 - f)
HIGHLAND, which treats sub-footprints straddling a contact as mixtures); <i>binary</i> is the paper's choice, the
mare mean where f &gt;= 0.5, else the highland mean.</li>
<li>Sub-footprint values land on the 2 km pixel holding their centre in the region rasters of the 8 x 8 partition
(342 x 682 pixels per region); several observations of a pixel are combined by inverse-variance weighting.</li>
</ul>
<p>The GIB folder holds one GeoTIFF per region (<i>gib_r{i}_c{j}.tif</i>, ESRI:104903: bands O..Fe in wt%, their
1-sigma errors, and the observation count), exact sidecars and a ledger so that re-running with the same inputs
changes nothing and new observations update only the pixels they touch.</p>
<h3>Outputs</h3><p>The GIB folder, the point layer of this run's sub-footprints (graduated by the element with the
most values: an element the inversion could not constrain, often Fe, is NULL throughout),
the number of sub-footprints and the regions touched.</p>"""

    def add_own_parameters(self):
        self.addOutput(QgsProcessingOutputNumber(self.N_SUB, "Sub-footprints populated"))
        self.addOutput(QgsProcessingOutputString(self.REGIONS, "Regions touched (i,j)"))

    def report(self, summary, spec, values, context, feedback):
        for obs, reason in summary["skipped"]:
            feedback.reportError(f"footprint {obs} skipped: {reason}", fatalError=False)
        for note in summary.get("element_notes", {}).values():
            feedback.pushWarning(note)
        feedback.pushInfo(f"{summary['sub_footprints']} sub-footprints from {summary['populated']} footprints; "
                          f"{summary['already_in_gib']} already in the GIB; regions {summary['regions_touched']}")
        # the element with the most values (an unconstrained element, often Fe, is NULL throughout)
        style_on_load(context, spec.points_output, GraduatedStyle(STYLE_PREFERENCE, ramp="Spectral", invert=True,
                                                                  pick="most_values"))
        return dict(spec.outputs(), **{self.N_SUB: summary["sub_footprints"],
                                       self.REGIONS: ";".join(f"{i},{j}" for i, j in summary["regions_touched"])})
