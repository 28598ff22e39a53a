"""classxrf:dependencies - check the Python packages the plugin needs, install the missing ones.

Missing packages are installed with pip into the QGIS profile's ``python/dependencies`` folder (the
place the QPIP plugin uses), which :mod:`plugin` appends to ``sys.path`` when the plugin loads, so
QGIS's own packages always come first and only what is missing is taken from there.
"""
import importlib
import os
import shutil
import subprocess
import sys

from qgis.core import (
    QgsApplication,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
)

from .base import ClassXrfAlgorithm

#: import name -> (pip name, what needs it)
PACKAGES = {
    "numpy": ("numpy<2", "every stage"),
    "scipy": ("scipy", "fits, population"),
    "astropy": ("astropy", "FITS/OGIP files"),
    "xraylib": ("xraylib", "atomic data of the FP model"),
    "shapely": ("shapely", "footprints"),
    "pyogrio": ("pyogrio", "vector layers"),
    "rasterio": ("rasterio", "rasters"),
    "torch": ("torch", "super-resolution"),
    "torch_geometric": ("torch-geometric", "super-resolution (GATv2)"),
    "torch_optimizer": ("torch-optimizer", "super-resolution (Yogi)"),
    "pykrige": ("pykrige", "kriging baseline"),
}
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
ACTIONS = ["check", "install", "dry-run"]


def dependencies_dir():
    """The profile's ``python/dependencies`` folder (created on install, on sys.path from plugin load)."""
    return os.path.join(QgsApplication.qgisSettingsDirPath(), "python", "dependencies")


def add_dependencies_to_path():
    """Append the dependencies folder to ``sys.path`` (QGIS's own packages keep priority)."""
    path = dependencies_dir()
    if path not in sys.path:
        sys.path.append(path)
    importlib.invalidate_caches()
    return path


def _version(module, name):
    v = getattr(module, "__version__", None)
    if v:
        return str(v)
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # no distribution metadata
        return "?"


def shapely_geos_problem():
    """None when shapely works in this process, else what goes wrong.

    On Linux the QGIS binaries (qgis, qgis_process) link the system GEOS; a shapely wheel from PyPI
    bundles its own, newer GEOS, and its calls bind to the system library's symbols of the same names,
    so geometry functions fail (e.g. "WKB output dimension must be 2 or 3"). A shapely built on the
    system GEOS (``pip install --no-binary shapely shapely``, needs the GEOS headers) has no clash.
    """
    try:
        import shapely

        poly = shapely.Polygon([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)])
        back = shapely.from_wkb(shapely.to_wkb(poly))
        coords = shapely.get_coordinates(back)
        if coords.shape != (4, 2) or not back.equals(poly) or abs(back.area - 0.5) > 1e-12:
            return "geometries do not survive a WKB round trip"
    except ImportError:
        return None  # reported as missing
    except Exception as exc:  # GEOSException and friends
        return (f"shapely {getattr(shapely, '__version__', '?')} (built on GEOS "
                f"{'.'.join(map(str, getattr(shapely, 'geos_version', ())))}) fails in this process: "
                f"{type(exc).__name__}: {exc}")
    return None


def check_packages(modules=None):
    """{import name: version string, or None when it cannot be imported (with the reason)}.

    Returns (found dict name -> version, missing dict name -> reason).
    """
    found, missing = {}, {}
    for name in modules or PACKAGES:
        try:
            mod = importlib.import_module(name)
        except Exception as exc:  # ImportError, or a broken install raising anything at import
            missing[name] = f"{type(exc).__name__}: {exc}"
            continue
        found[name] = _version(mod, PACKAGES.get(name, (name,))[0].split("<")[0])
        if name == "shapely":
            problem = shapely_geos_problem()
            if problem:
                del found[name]
                missing[name] = (problem + "; QGIS links another GEOS: install a shapely built on the system "
                                 "GEOS into QGIS's Python (python3 -m pip install --no-binary shapely shapely, "
                                 "with the GEOS development headers)")
    return found, missing


def python_executable():
    """The Python interpreter QGIS embeds (``sys.executable`` is the qgis binary inside QGIS)."""
    exe = sys.executable or ""
    if os.path.basename(exe).lower().startswith("python"):
        return exe
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    prefixes = dict.fromkeys([sys.exec_prefix, sys.base_exec_prefix, "/usr"])  # in order, no repeats
    cands = [os.path.join(p, "bin", f"python{ver}") for p in prefixes]
    cands += [os.path.join(p, "python3.exe") for p in prefixes] + [os.path.join(p, "python.exe") for p in prefixes]
    for cand in cands:
        if os.path.isfile(cand):
            return cand
    return shutil.which(f"python{ver}") or shutil.which("python3") or "python3"


def pip_commands(missing, target, gpu=False, python=None):
    """The pip command lines that install ``missing`` (import names) into ``target``.

    torch comes from PyTorch's CPU wheel index unless ``gpu`` (then PyPI's default build, with CUDA
    on Linux): a bare ``pip install torch`` on Linux pulls several GB of CUDA libraries.
    """
    py = python or python_executable()
    base = [py, "-m", "pip", "install", "--disable-pip-version-check", "--target", str(target)]
    cmds = []
    missing = list(missing)
    if "torch" in missing:
        cmd = base + ["torch"]
        if not gpu:
            cmd += ["--index-url", TORCH_CPU_INDEX, "--extra-index-url", "https://pypi.org/simple"]
        cmds.append(cmd)
    rest = [PACKAGES.get(m, (m,))[0] for m in missing if m != "torch"]
    if rest:
        cmds.append(base + rest)
    return cmds


