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
from ..class_qgis_plugin.specs import default_of_field
from ..class_qgis_plugin.progress import Progress
from . import envsetup

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ICON_PATH = os.path.join(PLUGIN_DIR, "resources", "icon.svg")
STYLE_DIR = os.path.join(PLUGIN_DIR, "resources", "styles")

#: the Processing option (Settings > Options > Processing > Providers > CLASS lunar XRF) naming an
#: interpreter for the science (a conda environment, a cluster's Python); empty: the plugin's own
SETTING_PYTHON = "CLASSXRF_PYTHON"
INSTALLER = ("Set-up > Install the science environment (classxrf:dependencies, Action = install; also in the "
             "Plugins > CLASS lunar XRF menu)")
#: import name -> the part of the science environment that holds it (envsetup.PARTS); others: core
_PART_OF = {m: part for part, (_, imports, _) in envsetup.PARTS.items() for m in imports}


def own_env_dir():
    """The plugin's own science environment: ``<QGIS profile>/python/classxrf-env``."""
    from qgis.core import QgsApplication
    return envsetup.default_env_dir(QgsApplication.qgisSettingsDirPath())


def _option(name):
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
        value = ProcessingConfig.getSetting(name)
    except Exception:  # Processing not initialised (a bare PyQGIS script)
        return None
    return str(value).strip() if value else None


def science_python():
    """``(interpreter, kind)`` the worker runs in: the interpreter named in the Processing options
    (``"named"``), else the plugin's own environment once installed (``"own"``), else the Python that
    runs QGIS or the script (``"current"``: the command line and batch scripts started from a Python
    that has the packages keep working as they are)."""
    named = _option(SETTING_PYTHON)
    if named:
        if not os.path.isfile(named):
            raise QgsProcessingException(f"The Python interpreter named in the Processing options (CLASS lunar "
                                         f"XRF) does not exist: {named}")
        return named, "named"
    env = own_env_dir()
    if envsetup.read_marker(env):
        return str(envsetup.env_python(env)), "own"
    return python_executable(), "current"


def require(*modules):
    """Raise a QgsProcessingException when the science cannot run: the environment lacks the part
    that holds ``modules`` (core, plots, superres), or, with no environment, the running Python
    lacks them. The message says what to run (the installer), never a pip command: Debian refuses
    ``pip install`` into its Python (PEP 668), and packages put beside Debian's do not import."""
    py, kind = science_python()
    if kind == "named":
        return  # the user's interpreter: the worker itself names what it lacks
    parts = sorted({_PART_OF.get(m, "core") for m in modules}, key=list(envsetup.PARTS).index)
    if kind == "own":
        lack = [p for p in parts if p not in envsetup.installed_parts(own_env_dir())]
        if lack:
            what = "; ".join(f"'{p}' ({', '.join(envsetup.PARTS[p][0])}: {envsetup.PARTS[p][2]})" for p in lack)
            raise QgsProcessingException(f"This algorithm needs the part(s) {what} of the science environment, "
                                         f"which are not installed yet: run {INSTALLER} with them ticked.")
        return
    missing = []
    for m in modules:
        try:
            found = importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(m)
    if missing:
        raise QgsProcessingException(
            f"This algorithm needs the Python package(s) {', '.join(missing)}, and the plugin has no science "
            f"environment yet: run {INSTALLER} once. It makes a Python environment of the plugin's own (about "
            f"550 MB, a few minutes) and leaves QGIS's Python untouched.")


def python_executable():
    """The Python that runs QGIS or the script, virtual environment included (its packages)."""
    return envsetup.find_python([sys.exec_prefix, sys.base_exec_prefix])


