"""classxrf:archive - the mission archive day by day on a Dask cluster, resumable, then the GIB."""
from qgis.core import QgsProcessingOutputFolder, QgsProcessingOutputNumber, QgsProcessingParameterFile

from ..class_qgis_plugin.errors import ClassXRFError
from ..class_qgis_plugin.specs import ArchiveParams
from .base import SpecAlgorithm


class ArchiveAlgorithm(SpecAlgorithm):
    ALG_NAME = "archive"
    DISPLAY = "Mission archive (Dask, resumable)"
    GROUP = "6 Models"
    GROUP_ID = "models"
    STEP = "6.2"
    SPEC = ArchiveParams
    NEEDS = ("numpy", "scipy", "astropy", "shapely", "pyogrio", "rasterio")   # Dask: checked when used
    OWN = ("inputs", "xsm")
    INPUT = ArchiveParams.key("inputs")
    XSM_FOLDER, XSM_FILE = "XSM_FOLDER", "XSM_FILE"
    GIB, N_DONE, N_FAILED = "GIB", "N_DONE", "N_FAILED"
    HELP = """<p>Runs the whole archive: every day of a folder tree of CLASS L1 data through <b>spectrum
co-add</b>, <b>solar fit</b> and <b>FP inversion</b> (the same stages as the single-folder algorithms, with their
defaults), then <b>track population</b> of the GIB from all days in date order.</p>
<ul>
<li><b>Days</b>: folders named YYYYMMDD holding 8-s L1 FITS files, and zip files whose name carries the date (as
PRADAN ships them), anywhere under the input folder; zipped days are extracted into the workspace.</li>
<li><b>Where it runs</b>: by default a Dask <i>LocalCluster</i> on this machine (worker processes from the cores,
one thread each; the dashboard link is in the log); a scheduler address (tcp://host:8786) sends the days to a
cluster (dask-jobqueue on SLURM: see the README); <i>serial</i> runs the days one after another. A worker lost
mid-day has its day rerun on another.</li>
<li><b>Resumable</b>: the workspace's <i>manifest.json</i> records every day done (its counts and layer) or
failed (with the reason). Run it again in the same workspace and only what is missing runs: a day a cancelled or
killed run left half-written is redone from nothing, a failed day is tried again, the GIB is extended with the new
days (or rebuilt when one falls before its last day), so the result is always that of one serial run over the same
days. A day that fails is reported and the others go on.</li>
<li><b>Co-add</b>: windows of WINDOW frames moved by STRIDE (by default 12 and 12: 96-s spectra that do not
overlap), with the flare catalogue's filter when one is given.</li>
</ul>
<h3>Outputs</h3><p>The workspace: <i>days/YYYYMMDD/</i> with each day's observation, solar and abundance layers,
co-added spectra and solar fits; <i>gib/</i>, the GIB; <i>manifest.json</i>. The number of days done and
failed.</p>"""

    def add_own_parameter(self, f):
        if f.name == "inputs":
            self.addParameter(QgsProcessingParameterFile(self.INPUT, f.metadata["label"],
                                                         behavior=QgsProcessingParameterFile.Folder))
        else:
            self.addParameter(QgsProcessingParameterFile(
                self.XSM_FOLDER, "Folder of XSM type I spectra", behavior=QgsProcessingParameterFile.Folder,
                optional=True))
            self.addParameter(QgsProcessingParameterFile(
                self.XSM_FILE, "XSM file (type II level-2, or one type I spectrum)", optional=True))

    def add_own_parameters(self):
        self.addOutput(QgsProcessingOutputFolder(self.GIB, "GIB folder"))
        self.addOutput(QgsProcessingOutputNumber(self.N_DONE, "Days done"))
        self.addOutput(QgsProcessingOutputNumber(self.N_FAILED, "Days failed"))

    @classmethod
    def own_values(cls, values):
        xsm = values.get(cls.XSM_FILE) or values.get(cls.XSM_FOLDER)
        if not xsm:
            raise ClassXRFError(None, "give an XSM folder or an XSM file", key=cls.XSM_FOLDER)
        if not values.get(cls.INPUT):
            raise ClassXRFError(None, "give the folder of CLASS L1 days", key=cls.INPUT)
        return {"inputs": [values[cls.INPUT]], "xsm": xsm}

    def report(self, res, spec, values, context, feedback):
        if res.get("dashboard"):
            feedback.pushInfo(f"Dask dashboard (while it ran): {res['dashboard']}")
        feedback.pushInfo(f"{res['n_days']} days: {len(res['ran'])} run now, {len(res['skipped'])} done before, "
                          f"{len(res['failed'])} failed; the GIB holds {len(res['gib_days'])} days")
        for day, reason in res["failed"].items():
            feedback.reportError(f"day {day} failed: {reason}", fatalError=False)
        return {ArchiveParams.key("workspace"): res["workspace"], self.GIB: res["gib"],
                self.N_DONE: len(res["ran"]) + len(res["skipped"]), self.N_FAILED: len(res["failed"])}
