"""Shared pieces of the classxrf algorithms: help text, feedback bridge, errors, styling on load.

An algorithm turns parameters into core calls and core results into outputs; it holds no science.
Core modules (and the heavy packages they need) are imported inside ``processAlgorithm`` so the
provider loads even where torch or xraylib is missing; a missing package gives a clear message.
"""
import importlib
import importlib.util
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingUtils,
)

from ..class_qgis_plugin.errors import Cancelled, ClassXRFError
from ..class_qgis_plugin.progress import Progress

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ICON_PATH = os.path.join(PLUGIN_DIR, "resources", "icon.svg")
STYLE_DIR = os.path.join(PLUGIN_DIR, "resources", "styles")

PIP_NAMES = {"torch": "torch", "torch_geometric": "torch-geometric", "torch_optimizer": "torch-optimizer",
             "xraylib": "xraylib", "astropy": "astropy", "rasterio": "rasterio", "shapely": "shapely",
             "pyogrio": "pyogrio", "scipy": "scipy", "numpy": "numpy", "pykrige": "pykrige"}


def require(*modules):
    """Raise a QgsProcessingException naming every missing package and how to install it.

    Packages are looked up without importing them: importing shapely or pyogrio wheels into the
    QGIS process is what the worker process avoids (see :func:`run_core`)."""
    missing = []
    for m in modules:
        try:
            found = importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(m)
    if missing:
        pips = " ".join(PIP_NAMES.get(m, m) for m in missing)
        raise QgsProcessingException(
            f"This algorithm needs the Python package(s) {', '.join(missing)}, which QGIS's Python cannot "
            f"import. Install them into QGIS's Python, e.g. `python3 -m pip install {pips}` "
            f"(for torch, prefer the CPU build unless you have a GPU); or run the classxrf dependency check.")


def python_executable():
    """The interpreter of the Python QGIS runs (QGIS's own executable is not one, and inside QGIS
    ``sys.executable`` may be whatever ``python3`` comes first on PATH)."""
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [os.path.join(sys.exec_prefix, "bin", ver), os.path.join(sys.exec_prefix, "python.exe"),
                  os.path.join(sys.base_exec_prefix, "bin", ver), os.path.join(sys.base_exec_prefix, "python.exe")]
    if os.path.basename(sys.executable or "").startswith("python"):
        candidates.append(sys.executable)
    candidates += [shutil.which(ver), shutil.which("python3")]
    for cand in candidates:
        if cand and os.path.isfile(cand):
            return cand
    raise QgsProcessingException(f"No Python interpreter ({ver}) found to run the computation")