def run_core(spec, feedback):
    """Run the stage of ``spec`` (a :class:`specs.Spec`) in a worker process; return its summary.

    The worker (see ``class_qgis_plugin/worker.py``) keeps shapely, pyogrio, rasterio and torch
    out of the QGIS process, whose own GEOS/GDAL would otherwise clash with the ones those wheels
    bundle. It runs in :func:`science_python` (the plugin's own environment once installed).
    Progress lines drive the feedback through :class:`FeedbackProgress` (the one bridge between
    the core's progress and QGIS); the cancel button terminates the worker (outputs are written
    atomically, so nothing is left half-written); an error of the core becomes a
    QgsProcessingException with the core's message (file and key).
    """
    task = spec.STAGE
    bridge = FeedbackProgress(feedback)
    py, kind = science_python()
    if kind == "current":
        env = dict(os.environ)
        paths = [PLUGIN_DIR] + [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    else:  # an environment of its own: none of QGIS's Python paths or data folders
        env = envsetup.clean_environment()
        env["PYTHONPATH"] = PLUGIN_DIR
    request = json.dumps({"task": task, "params": spec.to_dict()})
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen([py, "-m", "class_qgis_plugin.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, env=env, text=True, cwd=PLUGIN_DIR)
        lines = queue.Queue()

        def _read():
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=_read, daemon=True).start()
        proc.stdin.write(request)
        proc.stdin.close()
        result, error = None, None
        while True:
            if bridge.cancelled:
                # SIGTERM: the worker stops at once (a cancel is not an ordinary exception there) and
                # its outputs are staged, so nothing of this run is left; a worker stuck in C code is
                # killed after 5 s, and the next run cleans what it staged
                proc.terminate()
                try:
                    proc.wait(timeout=5)
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
            if "progress" in msg:
                bridge.set(msg["progress"], msg.get("message"))
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
    """The core's progress object on a QgsProcessingFeedback (progress bar, log, cancel button): the one
    bridge between the core's progress and QGIS, for a stage in the worker (:func:`run_core`) and for
    work done in the QGIS process (the map export)."""

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
    """Styles a vector output on one field when it loads (see :func:`styles.apply_graduated`: fixed
    lunar classes for an element, else Jenks classes on a colour ramp; one labelled class for a
    field that does not vary).

    ``field`` is a field name or a sequence of candidates; ``pick`` says which candidate is used:
    ``first_varying`` (the first with at least 2 distinct values) or ``most_values`` (the one with
    the most finite values, e.g. the element constrained most often).

    Instances live in the module-level ``_STYLERS`` list: the algorithm object that runs is a clone
    destroyed before layers load, so the post-processor must be referenced elsewhere.
    """

    def __init__(self, field, ramp="Spectral", classes=5, invert=False, pick="first_varying"):
        super().__init__()
        self.field, self.ramp, self.classes, self.invert, self.pick = field, ramp, classes, invert, pick
        self.used = None  # the field it styled by, once the layer has loaded

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        from .lunar_project import lunar_ellipsoid
        from .styles import apply_graduated, pick_field

        if layer is not None and layer.isValid():
            self.used = pick_field(layer, self.field, self.pick)
            if self.used is not None:
                apply_graduated(layer, self.used, ramp=self.ramp, classes=self.classes, invert=self.invert)
            lunar_ellipsoid(context.project() if context is not None else None)


class RasterStyle(QgsProcessingLayerPostProcessorInterface):
    """Styles a raster output with a pseudocolour ramp on one band when it loads.

    ``band``: the band number, or ``"most_values"``: the element band (O..Fe, by band description)
    with the most valid cells, e.g. not Fe where Fe was never constrained (the layer's name then
    says which element it shows). ``bottom_rank``: also move the layer to the bottom of the layer
    tree (:func:`styles.place_at_bottom`), for outputs that are references, not the map."""

    def __init__(self, band=1, ramp="Viridis", bottom_rank=None):
        super().__init__()
        self.band, self.ramp, self.bottom_rank = band, ramp, bottom_rank
        self.used = None

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        from .lunar_project import lunar_ellipsoid
        from .styles import apply_raster_ramp, band_with_most_values, element_bands, element_order, place_at_bottom

        if layer is None or not layer.isValid():
            return
        band = self.band
        if band == "most_values":
            bands = element_bands(layer)
            band = band_with_most_values(layer, [bands[e] for e in element_order() if e in bands]) or 1
            element = next((e for e, b in bands.items() if b == band), None)
            if element and f"{element} (wt%)" not in layer.name():
                layer.setName(f"{layer.name()} - {element} (wt%)")
        self.used = band
        apply_raster_ramp(layer, band, ramp=self.ramp)
        project = context.project() if context is not None else None
        if self.bottom_rank is not None and project is not None:
            place_at_bottom(project, layer, self.bottom_rank)
        lunar_ellipsoid(project)


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
    #: position in the Toolbox, e.g. "3.1" (group 3, first in it): QGIS sorts groups and algorithm
    #: names alphabetically, so the display name starts with it to read in pipeline order
    STEP = ""

    def name(self):
        return self.ALG_NAME

    def displayName(self):  # noqa: N802
        return f"{self.STEP} {self.DISPLAY}" if self.STEP else self.DISPLAY

    def group(self):
        return self.GROUP

    def groupId(self):  # noqa: N802
        return self.GROUP_ID

    def shortHelpString(self):  # noqa: N802
        # HTML on one line for the dialog, plain text in qgis_process (see helptext)
        from .helptext import for_application, help_html

        return for_application(help_html(type(self)))

    def helpUrl(self):  # noqa: N802
        # the dialog's Help button: <name>.html, written from HELP into the profile's cache (helptext)
        from .helptext import algorithm_page, help_url

        return help_url(self.ALG_NAME, algorithm_page(type(self)))

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
            raise QgsProcessingException(f"{self.DISPLAY or self.displayName()} cancelled by the user; "
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


# ------------------------------------------------------------------ algorithms built from a stage spec
def make_parameter(f):
    """The QGIS parameter of spec field ``f`` (:func:`specs.param`): its key, label, default, bounds,
    choices and help (the tooltip and ``processing.algorithmHelp``) all from the spec."""
    from qgis.core import (
        QgsProcessing,
        QgsProcessingParameterBoolean,
        QgsProcessingParameterDefinition,
        QgsProcessingParameterEnum,
        QgsProcessingParameterExtent,
        QgsProcessingParameterFile,
        QgsProcessingParameterFileDestination,
        QgsProcessingParameterFolderDestination,
        QgsProcessingParameterMultipleLayers,
        QgsProcessingParameterNumber,
        QgsProcessingParameterRasterDestination,
        QgsProcessingParameterString,
        QgsProcessingParameterVectorDestination,
        QgsProcessingParameterVectorLayer,
    )
    m = f.metadata
    key, label, kind, optional = m["key"], m["label"], m["kind"], not m["required"]
    default = default_of_field(f)
    geometry = QgsProcessing.TypeVectorPoint if m["geometry"] == "point" else QgsProcessing.TypeVectorPolygon
    if kind == "layer":
        p = QgsProcessingParameterVectorLayer(key, label, [geometry], optional=optional)
    elif kind in ("file", "folder"):
        behavior = QgsProcessingParameterFile.Folder if kind == "folder" else QgsProcessingParameterFile.File
        p = QgsProcessingParameterFile(key, label, behavior=behavior, extension=m["extension"] or "",
                                       optional=optional)
    elif kind == "files":
        p = QgsProcessingParameterMultipleLayers(key, label, layerType=QgsProcessing.TypeFile, optional=optional)
    elif kind in ("float", "int"):
        number = QgsProcessingParameterNumber.Double if kind == "float" else QgsProcessingParameterNumber.Integer
        p = QgsProcessingParameterNumber(key, label, type=number, defaultValue=default, optional=optional)
        if m["minimum"] is not None:
            p.setMinimum(m["minimum"])
        if m["maximum"] is not None:
            p.setMaximum(m["maximum"])
    elif kind == "bool":
        p = QgsProcessingParameterBoolean(key, label, defaultValue=bool(default), optional=optional)
    elif kind == "enum":
        p = QgsProcessingParameterEnum(key, label, options=list(m["choices"]), allowMultiple=m["multiple"],
                                       defaultValue=list(default) if m["multiple"] else default,
                                       usesStaticStrings=True, optional=optional)
    elif kind in ("string", "json"):
        p = QgsProcessingParameterString(key, label, defaultValue=None if kind == "json" else default,
                                         optional=optional)
    elif kind == "extent":
        p = QgsProcessingParameterExtent(key, label, optional=optional)
    elif kind == "vector_out":
        p = QgsProcessingParameterVectorDestination(key, label, type=geometry, optional=optional)
    elif kind == "raster_out":
        p = QgsProcessingParameterRasterDestination(key, label, optional=optional)
    elif kind == "folder_out":
        p = QgsProcessingParameterFolderDestination(key, label, optional=optional, createByDefault=not optional)
    elif kind == "file_out":
        ext = m["extension"]
        p = QgsProcessingParameterFileDestination(key, label, fileFilter=f"{ext.upper()} files (*.{ext})" if ext
                                                  else "", optional=optional)
    else:
        raise ValueError(f"{f.name}: no QGIS parameter for kind {kind!r}")
    if m["help"]:
        p.setHelp(m["help"])
    if m["advanced"]:
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return p


class SpecAlgorithm(ClassXrfAlgorithm):
    """An algorithm that runs one stage: its parameters are the fields of the stage's spec
    (``SPEC``, :mod:`class_qgis_plugin.specs`) plus the algorithm's own (styling, outputs);
    :meth:`values` reads what the user gave, :meth:`to_spec` (pure: a test calls it without QGIS
    running anything) turns it into the spec, :func:`run_core` runs the stage and :meth:`report`
    turns its summary into messages, styles and outputs."""

    SPEC = None
    #: science packages the stage needs (see :func:`require`)
    NEEDS = ("numpy",)
    #: spec fields the algorithm presents in its own way (see :meth:`add_own_parameters`)
    OWN = ()

    def initAlgorithm(self, config=None):  # noqa: N802
        for f in self.SPEC.params():
            if f.name in self.OWN:
                self.add_own_parameter(f)
            elif f.metadata["qgis"]:
                self.addParameter(make_parameter(f))
        self.add_own_parameters()

    def add_own_parameter(self, f):
        """The parameter(s) of a spec field in :attr:`OWN`, at its place (an algorithm with OWN fields
        overrides it)."""
        raise TypeError(f"{type(self).__name__} lists {f.name!r} in OWN but does not override add_own_parameter")

    def add_own_parameters(self):
        """Parameters and outputs that are not spec fields, after the others (overridden)."""

    def values(self, parameters, context):
        """``{key: value}`` of the algorithm's parameters as plain Python values (paths, numbers,
        strings, lists); an input layer that cannot be loaded is an error naming it."""
        out = {}
        for p in self.parameterDefinitions():
            key = p.name()
            kind = p.type()
            if kind == "vector":
                layer = self.parameterAsVectorLayer(parameters, key, context)
                if layer is None and parameters.get(key):
                    raise QgsProcessingException(f"{p.description()}: the layer could not be loaded")
                out[key] = layer.source().split("|")[0] if layer is not None else None
            elif kind == "file":
                out[key] = self.parameterAsFile(parameters, key, context) or None
            elif kind == "multilayer":
                out[key] = [x for x in self.parameterAsFileList(parameters, key, context) if x] or None
            elif kind == "number":
                number = p.dataType() == p.Double
                given = parameters.get(key) is not None or p.defaultValue() is not None
                out[key] = (self.parameterAsDouble(parameters, key, context) if number else
                            self.parameterAsInt(parameters, key, context)) if given else None
            elif kind == "boolean":
                out[key] = self.parameterAsBool(parameters, key, context)
            elif kind == "enum":
                out[key] = (self.parameterAsEnumStrings(parameters, key, context) if p.allowMultiple() else
                            self.parameterAsEnumString(parameters, key, context) or None)
            elif kind == "string":
                out[key] = self.parameterAsString(parameters, key, context) or None
            elif kind == "extent":
                out[key] = self._extent(parameters, key, context)
            elif kind == "vectorDestination":
                out[key] = self.output_path(parameters, key, context, ".gpkg")
            elif kind == "rasterDestination":
                out[key] = self.parameterAsOutputLayer(parameters, key, context)
            elif kind in ("folderDestination", "fileDestination"):
                out[key] = self.parameterAsFileOutput(parameters, key, context) or None
            else:
                raise QgsProcessingException(f"{key}: no reading of a {kind} parameter")
        return out

    def _extent(self, parameters, key, context):
        if not parameters.get(key):
            return None
        crs = self.parameterAsExtentCrs(parameters, key, context)
        if crs.isValid() and not crs.isGeographic():
            raise QgsProcessingException(f"The extent must be in a lunar geographic CRS (got {crs.authid()})")
        e = self.parameterAsExtent(parameters, key, context)
        return [e.xMinimum(), e.yMinimum(), e.xMaximum(), e.yMaximum()]

    @classmethod
    def to_spec(cls, values):
        """The stage spec from ``values`` ({parameter key: value}); a bad value is a
        :class:`ClassXRFError` naming the parameter. Pure: no QGIS call."""
        fields = {f.metadata["key"]: f.name for f in cls.SPEC.params() if f.metadata["qgis"]}
        given = {fields[k]: v for k, v in values.items() if k in fields and v is not None}
        given.update(cls.own_values(values))
        return cls.SPEC.from_dict(given)

    @classmethod
    def own_values(cls, values):
        """Spec fields from the algorithm's own parameters (overridden; pure)."""
        return {}

    def execute(self, parameters, context, feedback, progress):
        require(*self.NEEDS)
        values = self.values(parameters, context)
        spec = self.to_spec(values)
        return self.report(run_core(spec, feedback), spec, values, context, feedback)

    def report(self, summary, spec, values, context, feedback):
        """Messages, styles and the algorithm's outputs from the stage's summary (overridden)."""
        raise QgsProcessingException(f"{self.name()} reports nothing")