class DependenciesAlgorithm(ClassXrfAlgorithm):
    ALG_NAME = "dependencies"
    DISPLAY = "Check / install Python dependencies"
    GROUP = "9 Set-up"
    GROUP_ID = "setup"
    HELP = """<p>Checks that QGIS's Python can import the packages the plugin uses, and installs the missing
ones. The provider and its algorithms load without them; an algorithm that needs a missing package says which
one and points here.</p>
<table>
<tr><td>numpy, scipy, astropy, xraylib, shapely, pyogrio, rasterio</td><td>every stage (FITS files, FP model
atomic data, footprints, rasters)</td></tr>
<tr><td>torch, torch_geometric, torch_optimizer</td><td>super-resolution (GATv2 + CNN, Yogi)</td></tr>
<tr><td>pykrige</td><td>the kriging baseline of super-resolution</td></tr>
</table>
<h3>Parameters</h3>
<ul>
<li><b>Action</b>: <i>check</i> (default: only reports, installs nothing), <i>dry-run</i> (also prints the pip
commands it would run) or <i>install</i> (runs them).</li>
<li><b>Install the GPU build of torch</b>: by default torch comes from PyTorch's CPU wheel index (about
200 MB); tick it on a machine with an NVIDIA GPU to take PyPI's CUDA build (several GB).</li>
<li><b>Target folder</b> (optional): where pip installs (<i>--target</i>); default the profile's
<i>python/dependencies</i> folder, as the QPIP plugin does. The plugin appends this folder to Python's path when
it loads, after QGIS's own packages, so nothing QGIS ships is shadowed; restart QGIS after installing.</li>
</ul>
<h3>Outputs</h3>
<p>FOUND (package=version, comma-separated), MISSING (import names), TARGET (the folder) and COMMANDS (the pip
command lines, for a dry run or an install).</p>"""

    def flags(self):
        return super().flags() | QgsProcessingAlgorithm.FlagNoThreading

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterEnum(
            "ACTION", "Action", options=ACTIONS, defaultValue="check", usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterBoolean(
            "GPU", "Install the GPU (CUDA) build of torch", defaultValue=False))
        self.addParameter(QgsProcessingParameterFile(
            "TARGET", "Target folder (default: the profile's python/dependencies)",
            behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addOutput(QgsProcessingOutputString("FOUND", "Packages found (name=version)"))
        self.addOutput(QgsProcessingOutputString("MISSING", "Missing packages"))
        self.addOutput(QgsProcessingOutputString("TARGET", "Target folder"))
        self.addOutput(QgsProcessingOutputString("COMMANDS", "pip commands"))

    def execute(self, parameters, context, feedback, progress):
        action = self.parameterAsEnumString(parameters, "ACTION", context)
        target = self.parameterAsFile(parameters, "TARGET", context) or dependencies_dir()
        found, missing = check_packages()
        for name, ver in found.items():
            feedback.pushInfo(f"  ok       {name} {ver}  ({PACKAGES[name][1]})")
        for name, why in missing.items():
            feedback.reportError(f"  missing  {name}  ({PACKAGES[name][1]}): {why}", fatalError=False)
        cmds = pip_commands(missing, target, gpu=self.parameterAsBool(parameters, "GPU", context))
        text = [" ".join(c) for c in cmds]
        if not missing:
            feedback.pushInfo("All dependencies are importable; nothing to install.")
        elif action == "check":
            feedback.pushInfo(f"Missing: {', '.join(missing)}. Run again with Action = install to install them "
                              f"into {target}.")
        else:
            for t in text:
                feedback.pushInfo(("would run: " if action == "dry-run" else "running: ") + t)
        if action == "install" and cmds:
            os.makedirs(target, exist_ok=True)
            for k, cmd in enumerate(cmds):
                progress.set(k / len(cmds), f"pip install ({k + 1}/{len(cmds)})")
                self._run(cmd, feedback)
            add_dependencies_to_path()
            found2, still = check_packages(list(missing))
            if still:
                raise QgsProcessingException(f"still missing after pip: {', '.join(still)} - see the log above")
            feedback.pushInfo("Installed. Restart QGIS so every algorithm sees the new packages.")
            found.update(found2)
            missing = {}
        return {"FOUND": ",".join(f"{k}={v}" for k, v in found.items()), "MISSING": ",".join(missing),
                "TARGET": target, "COMMANDS": "\n".join(text)}

    @staticmethod
    def _run(cmd, feedback):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            feedback.pushConsoleInfo(line.rstrip())
            if feedback.isCanceled():
                proc.terminate()
                proc.wait()
                raise QgsProcessingException("pip cancelled by the user; the target folder may hold a partial "
                                             "install: run the installer again")
        if proc.wait() != 0:
            raise QgsProcessingException(f"pip failed (exit {proc.returncode}): {' '.join(cmd)}")
