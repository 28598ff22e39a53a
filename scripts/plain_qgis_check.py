"""A user's first session, inside QGIS desktop: run by ``qgis --code scripts/plain_qgis_check.py``.

What tests/qgis/test_plain_qgis.py runs under Xvfb, with Debian's own QGIS and Python (no virtual
environment), a fresh profile and the plugin unzipped into it as the plugin manager's "Install from
ZIP" does:

1. the plugin is loaded and started as the plugin manager does (``qgis.utils.loadPlugin`` /
   ``startPlugin``);
2. classxrf:dependencies (Action = install, core packages only) runs as a background task, the way
   the Processing dialog runs it (``QgsProcessingAlgRunnerTask``), while a 200-ms timer in the main
   thread records when the event loop runs (the largest gap says whether the window froze);
3. simulate -> co-add -> solar fit -> invert -> populate run with ``processing.run``, their workers
   in the new environment; then the basemap and an abundance layer are loaded as the Toolbox loads
   results, and what the message bar shows is recorded;
4. the figures go to the JSON file named by ``CLASSXRF_CHECK_OUT`` and QGIS quits.

By hand: ``CLASSXRF_CHECK_OUT=/tmp/check.json xvfb-run -a qgis --profiles-path /tmp/fresh --nologo
--noversioncheck --code scripts/plain_qgis_check.py`` (after unzipping class_qgis.zip into
``/tmp/fresh/profiles/default/python/plugins``).
"""
import json
import os
import sys
import time
import traceback

from qgis.core import (QgsApplication, QgsProcessingAlgRunnerTask, QgsProcessingContext, QgsProcessingFeedback,
                       QgsProject)
from qgis.PyQt.QtCore import QTimer

OUT = os.environ.get("CLASSXRF_CHECK_OUT", "/tmp/classxrf_plain_qgis.json")
PLUGIN = os.environ.get("CLASSXRF_PLUGIN", "class_qgis")
STATE = {"result": {"python": sys.executable, "python_version": sys.version.split()[0], "prefix": sys.prefix,
                    "base_prefix": sys.base_prefix}, "ticks": []}


def finish(error=None):
    res = STATE["result"]
    if error:
        res["error"] = error
    with open(OUT + ".tmp", "w") as fh:
        json.dump(res, fh, indent=1, default=str)
    os.replace(OUT + ".tmp", OUT)
    STATE["timer"].stop()
    QgsProject.instance().clear()
    # quit without the exit dialogs of the desktop (and without its crash-prone teardown)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if not error else 3)


