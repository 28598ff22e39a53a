"""classxrf:archive - the mission archive day by day on a Dask cluster, resumable, then the GIB."""
import math
import os

from qgis.core import (QgsProcessingContext, QgsProcessingOutputFolder, QgsProcessingOutputNumber,
                       QgsProcessingParameterFile)

from ..class_qgis_plugin.errors import ClassXRFError
from ..class_qgis_plugin.specs import ArchiveParams
from .base import RasterStyle, SpecAlgorithm, style_on_load


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
    GIB, MOSAIC, N_DONE, N_FAILED = "GIB", "MOSAIC", "N_DONE", "N_FAILED"
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
<li><b>Super-resolution and mosaic</b> (SUPERRES, on by default): every region of the GIB super-resolved as in
<i>super-resolve region</i>, one task each, on its grid grown by a <b>halo</b> of HALO_PX pixels filled with its
neighbours' GIB pixels and footprints, so both sides of a border see the same data; the regions are then
cross-faded over the borders (weights falling linearly from 1 to 0 over twice the halo) into one
<b>cloud-optimised GeoTIFF per element</b> (DEFLATE, overviews, ESRI:104903) over the regions mapped (the whole
Moon when all 64 are). The kriging treats the variogram's nugget as measurement noise, so observed pixels are not
left as dots. The log gives the seam ratio per element: the mean step across region borders over the mean step
between neighbouring pixels inside the regions (1: seamless; regions mapped alone step 5 to 190 times more on the
simulated set). A region is redone when the GIB's days or the training settings change.</li>
</ul>
<h3>Outputs</h3><p>The workspace: <i>days/YYYYMMDD/</i> with each day's observation, solar and abundance layers,
co-added spectra and solar fits; <i>gib/</i>, the GIB; <i>superres/</i>, each region's map; <i>mosaic/</i>, the
COGs (loaded with each element's colour ramp); <i>manifest.json</i>. The number of days done and failed.</p>"""

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
        self.addOutput(QgsProcessingOutputFolder(self.MOSAIC, "Mosaic folder (one COG per element)"))
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
        for key, reason in res.get("regions_failed", {}).items():
            feedback.reportError(f"region {key} failed: {reason}", fatalError=False)
        if res.get("mosaic"):
            seams = ", ".join(f"{el} {r:.2f}" for el, r in res["seam_ratio"].items() if math.isfinite(r))
            feedback.pushInfo(f"mosaic of {len(res['regions_run']) + len(res['regions_skipped'])} regions in "
                              f"{os.path.dirname(res['mosaic'][0])}; seam ratio (border step / in-region step): "
                              f"{seams or 'no border between mapped regions'}")
            for path, el in zip(res["mosaic"], res["seam_ratio"]):
                if el not in res.get("mosaic_elements", ()):
                    continue            # an element no region predicts: nodata throughout
                name = f"Mosaic {el} (wt%)"
                context.addLayerToLoadOnCompletion(path, QgsProcessingContext.LayerDetails(name, context.project(),
                                                                                          name))
                style_on_load(context, path, RasterStyle(1, ramp="Spectral"))
        return {ArchiveParams.key("workspace"): res["workspace"], self.GIB: res["gib"],
                self.MOSAIC: os.path.join(res["workspace"], "mosaic") if res.get("mosaic") else None,
                self.N_DONE: len(res["ran"]) + len(res["skipped"]), self.N_FAILED: len(res["failed"])}
