"""classxrf:coadd - co-add 8-s CLASS L1 spectra into OGIP PHA files and an observation layer."""
from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from .base import ClassXrfAlgorithm, GraduatedStyle, require, run_core, style_on_load

STRATEGIES = ["sliding", "running", "combined"]


class CoaddAlgorithm(ClassXrfAlgorithm):
    ALG_NAME = "coadd"
    DISPLAY = "Spectrum co-add"
    GROUP = "2 Spectra"
    GROUP_ID = "spectra"
    STEP = "2.1"
    HELP = """<p>Co-adds raw 8-s CLASS L1 spectra (OGIP PHA, 2048 channels) into longer spectra and writes
one OGIP PHA file per co-added spectrum plus an <b>observation layer</b>: one footprint polygon per
co-added spectrum, the thread every later stage (solar fit, inversion, population) reads and extends.</p>
<h3>Parameters</h3>
<ul>
<li><b>Input folder</b> / <b>Input files</b>: a folder searched (recursively) for CLASS L1 FITS files, or a list of files.</li>
<li><b>Strategy</b>: <i>sliding</i> windows of a fixed number of frames moved by the stride;
<i>running</i> check: frames are added until a fit of three Gaussians and a continuum to the running
sum reaches a reduced chi-square in [0.8, 2] (the paper's criterion); <i>combined</i>: sliding windows
extended by the running check when they are not yet good enough.</li>
<li><b>Window</b>: frames per window (12 frames = 96 s, ISRO's convention). <b>Stride</b>: frames between window starts.
<b>Fewest frames</b> (MIN_FRAMES): a run of contiguous frames shorter than the window still gives one spectrum when
it has at least this many frames (0: the window; 1: every frame is a valid spectrum with its true exposure).</li>
<li><b>Flare catalogue</b> (optional): the XSM flare list CSV (e.g. SD-CH2.csv); only frames inside flares of the
<b>allowed classes</b> (default B, C, M) are co-added.</li>
<li><b>RMF / ARF / background</b> (optional): file names written as RESPFILE, ANCRFILE and BACKFILE.</li>
<li><b>Build night-side background</b>: when no background file is given, also co-add all frames with
SOLARANG &gt; 90 deg into <i>background_night.pha</i> in the output folder (named in every BACKFILE).</li>
</ul>
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
<p>A folder of co-added PHA files, the observation layer (GeoPackage or Shapefile by extension; columns
obs_id, pha_path, t_start, t_end, t_mid, exposure, n_frames, counts, solar_ang, emis_ang, phase_ang,
sat_alt, bore_lat, bore_lon, chi2_red of the running check), loaded graduated by counts, and optionally the
background PHA.</p>"""

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            "INPUT", "Input folder of 8-s CLASS L1 files", behavior=QgsProcessingParameterFile.Folder,
            optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "INPUT_FILES", "Input files (instead of a folder)", layerType=QgsProcessing.TypeFile,
            optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            "STRATEGY", "Strategy", options=STRATEGIES, defaultValue="sliding", usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterNumber(
            "WINDOW", "Window (frames of 8 s)", type=QgsProcessingParameterNumber.Integer, defaultValue=12,
            minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            "STRIDE", "Stride (frames)", type=QgsProcessingParameterNumber.Integer, defaultValue=1, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            "MIN_FRAMES", "Fewest frames of a run shorter than the window (0: the window; 1: every frame)",
            type=QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "FLARE_CATALOG", "XSM flare catalogue (CSV)", extension="csv", optional=True))
        self.addParameter(QgsProcessingParameterString(
            "FLARE_CLASSES", "Allowed flare classes", defaultValue="B,C,M"))
        self.addParameter(QgsProcessingParameterFile("RESPFILE", "CLASS RMF (RESPFILE)", optional=True))
        self.addParameter(QgsProcessingParameterFile("ANCRFILE", "CLASS ARF (ANCRFILE)", optional=True))
        self.addParameter(QgsProcessingParameterFile("BACKFILE", "Background PHA (BACKFILE)", optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            "BUILD_BACKGROUND", "Build a night-side background (SOLARANG > 90 deg)", defaultValue=False))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", "Co-added PHA folder"))
        self.addParameter(QgsProcessingParameterVectorDestination(
            "OUTPUT", "Observation layer", type=QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputFile("BACKGROUND", "Night-side background PHA"))
        self.addOutput(QgsProcessingOutputNumber("N_SPECTRA", "Number of co-added spectra"))

    def execute(self, parameters, context, feedback, progress):
        require("numpy", "astropy", "shapely", "pyogrio")
        folder = self.parameterAsFile(parameters, "INPUT", context)
        files = [f for f in self.parameterAsFileList(parameters, "INPUT_FILES", context) if f]
        if not folder and not files:
            raise QgsProcessingException("Give an input folder or a list of CLASS L1 files")
        classes = [c.strip().upper() for c in
                   self.parameterAsString(parameters, "FLARE_CLASSES", context).split(",") if c.strip()]
        out_folder = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        out_layer = self.output_path(parameters, "OUTPUT", context, ".gpkg")
        res = run_core("coadd", dict(
            inputs=files if files else folder, out_folder=out_folder, out_layer=out_layer,
            strategy=self.parameterAsEnumString(parameters, "STRATEGY", context),
            window=self.parameterAsInt(parameters, "WINDOW", context),
            stride=self.parameterAsInt(parameters, "STRIDE", context),
            flare_catalog=self.parameterAsFile(parameters, "FLARE_CATALOG", context) or None,
            allowed_classes=classes,
            respfile=self.parameterAsFile(parameters, "RESPFILE", context) or None,
            ancrfile=self.parameterAsFile(parameters, "ANCRFILE", context) or None,
            backfile=self.parameterAsFile(parameters, "BACKFILE", context) or None,
            make_background=self.parameterAsBool(parameters, "BUILD_BACKGROUND", context),
            min_frames=self.parameterAsInt(parameters, "MIN_FRAMES", context) or None), feedback)
        feedback.pushInfo(f"{res['n_spectra']} co-added spectra written to {out_folder} "
                          f"({res['n_read']} frames read, {res['n_unused']} not used)")
        for why, v in res["unused"].items():
            feedback.pushWarning(f"{v['n']} frames not used: {why} (e.g. {v['examples'][0]})")
        style_on_load(context, out_layer, GraduatedStyle("counts", ramp="Viridis"))
        return {"OUTPUT": out_layer, "OUTPUT_FOLDER": out_folder, "N_SPECTRA": res["n_spectra"],
                "BACKGROUND": res["background"]}