def run_chain():
    import processing
    out = os.path.join(os.path.dirname(OUT), "chain")
    t = {}

    def step(name, params):
        t0 = time.monotonic()
        res = processing.run(f"classxrf:{name}", params)
        t[name] = time.monotonic() - t0
        return res

    sim = step("simulate", {"SEED": 3, "TRACKS": 4, "OUTPUT_FOLDER": os.path.join(out, "sim")})
    co = step("coadd", {"INPUT": sim["FRAMES"], "WINDOW": 12, "STRIDE": 12, "RMF": sim["RMF_OUT"],
                        "ARF": sim["ARF_OUT"], "BACKGROUND": sim["BACKGROUND"],
                        "OUTPUT_FOLDER": os.path.join(out, "pha"), "OUTPUT": os.path.join(out, "obs.gpkg")})
    sol = step("solarfit", {"INPUT": co["OUTPUT"], "XSM_FOLDER": sim["XSM"], "OUTPUT_FOLDER": os.path.join(out, "solar"),
                            "OUTPUT": os.path.join(out, "obs_solar.gpkg")})
    inv = step("invert", {"INPUT": sol["OUTPUT"], "RMF": sim["RMF_OUT"], "ARF": sim["ARF_OUT"],
                          "BACKGROUND": sim["BACKGROUND"], "FIT_NORM": False, "OUTPUT": os.path.join(out, "abund.gpkg")})
    pop = step("populate", {"INPUT": inv["OUTPUT"], "ALBEDO": sim["ALBEDO"], "GIB_FOLDER": os.path.join(out, "gib"),
                            "OUTPUT": os.path.join(out, "sub.gpkg")})
    from qgis.core import QgsVectorLayer
    # the map a user looks at: the basemap (it makes the project lunar) and the abundance layer, loaded
    # as the Toolbox loads results; then what the message bar shows
    processing.runAndLoadResults("classxrf:basemap", {"INPUT": sim["ALBEDO"], "OUTPUT": os.path.join(out, "base.tif")})
    processing.runAndLoadResults("classxrf:invert", {"INPUT": sol["OUTPUT"], "RMF": sim["RMF_OUT"], "ARF": sim["ARF_OUT"],
                                                     "BACKGROUND": sim["BACKGROUND"], "FIT_NORM": False,
                                                     "OUTPUT": os.path.join(out, "abund_loaded.gpkg")})
    t0 = time.monotonic()
    while time.monotonic() - t0 < 4.0:
        QgsApplication.processEvents()
        time.sleep(0.05)
    from qgis.utils import iface
    STATE["result"]["message_bar"] = [[int(w.level()), w.text()] for w in iface.messageBar().items()]
    STATE["result"]["project_crs"] = QgsProject.instance().crs().authid()
    STATE["result"]["n_layers"] = len(QgsProject.instance().mapLayers())
    lyr = QgsVectorLayer(inv["OUTPUT"], "abund", "ogr")
    feats = list(lyr.getFeatures())
    STATE["result"]["chain"] = dict(
        seconds=t, n_frames=sim["N_FRAMES"], n_spectra=co["N_SPECTRA"], n_sub=pop["N_SUB"],
        layer_valid=lyr.isValid(), n_features=len(feats), fit_flags=sorted({f["fit_flag"] for f in feats}),
        al=[f["Al"] for f in feats][:5], crs=lyr.crs().authid())


class Feedback(QgsProcessingFeedback):
    """Keeps the errors the task reports (the algorithm's exception reaches reportError from C++)."""

    def __init__(self):
        super().__init__()
        self.errors = []

    def reportError(self, error, fatalError=False):  # noqa: N802,N803
        self.errors.append(error)
        super().reportError(error, fatalError)


def installed(ok, results):
    res = STATE["result"]
    ticks = [t for t in STATE["ticks"] if t >= STATE["t_install"]]
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    res["install"] = dict(ok=bool(ok), results={k: v for k, v in (results or {}).items()},
                          seconds=time.monotonic() - STATE["t_install"], n_ticks=len(ticks),
                          max_gap_s=max(gaps) if gaps else None,
                          errors=STATE["feedback_errors"])
    if not ok:
        return finish("install failed: " + "; ".join(STATE["feedback_errors"][-3:]))
    try:
        base = sys.modules[f"{PLUGIN}.processing_provider.base"]
        res["science_python"] = list(base.science_python())
        run_chain()
        finish()
    except Exception:
        finish(traceback.format_exc())


def start():
    try:
        import qgis.utils
        from qgis.PyQt.QtCore import QSettings
        QSettings().setValue(f"PythonPlugins/{PLUGIN}", True)       # what the plugin manager records
        if not qgis.utils.loadPlugin(PLUGIN) or not qgis.utils.startPlugin(PLUGIN):
            return finish(f"the plugin {PLUGIN} did not load")
        reg = QgsApplication.processingRegistry()
        res = STATE["result"]
        res["algorithms"] = sorted(a.id() for a in reg.algorithms() if a.provider() and
                                   a.provider().id() == "classxrf")
        alg = reg.createAlgorithmById("classxrf:dependencies")
        STATE["context"] = QgsProcessingContext()
        STATE["context"].setProject(QgsProject.instance())
        fb = Feedback()
        STATE["feedback"], STATE["feedback_errors"] = fb, fb.errors
        task = QgsProcessingAlgRunnerTask(alg, {"ACTION": "install"}, STATE["context"], fb)
        task.executed.connect(installed)
        STATE["task"] = task
        STATE["t_install"] = time.monotonic()
        QgsApplication.taskManager().addTask(task)
    except Exception:
        finish(traceback.format_exc())


STATE["timer"] = QTimer()
STATE["timer"].timeout.connect(lambda: STATE["ticks"].append(time.monotonic()))
STATE["timer"].start(200)
QTimer.singleShot(500, start)
