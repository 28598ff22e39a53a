"""classxrf:coadd - co-add 8-s CLASS L1 spectra into OGIP PHA files and an observation layer."""
from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
)

from ..class_qgis_plugin.errors import ClassXRFError
from ..class_qgis_plugin.specs import CoaddParams
from .base import GraduatedStyle, SpecAlgorithm, style_on_load


class CoaddAlgorithm(SpecAlgorithm):
    ALG_NAME = "coadd"
    DISPLAY = "Spectrum co-add"
    GROUP = "2 Spectra"
    GROUP_ID = "spectra"
    STEP = "2.1"
    SPEC = CoaddParams
    NEEDS = ("numpy", "astropy", "shapely", "pyogrio")
    OWN = ("inputs",)
    #: the input: a folder, or a list of files
    INPUT, INPUT_FILES = CoaddParams.key("inputs"), "INPUT_FILES"
    NIGHT_BACKGROUND, N_SPECTRA = "NIGHT_BACKGROUND", "N_SPECTRA"
    LAYER_STAGE = "coadd"
    HELP = """<p>Co-adds raw 8-s CLASS L1 spectra (OGIP PHA, 2048 channels) into longer spectra and writes
one OGIP PHA file per co-added spectrum plus an <b>observation layer</b>: one footprint polygon per
co-added spectrum, the thread every later stage (solar fit, inversion, population) reads and extends.</p>
<h3>Rules</h3>
<p>Frames are never co-added across a time gap: a window holds only contiguous frames; EXPOSURE is 8 s
times the frames actually summed and the counts are the exact channel-by-channel sum. Headers follow
ISRO's co-added files (mean SAT_ALT, SOLARANG, PHASEANG, EMISNANG; first/last frame times and corners); the
boresight is the frames' mean direction (right at the poles). The footprint is the union of the frames' footprints,
split at the 180 deg meridian; near the poles (above 70 deg) the union is made on the sphere. Every frame no
spectrum uses is reported with the reason (a gap, a change of channel count, a run shorter than MIN_FRAMES, the
flare filter, corners with no footprint, a duplicate file); two files of the same 8 s with different counts are an
error naming both. The PHA files, the background and the layer are written together or not at all: a cancel or an
error leaves the output folder as it was, and what a killed run left is completed or cleaned by the next run. The layer's CRS is
ESRI:104903 (Moon 2000 sphere), the CRS of every layer the plugin writes: it survives GeoPackage, Shapefile and
GeoJSON round trips.</p>
<h3>Outputs</h3>
<p>A folder of co-added PHA files, the observation layer (GeoPackage or Shapefile by extension; its columns are
listed below), loaded graduated by counts, and optionally the night-side background PHA.</p>"""

    def add_own_parameter(self, f):
        self.addParameter(QgsProcessingParameterFile(
            self.INPUT, f.metadata["label"], behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT_FILES, "Input files (instead of a folder)", layerType=QgsProcessing.TypeFile, optional=True))

    def add_own_parameters(self):
        self.addOutput(QgsProcessingOutputFile(self.NIGHT_BACKGROUND, "Night-side background PHA"))
        self.addOutput(QgsProcessingOutputNumber(self.N_SPECTRA, "Number of co-added spectra"))

    @classmethod
    def own_values(cls, values):
        inputs = values.get(cls.INPUT_FILES) or ([values[cls.INPUT]] if values.get(cls.INPUT) else None)
        if not inputs:
            raise ClassXRFError(None, "give an input folder or a list of CLASS L1 files", key=cls.INPUT)
        return {"inputs": inputs}

    def report(self, res, spec, values, context, feedback):
        feedback.pushInfo(f"{res['n_spectra']} co-added spectra written to {spec.out_folder} "
                          f"({res['n_read']} frames read, {res['n_unused']} not used)")
        for why, v in res["unused"].items():
            feedback.pushWarning(f"{v['n']} frames not used: {why} (e.g. {v['examples'][0]})")
        style_on_load(context, spec.out_layer, GraduatedStyle("counts", ramp="Viridis"))
        return dict(spec.outputs(), **{self.N_SPECTRA: res["n_spectra"], self.NIGHT_BACKGROUND: res["background"]})