def run_core(task, kwargs, feedback):
    """Run ``class_qgis_plugin.tasks.<task>(**kwargs)`` in a worker process; return its result.

    The worker (see ``class_qgis_plugin/worker.py``) keeps shapely, pyogrio, rasterio and torch
    out of the QGIS process, whose own GEOS/GDAL would otherwise clash with the ones those wheels
    bundle. Progress lines drive the feedback's progress bar; the cancel button terminates the
    worker (outputs are written atomically, so nothing is left half-written); an error of the core
    becomes a QgsProcessingException with the core's message (file and key).
    """
    env = dict(os.environ)
    paths = [PLUGIN_DIR] + [p for p in sys.path if p and os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    request = json.dumps({"task": task, "kwargs": kwargs})
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen([python_executable(), "-m", "class_qgis_plugin.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, env=env, text=True, cwd=PLUGIN_DIR)
        lines = queue.Queue()

        def _read():
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=_read, daemon=True).start()
        proc.stdin.write(request)
        proc.stdin.close()
        result, error, last = None, None, None
        while True:
            if feedback is not None and feedback.isCanceled():
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                raise QgsProcessingException(f"{task} cancelled by the user; no output was written")
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "progress" in msg and feedback is not None:
                feedback.setProgress(100.0 * msg["progress"])
                if msg.get("message") and msg["message"] != last:
                    last = msg["message"]
                    feedback.pushInfo(last)
            elif "result" in msg:
                result = msg["result"]
            elif "error" in msg:
                error = msg
        proc.wait()
        err.seek(0)
        stderr = err.read()
    if error is not None:
        if error["type"] == "Cancelled":
            raise QgsProcessingException(f"{task} cancelled by the user; no output was written")
        detail = f"\n{error.get('traceback', '')}" if error["type"] == "Exception" else ""
        raise QgsProcessingException(error["error"] + detail)
    if result is None:
        raise QgsProcessingException(f"The {task} computation stopped without a result "
                                     f"(exit status {proc.returncode}): {stderr[-2000:]}")
    return result


class FeedbackProgress(Progress):
    """Core progress object backed by a QgsProcessingFeedback (progress bar and cancel button)."""

    def __init__(self, feedback):
        self.feedback = feedback
        self._last_message = None

    @property
    def cancelled(self):
        return self.feedback is not None and self.feedback.isCanceled()

    def set(self, fraction, message=None):
        if self.feedback is None:
            return
        self.feedback.setProgress(100.0 * min(max(float(fraction), 0.0), 1.0))
        if message and message != self._last_message:
            self._last_message = message
            self.feedback.pushInfo(message)


class GraduatedStyle(QgsProcessingLayerPostProcessorInterface):
    """Styles a vector output graduated on one field (Jenks classes, a colour ramp) when it loads.

    Instances live in the module-level ``_STYLERS`` list: the algorithm object that runs is a clone
    destroyed before layers load, so the post-processor must be referenced elsewhere.
    """

    def __init__(self, field, ramp="Spectral", classes=5, invert=False):
        super().__init__()
        self.field, self.ramp, self.classes, self.invert = field, ramp, classes, invert

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        from .styles import apply_graduated

        if layer is not None and layer.isValid():
            apply_graduated(layer, self.field, ramp=self.ramp, classes=self.classes, invert=self.invert)


class RasterStyle(QgsProcessingLayerPostProcessorInterface):
    """Styles a raster output with a pseudocolour ramp on one band when it loads."""

    def __init__(self, band=1, ramp="Viridis"):
        super().__init__()
        self.band, self.ramp = band, ramp

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        from .styles import apply_raster_ramp

        if layer is not None and layer.isValid():
            apply_raster_ramp(layer, self.band, ramp=self.ramp)


_STYLERS = []


def style_on_load(context, dest, styler):
    """Attach ``styler`` to output ``dest`` if it is going to be loaded into the project."""
    if context.willLoadLayerOnCompletion(dest):
        _STYLERS.append(styler)
        del _STYLERS[:-50]
        context.layerToLoadOnCompletionDetails(dest).setPostProcessor(styler)


class ClassXrfAlgorithm(QgsProcessingAlgorithm):
    """Base class: name, group, help and icon from class attributes; core errors become
    QgsProcessingException with the file and key that caused them."""

    ALG_NAME = ""
    DISPLAY = ""
    GROUP = ""
    GROUP_ID = ""
    HELP = ""

    def name(self):
        return self.ALG_NAME

    def displayName(self):  # noqa: N802
        return self.DISPLAY

    def group(self):
        return self.GROUP

    def groupId(self):  # noqa: N802
        return self.GROUP_ID

    def shortHelpString(self):  # noqa: N802
        return self.HELP

    def icon(self):
        from qgis.PyQt.QtGui import QIcon

        return QIcon(ICON_PATH)

    def createInstance(self):  # noqa: N802
        return type(self)()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        try:
            return self.execute(parameters, context, feedback, FeedbackProgress(feedback))
        except ClassXRFError as exc:
            raise QgsProcessingException(str(exc)) from exc
        except Cancelled as exc:
            raise QgsProcessingException(f"{self.displayName()} cancelled by the user; "
                                         "no output was written") from exc

    def execute(self, parameters, context, feedback, progress):
        raise QgsProcessingException(f"{self.name()} has no implementation")

    # -------------------------------------------------------------- parameter helpers
    def output_path(self, parameters, name, context, ext):
        """Destination path of output ``name``; a temporary output gets extension ``ext``."""
        path = self.parameterAsOutputLayer(parameters, name, context)
        if not path or path == "TEMPORARY_OUTPUT":
            path = QgsProcessingUtils.generateTempFilename(name.lower() + ext)
        return path
