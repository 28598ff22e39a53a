"""classxrf:invert - fundamental-parameters inversion of CLASS spectra into wt% of 8 elements."""
from qgis.core import QgsProcessingParameterEnum

from ..class_qgis_plugin.choices import ELEMENTS
from ..class_qgis_plugin.specs import InvertParams
from .base import GraduatedStyle, SpecAlgorithm, style_on_load

#: "auto": the element the fits constrain most often (the stage's best_element)
STYLE_CHOICES = ["auto"] + list(ELEMENTS)


class InvertAlgorithm(SpecAlgorithm):
    ALG_NAME = "invert"
    DISPLAY = "FP inversion (abundances)"
    GROUP = "3 Spectral analysis"
    GROUP_ID = "analysis"
    STEP = "3.2"
    SPEC = InvertParams
    NEEDS = ("numpy", "scipy", "astropy", "xraylib", "pyogrio", "shapely")
    STYLE_ELEMENT = "STYLE_ELEMENT"
    LAYER_STAGE = "invert"
    HELP = """<p>Inverts every co-added CLASS spectrum of the observation layer into weight percentages of
O, Na, Mg, Al, Si, Ca, Ti and Fe with 1-sigma errors: the job of ISRO's X2ABUNDANCE, without XSPEC.</p>
<h3>Response, read as XSPEC reads it</h3>
<p>The RMF's first channel is TLMIN of its F_CHAN column, 1 when that key is absent (the CLASS RMFs carry only a bare
TLMIN = 0, which XSPEC and sherpa do not read: their rows land one channel lower than their F_CHAN says, and
ISRO's gain offset of 0.0316 keV was calibrated on that reading). The ARF is paired with the RMF row by row (the
CLASS ARF's energy labels run one row below the RMF's). The gain follows XSPEC's <i>gain</i> command: the matrix
rows move to E/slope - offset, the effective area stays at the photon's true energy (ISRO's X2ABUNDANCE run used
slope 1.0043, offset 0.0316 keV for the 1024-channel files). The log says what was read this way.</p>
<h3>Fitted gain (XSPEC's gain fit)</h3>
<p>Gain fit: <b>none</b> (the slope and offset given), <b>spectrum</b> (slope and offset fitted for each spectrum,
within 0.95-1.05 and -0.1 to 0.1 keV, starting from the values given) or <b>shared</b> (one slope and offset for
all spectra of the layer, e.g. a day of one detector calibration, maximising their joint likelihood). The
fitted slope and offset and their errors are the columns gain_slope, gain_off, gslope_err, goff_err. The detector
gain drifts over the mission: on 2024 raw 8-s spectra with the 2048-channel RMF the lines need a slope near
0.987 and an offset near 0.026 keV, so fit the gain on real data.</p>
<h3>Physics</h3>
<ul>
<li>Forward model: primary and secondary fluorescence of a thick, flat, homogeneous target (Shiraiwa and Fujino
1966) for each spectrum's own incident solar spectrum I0(E), incidence angle SOLARANG and emission angle EMISNANG,
plus the Rayleigh and Compton scatter of the solar spectrum; atomic data from xraylib computed once per energy
grid; integration on a fine grid aligned on the absorption edges; folded through the ARF and RMF.</li>
<li>Normalisation: the count rate is ARF x radiance x the collimator's solid angle. Real CLASS spectra come out
about 3 times fainter than this absolute model (X2ABUNDANCE's empirical scale agrees with the fitted value), so by
default an overall fluorescence norm is fitted with the composition (column fl_norm); untick it only where the
absolute calibration is trusted (e.g. the simulated data set). With a free norm, elements without a line in the
energy range (Fe, Ti below 4.2 keV) are usually not constrained.</li>
<li>Fit: the weight fractions (summing to 100 %, oxygen from the cations' oxide stoichiometry by default or fixed
at 45 wt% as X2ABUNDANCE did) and the scatter normalisation, started from a mare/highland mix, over the chosen
energy range (default 0.9 to 4.2 keV) with the exposure-scaled background as a known term. Statistic minimised:
<b>cstat</b> (the Poisson likelihood, default: unbiased at low counts) or <b>chi</b> (XSPEC's chi with data
variance, what an XSPEC fit with its default statistic minimises). Both are written: chi2 is XSPEC's chi
(variance = source counts + the scaled background's variance), cstat the Cash statistic. Errors from the
Fisher information.</li>
</ul>
<h3>Fits that did not work say so</h3>
<p>fit_flag and fit_note: 0 ok; 1 a bad row (angles, exposure, counts); 2 an all-zero solar spectrum; 3 a response
that does not cover the energy range; 4 no net counts (less than 3 sigma above the background); 5 not converged;
6 never moved from its start; 7 a poor fit (reduced chi2, XSPEC chi, above 2: XSPEC's <i>error</i> command
refuses errors there). A flagged row has NULL elements. An element the spectrum cannot constrain (for example Fe
without an M-class flare: its K edge at 7.11 keV lies above most of a C-class spectrum) is NULL too (X_ok = 0,
X_err NULL); its prior-dominated value is kept apart in X_prior. Styles therefore never colour noise.</p>
<h3>Outputs</h3>
<p>The observation layer with the abundance and fit columns added (listed below), loaded graduated by the chosen
element (auto: the element constrained in most rows); optionally a folder of fit plots (data, model, residuals).
Rows without solar_file take the default <b>solar table</b> (e.g. ISRO's modelop file).</p>"""

    def add_own_parameters(self):
        self.addParameter(QgsProcessingParameterEnum(
            self.STYLE_ELEMENT, "Element to style the layer by (auto: the one constrained most often)",
            options=STYLE_CHOICES, defaultValue="auto", usesStaticStrings=True))

    def report(self, res, spec, values, context, feedback):
        feedback.pushInfo(f"{res['n_fitted']}/{res['n']} spectra fitted and trusted (fit_flag 0); median reduced "
                          f"chi2 (XSPEC chi) {res['median_redchi']}")
        for note in res["notes"]:
            feedback.pushInfo(f"Response: {note}")
        for what, v in res["flagged"].items():
            feedback.pushWarning(f"{v['n']} spectra flagged {what}, elements NULL (e.g. {v['example']})")
        element = values.get(self.STYLE_ELEMENT) or "auto"
        if element == "auto":
            element = res["best_element"]
        style_on_load(context, spec.out_layer, GraduatedStyle(element, ramp="Spectral", invert=True))
        return spec.outputs()
