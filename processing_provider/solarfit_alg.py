"""classxrf:solarfit - the incident solar spectrum I0(E) of every observation, from XSM data."""
from qgis.core import QgsProcessingParameterFile

from ..class_qgis_plugin.errors import ClassXRFError
from ..class_qgis_plugin.specs import SolarFitParams
from .base import GraduatedStyle, SpecAlgorithm, style_on_load


class SolarFitAlgorithm(SpecAlgorithm):
    ALG_NAME = "solarfit"
    DISPLAY = "Solar fit (XSM)"
    GROUP = "3 Spectral analysis"
    GROUP_ID = "analysis"
    STEP = "3.1"
    SPEC = SolarFitParams
    NEEDS = ("numpy", "scipy", "astropy", "pyogrio", "shapely")
    OWN = ("xsm",)
    #: the XSM data: a folder of type I spectra, or one file
    XSM_FOLDER, XSM_FILE = "XSM_FOLDER", "XSM_FILE"
    LAYER_STAGE = "solarfit"
    HELP = """<p>Fits the solar X-ray spectrum that lit each observation from Chandrayaan-2 XSM data, without
HEASoft: the incident spectrum I0(E) the FP inversion needs.</p>
<ul>
<li><b>XSM data</b>: a folder of type I spectra (the one whose TSTART..TSTOP overlaps each observation most is used),
a type II level-2 file (the rows of each observation's time window are summed, weighted by their overlap with
the window and the GTI: the xsmgenspec step), or one spectrum for all observations. Times: MET with MJDREF from
the header, converted with astropy.</li>
<li><b>Response</b>: the RMF you give, else an approximate one built from the ARF's energy grid, the PI scale
(0.5 keV + channel/30) and the XSM detector's resolution (FWHM 180 eV at 5.9 keV, Fano form); the fit output
says which was used.</li>
<li><b>Model</b>: optically thin thermal plasma (free-free with the Born Gaunt factor, free-bound after Mewe et al.
1986, two-photon) with coronal abundances (Feldman 1992), line complexes of Mg XI, Mg XII, Si XIII, Si XIV, S XV,
S XVI, Ar XVII, Ca XIX, Ca XX, Fe XXV and Fe XXVI at fixed energies and free strengths, plus a power law; optionally
two temperatures. Fitted over 1.2 to 7.2 keV by the Poisson likelihood (C-stat) with errors from the Fisher
matrix.</li>
<li><b>Flare class</b> from the model's 1-8 Angstrom flux (GOES convention A, B, C, M, X).</li>
</ul>
<h3>Outputs</h3>
<p>A folder with, per observation, the I0(E) table (photons cm^-2 s^-1 keV^-1 on a 0.01 keV grid from 0.1 keV, the
format of ISRO's modelop files), a JSON of the fitted parameters, errors and statistic, and a fit plot on request;
the observation layer with the solar columns added (below), loaded graduated by the GOES flux (legend in GOES classes, e.g. C1.88); where every
observation had the same flux, by the temperature, then the emission measure; a field that does not vary at all
gets one class labelled with its value.</p>"""

    def add_own_parameter(self, f):
        self.addParameter(QgsProcessingParameterFile(
            self.XSM_FOLDER, "Folder of XSM type I spectra", behavior=QgsProcessingParameterFile.Folder,
            optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.XSM_FILE, "XSM file (type II level-2, or one type I spectrum)", optional=True))

    @classmethod
    def own_values(cls, values):
        xsm = values.get(cls.XSM_FILE) or values.get(cls.XSM_FOLDER)
        if not xsm:
            raise ClassXRFError(None, "give an XSM folder or an XSM file", key=cls.XSM_FOLDER)
        return {"xsm": xsm}

    def report(self, res, spec, values, context, feedback):
        if res["n_missing"]:
            feedback.reportError(f"{res['n_missing']} observation(s) have no XSM data in their time window",
                                 fatalError=False)
        # the GOES flux, or where every observation had the same flux the temperature, then the
        # emission measure (a field that does not vary gets one labelled class)
        style_on_load(context, spec.out_layer, GraduatedStyle(("goes_flux", "sol_T_MK", "sol_EM"), ramp="Reds"))
        return spec.outputs()
