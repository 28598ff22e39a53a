"""classxrf:dependencies - the plugin's own science environment: check it, or create and fill it.

The science runs in a worker process (``class_qgis_plugin/worker.py``) in a virtual environment of
the plugin's own under the QGIS profile (:mod:`envsetup`), isolated from QGIS's Python: on Debian,
packages installed beside the distribution's do not import (numpy 1.24, attrs 22.2 and sympy win)
and ``pip install`` into the system Python is refused. This algorithm creates that environment and
installs the pinned packages of ``resources/env/requirements.lock`` into it. It runs as a
background task (no ``FlagNoThreading``): QGIS stays responsive, the progress bar moves, Cancel
stops pip within a second.
"""
from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
)

from . import envsetup
from .base import ClassXrfAlgorithm, SETTING_PYTHON, own_env_dir, science_python

ACTIONS = ["check", "install", "dry-run"]


class DependenciesAlgorithm(ClassXrfAlgorithm):
    ALG_NAME = "dependencies"
    DISPLAY = "Install the science environment"
    GROUP = "9 Set-up"
    GROUP_ID = "setup"
    HELP = """<p>The plugin's science (co-add, solar fit, inversion, population, super-resolution) runs in a
Python environment of its own, under the QGIS profile (<i>python/classxrf-env</i>), isolated from QGIS's Python:
on Debian the distribution's own numpy, attrs and sympy would shadow what the plugin needs, and installing into
the system Python is refused. Run this once with Action = install; it runs in the background (QGIS stays
responsive; Cancel stops it) and the algorithms use the environment as soon as it is ready, without a restart.</p>
<table>
<tr><td><b>core</b> (always)</td><td>numpy, scipy, astropy, xraylib, shapely, pyogrio, rasterio, pyproj: every stage
but super-resolution; about 550 MB, a few minutes</td></tr>
<tr><td><b>fit plots</b></td><td>matplotlib: the fit plots of the solar fit and the inversion; about 75 MB</td></tr>
<tr><td><b>super-resolution</b></td><td>torch (the CPU build unless a GPU is asked for), torch-geometric,
torch-optimizer, pykrige; about 800 MB with the CPU build, several GB with CUDA</td></tr>
</table>
<p>Every version is pinned (resources/env/requirements.lock: the set the plugin is tested with).</p>
<h3>Parameters</h3>
<ul>
<li><b>Action</b>: <i>check</i> (default: reports the environment and what imports in it, installs nothing),
<i>dry-run</i> (also lists the commands) or <i>install</i> (runs them; parts already installed are kept).</li>
<li><b>Fit plots</b>, <b>Super-resolution</b>: the optional parts.</li>
<li><b>GPU build of torch</b>: PyPI's CUDA build instead of PyTorch's CPU build.</li>
<li><b>Wheel folder</b> (optional): install offline from a folder of wheels (pip --no-index --find-links), e.g.
one filled with <i>pip download -r requirements.lock</i> on a machine with internet.</li>
<li><b>Python to create the environment from</b> (optional): default the Python QGIS runs.</li>
</ul>
<p>To use another interpreter for the science instead (a conda environment, a cluster's Python with the same
packages), name it in Settings &gt; Options &gt; Processing &gt; Providers &gt; CLASS lunar XRF. The command line
(python -m class_qgis_plugin.cli) and batch scripts run in whatever Python starts them.</p>
<h3>Outputs</h3>
<p>ENV_FOLDER, PYTHON (the environment's interpreter), PARTS (installed), FOUND (package=version), MISSING, COMMANDS,
SECONDS and SIZE_MB of the install.</p>"""

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterEnum(
            "ACTION", "Action", options=ACTIONS, defaultValue="check", usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterBoolean("PLOTS", "Fit plots (matplotlib)", defaultValue=False))
        self.addParameter(QgsProcessingParameterBoolean(
            "SUPERRES", "Super-resolution (torch, torch-geometric, torch-optimizer, pykrige)", defaultValue=False))
        self.addParameter(QgsProcessingParameterBoolean(
            "GPU", "GPU (CUDA) build of torch", defaultValue=False))
        self.addParameter(QgsProcessingParameterFile(
            "WHEELS", "Wheel folder for an offline install", behavior=QgsProcessingParameterFile.Folder,
            optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "PYTHON", "Python to create the environment from (default: QGIS's)", optional=True))
        for name, text in (("ENV_FOLDER", "Environment folder"), ("PYTHON_OUT", "Environment's Python"),
                           ("PARTS", "Installed parts"), ("FOUND", "Packages found (name=version)"),
                           ("MISSING", "Missing packages"), ("COMMANDS", "Commands")):
            self.addOutput(QgsProcessingOutputString(name, text))
        self.addOutput(QgsProcessingOutputNumber("SECONDS", "Install time (s)"))
        self.addOutput(QgsProcessingOutputNumber("SIZE_MB", "Environment size (MB)"))

    def execute(self, parameters, context, feedback, progress):
        action = self.parameterAsEnumString(parameters, "ACTION", context)
        parts = ["core"] + [p for p, key in (("plots", "PLOTS"), ("superres", "SUPERRES"))
                            if self.parameterAsBool(parameters, key, context)]
        env_dir = own_env_dir()
        wheels = self.parameterAsFile(parameters, "WHEELS", context) or None
        python = self.parameterAsFile(parameters, "PYTHON", context) or None
        try:
            steps = envsetup.plan(env_dir, parts, python=python,
                                  gpu=self.parameterAsBool(parameters, "GPU", context), wheels=wheels)
        except envsetup.EnvError as exc:
            raise QgsProcessingException(str(exc)) from None
        py, kind = science_python()
        if kind == "named":
            feedback.pushInfo(f"The science runs in {py}, named in the Processing options ({SETTING_PYTHON}); "
                              f"the plugin's own environment is not used while that option is set.")
        commands = [" ".join(str(c) for c in s.cmd) if s.kind != "verify" else "(import check)" for s in steps]
        out = {"ENV_FOLDER": str(env_dir), "PYTHON_OUT": str(envsetup.env_python(env_dir)), "COMMANDS": "\n".join(commands),
               "SECONDS": 0.0, "SIZE_MB": 0.0}
        if action == "install":
            def log(line):
                feedback.pushConsoleInfo(line)
            try:
                rec = envsetup.run_plan(steps, env_dir, log=log, cancelled=feedback.isCanceled,
                                        progress=progress.set, wheels=wheels, python=python)
            except envsetup.EnvError as exc:
                raise QgsProcessingException(f"Science environment not ready: {exc}") from None
            feedback.pushInfo(f"Science environment ready in {env_dir}: parts {', '.join(rec['parts'])}, "
                              f"{rec['size_mb']:.0f} MB; installed in {rec['seconds']:.0f} s. The algorithms use it now.")
            out.update(SECONDS=float(rec["seconds"]), SIZE_MB=float(rec["size_mb"]))
        elif action == "dry-run":
            for c in commands:
                feedback.pushInfo("would run: " + c)
        have = sorted(envsetup.installed_parts(env_dir))
        found, missing = envsetup.check(env_dir, have or ["core"])
        for name, ver in found.items():
            feedback.pushInfo(f"  ok       {name} {ver}")
        for name, why in missing.items():
            feedback.pushInfo(f"  missing  {name}: {why}")
        if not have and action != "install":
            feedback.pushInfo(f"No science environment yet at {env_dir}: run this algorithm with Action = install.")
        out.update(PARTS=",".join(have), FOUND=",".join(f"{k}={v}" for k, v in found.items()),
                   MISSING=",".join(missing))
        return out
