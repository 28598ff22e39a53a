"""classxrf:invert - fundamental-parameters inversion of CLASS spectra into wt% of 8 elements."""
from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
)

from .base import ClassXrfAlgorithm, GraduatedStyle, require, run_core, style_on_load

ELEMENTS = ["O", "Na", "Mg", "Al", "Si", "Ca", "Ti", "Fe"]
OXYGEN = ["stoichiometric", "fixed45"]


class InvertAlgorithm(ClassXrfAlgorithm):
    ALG_NAME = "invert"
    DISPLAY = "FP inversion (abundances)"
    GROUP = "2 Spectral analysis"
    GROUP_ID = "analysis"
    HELP = """<p>Inverts every co-added CLASS spectrum of the observation layer into weight percentages of
O, Na, Mg, Al, Si, Ca, Ti and Fe with 1-sigma errors: the job of ISRO's X2ABUNDANCE, without XSPEC.</p>
<h3>Physics</h3>
<ul>
<li>Forward model: primary and secondary fluorescence of a thick, flat, homogeneous target (Shiraiwa and Fujino
1966) for the incident solar spectrum I0(E), incidence angle SOLARANG and emission angle EMISNANG, plus the
Rayleigh and Compton scatter of the solar spectrum; atomic data from xraylib computed once per energy grid;
integration on a fine grid aligned on the absorption edges; folded through the ARF and RMF with the gain read as
XSPEC's <i>gain</i> command does (the response energies move to E/slope - offset; ISRO's X2ABUNDANCE run used slope
1.0043, offset 0.0316 keV).</li>
<li>Normalisation: the count rate is ARF x radiance x the collimator's solid angle. Real CLASS spectra come out
about 3 times fainter than this absolute model (X2ABUNDANCE's empirical scale agrees with the fitted value), so by
default an overall fluorescence norm is fitted with the composition (column fl_norm); untick it only where the
absolute calibration is trusted (e.g. the simulated data set). With a free norm, elements without a line in the
energy range (Fe, Ti below 4.2 keV) are usually not constrained.</li>
<li>Fit: the weight fractions (summing to 100 %, oxygen from the cations' oxide stoichiometry by default or fixed
at 45 wt% as X2ABUNDANCE did) and the scatter normalisation, started from a mare/highland mix, by the Poisson
likelihood (C-stat) of the counts with the exposure-scaled background as a known term, over the chosen energy
range (default 0.9 to 4.2 keV); the scatter continuum is iterated with the fitted composition. Errors from the
Fisher information; chi-square and degrees of freedom are reported too.</li>
<li>Elements the spectrum cannot constrain (for example Fe without an M-class flare: its K edge at 7.11 keV lies
above most of a C-class spectrum) are reported as not constrained (X_ok = 0, X_err empty) instead of a number
with a meaningless error.</li>
</ul>
<h3>Inputs</h3>
<p>The observation layer (co-add output, with solar_file from the solar fit, or a default <b>solar table</b> for all
rows, e.g. ISRO's modelop file), the <b>background</b> PHA, the CLASS <b>RMF</b> and <b>ARF</b>, the energy range and
the gain.</p>
<h3>Outputs</h3>
<p>The observation layer with, per element X, the columns X (wt%), X_err and X_ok, plus chi2, dof, cstat,
converged, n_iter, scat_norm and fl_norm; loaded graduated by the chosen element. Optionally a folder of fit plots (data,
model, residuals).</p>"""

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterVectorLayer(
            "INPUT", "Observation layer", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterFile("RMF", "CLASS RMF"))
        self.addParameter(QgsProcessingParameterFile("ARF", "CLASS ARF"))
        self.addParameter(QgsProcessingParameterFile("BACKGROUND", "Background PHA"))
        self.addParameter(QgsProcessingParameterFile(
            "SOLAR", "Solar table for rows without solar_file (modelop format)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            "E_MIN", "Lowest energy (keV)", type=QgsProcessingParameterNumber.Double, defaultValue=0.9, minValue=0.1))
        self.addParameter(QgsProcessingParameterNumber(
            "E_MAX", "Highest energy (keV)", type=QgsProcessingParameterNumber.Double, defaultValue=4.2, minValue=0.2))
        self.addParameter(QgsProcessingParameterNumber(
            "GAIN_SLOPE", "Gain slope", type=QgsProcessingParameterNumber.Double, defaultValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(
            "GAIN_OFFSET", "Gain offset (keV)", type=QgsProcessingParameterNumber.Double, defaultValue=0.0))
        self.addParameter(QgsProcessingParameterBoolean(
            "FIT_NORM", "Fit the fluorescence normalisation (recommended for real CLASS data)",
            defaultValue=True))
        self.addParameter(QgsProcessingParameterEnum(
            "OXYGEN", "Oxygen", options=OXYGEN, defaultValue="stoichiometric", usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterEnum(
            "STYLE_ELEMENT", "Element to style the layer by", options=ELEMENTS, defaultValue="Fe",
            usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterBoolean("PLOTS", "Write fit plots", defaultValue=False))
        self.addParameter(QgsProcessingParameterFolderDestination(
            "PLOT_FOLDER", "Fit plot folder", optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterVectorDestination(
            "OUTPUT", "Abundance layer", type=QgsProcessing.TypeVectorPolygon))

    def execute(self, parameters, context, feedback, progress):
        require("numpy", "scipy", "astropy", "xraylib", "pyogrio", "shapely")
        layer = self.parameterAsVectorLayer(parameters, "INPUT", context)
        if layer is None:
            raise QgsProcessingException("The observation layer could not be loaded")
        e_lo = self.parameterAsDouble(parameters, "E_MIN", context)
        e_hi = self.parameterAsDouble(parameters, "E_MAX", context)
        if e_hi <= e_lo:
            raise QgsProcessingException(f"Energy range {e_lo}..{e_hi} keV is empty")
        plot_dir = None
        if self.parameterAsBool(parameters, "PLOTS", context):
            plot_dir = self.parameterAsString(parameters, "PLOT_FOLDER", context) or None
            if not plot_dir:
                from qgis.core import QgsProcessingUtils
                plot_dir = QgsProcessingUtils.generateTempFilename("fit_plots")
        oxygen = self.parameterAsEnumString(parameters, "OXYGEN", context)
        out = self.output_path(parameters, "OUTPUT", context, ".gpkg")
        res = run_core("invert", dict(
            layer=layer.source().split("|")[0], out_layer=out,
            rmf=self.parameterAsFile(parameters, "RMF", context),
            arf=self.parameterAsFile(parameters, "ARF", context),
            background=self.parameterAsFile(parameters, "BACKGROUND", context),
            solar=self.parameterAsFile(parameters, "SOLAR", context) or None,
            gain_slope=self.parameterAsDouble(parameters, "GAIN_SLOPE", context),
            gain_offset=self.parameterAsDouble(parameters, "GAIN_OFFSET", context),
            e_range=[e_lo, e_hi], oxygen=45.0 if oxygen == "fixed45" else "stoichiometric",
            fit_norm=self.parameterAsBool(parameters, "FIT_NORM", context), plot_dir=plot_dir), feedback)
        feedback.pushInfo(f"{res['n_converged']}/{res['n']} spectra converged")
        element = self.parameterAsEnumString(parameters, "STYLE_ELEMENT", context)
        style_on_load(context, out, GraduatedStyle(element, ramp="Spectral", invert=True))
        result = {"OUTPUT": out}
        if plot_dir:
            result["PLOT_FOLDER"] = plot_dir
        return result
