"""The plugin's own science environment: a virtual environment outside QGIS's Python.

Why: the science runs in a worker process (``class_qgis_plugin/worker.py``). On Debian, QGIS's own
Python puts the distribution's packages first on ``sys.path`` (numpy 1.24, attrs 22.2, an old
sympy), so packages installed beside them fail to import (astropy, affine, torch_geometric), the
shapely wheel clashes with the GEOS that QGIS links, and ``python3 -m pip install`` is refused
(PEP 668). A virtual environment made without the system site packages holds exactly the pinned
versions of ``resources/env/requirements.lock``, tested together, and the worker runs in it.

Layout: ``<QGIS profile>/python/classxrf-env`` by default; ``classxrf-env.json`` inside records the
parts installed and verified (:data:`PARTS`), the interpreter and the size. Parts: ``core`` (every
stage but super-resolution), ``plots`` (fit plots, matplotlib), ``superres`` (torch, the CPU build
unless a GPU is asked for, torch-geometric, torch-optimizer, pykrige), ``cluster`` (dask, distributed:
the archive run on a Dask cluster).

This module imports nothing from QGIS: :func:`plan` lists the steps (commands), :func:`run_plan`
runs them with a log callback, a cancel check and progress, and raises :class:`EnvError` with one
line naming the package and the reason when a step fails. The Processing algorithm
(``dependencies_alg``) runs it in a background task.
"""
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parents[1]
LOCK_FILE = PLUGIN_DIR / "resources" / "env" / "requirements.lock"
ENV_DIRNAME = "classxrf-env"
MARKER = "classxrf-env.json"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

#: part -> (pip requirement names, import names checked after install, what it is for)
PARTS = {
    "core": (("numpy", "scipy", "astropy", "xraylib", "shapely", "pyogrio", "rasterio", "pyproj"),
             ("numpy", "scipy", "astropy", "xraylib", "shapely", "pyogrio", "rasterio", "pyproj"),
             "every stage but super-resolution"),
    "plots": (("matplotlib",), ("matplotlib",), "fit plots of the solar fit and the inversion"),
    "superres": (("torch", "torch-geometric", "torch-optimizer", "pykrige"),
                 ("torch", "torch_geometric", "torch_optimizer", "pykrige"), "super-resolution"),
    "cluster": (("dask", "distributed"), ("dask", "distributed"), "the archive run on Dask (a local or remote cluster)"),
}
#: pip options of every install: bounded retries (an unreachable index must not loop for minutes),
#: no byte-compiling (Python compiles what it imports; saves about 100 MB)
PIP_OPTIONS = ("--disable-pip-version-check", "--no-compile", "--progress-bar", "off", "--retries", "2",
               "--timeout", "30")


#: packages each part brings into a fresh environment (measured from the lock), for the progress bar
_EXPECTED = {"core": 19, "plots": 8, "superres": 27, "cluster": 17}


class EnvError(Exception):
    """A step of the set-up failed; the message is one line naming the package and the reason."""


@dataclass
class Step:
    """One command of the set-up: ``label`` for the log, ``cmd`` (argv), ``weight`` (share of the
    progress bar), ``part`` (the part it installs, if any), ``kind`` (venv, bootstrap, pip, verify)."""
    label: str
    cmd: list
    weight: float
    kind: str
    part: str = None
    env: dict = field(default_factory=dict)


def default_env_dir(profile_dir):
    """``<profile>/python/classxrf-env``."""
    return Path(profile_dir) / "python" / ENV_DIRNAME


def env_python(env_dir):
    """The environment's interpreter (``bin/python`` or ``Scripts/python.exe``)."""
    env_dir = Path(env_dir)
    win = env_dir / "Scripts" / "python.exe"
    return win if win.exists() or os.name == "nt" else env_dir / "bin" / "python"


def read_marker(env_dir):
    """The environment's record (dict), or None when it was never completed."""
    try:
        with open(Path(env_dir) / MARKER) as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and env_python(env_dir).exists() else None


def installed_parts(env_dir):
    """The parts installed and verified in the environment (a set; empty when there is none)."""
    rec = read_marker(env_dir)
    return set(rec.get("parts", [])) if rec else set()


def dir_size_mb(path):
    """Size of a folder tree in MB (10^6 bytes), links not followed."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total / 1e6


def find_python(prefixes):
    """The ``pythonX.Y`` of the first installation prefix that has one (inside QGIS ``sys.executable``
    is the qgis binary, or whatever ``python3`` comes first on PATH, e.g. a pyenv shim), then
    ``sys.executable`` when it is a Python, then ``python3`` on PATH."""
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    prefixes = list(dict.fromkeys(prefixes))
    cands = [os.path.join(p, "bin", f"python{ver}") for p in prefixes]
    cands += [os.path.join(p, "python3.exe") for p in prefixes] + [os.path.join(p, "python.exe") for p in prefixes]
    exe = sys.executable or ""
    if os.path.basename(exe).lower().startswith("python"):
        cands.append(exe)
    for cand in cands:
        if os.path.isfile(cand):
            return cand
    return shutil.which(f"python{ver}") or shutil.which("python3") or "python3"


def base_python():
    """The Python QGIS runs, outside any virtual environment: what the science environment is made from."""
    return find_python([sys.base_exec_prefix, sys.exec_prefix])


def clean_environment():
    """The process environment for the set-up and the worker: QGIS's Python and data paths removed
    (PYTHONPATH, PYTHONHOME, and PROJ/GDAL data folders, which the wheels' own GDAL and PROJ must
    not read: Debian's older proj.db is refused by them)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PROJ_LIB", "PROJ_DATA", "GDAL_DATA", "GDAL_DRIVER_PATH",
                        "PYTHONSTARTUP", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _verify_script(imports):
    return ("import importlib, json, sys\nout = {}\n"
            f"for name in {list(imports)!r}:\n"
            "    try:\n        m = importlib.import_module(name)\n"
            "        out[name] = ['ok', str(getattr(m, '__version__', '?'))]\n"
            "    except Exception as exc:\n        out[name] = ['missing', type(exc).__name__ + ': ' + str(exc)]\n"
            "print(json.dumps(out))\n")


def plan(env_dir, parts=("core",), python=None, gpu=False, wheels=None):
    """The steps that make ``env_dir`` hold ``parts`` (core is always included): create the virtual
    environment when it has no interpreter, then one pip install per part not yet verified there,
    then a check that every package imports. ``python``: the interpreter the environment is made
    from (default QGIS's own); ``gpu``: torch's CUDA build from PyPI instead of the CPU build;
    ``wheels``: a folder of wheels for an offline install (pip ``--no-index --find-links``)."""
    env_dir = Path(env_dir)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise EnvError(f"unknown part(s) {', '.join(unknown)} (known: {', '.join(PARTS)})")
    parts = [p for p in PARTS if p == "core" or p in parts]
    done = installed_parts(env_dir)
    py = str(env_python(env_dir))
    steps = []
    if not env_python(env_dir).exists():
        steps.append(Step(f"create the virtual environment {env_dir}", [python or base_python(), "-m", "venv",
                                                                       str(env_dir)], 0.05, "venv"))
    source = ["--no-index", "--find-links", str(wheels)] if wheels else []
    for part in parts:
        if part in done:
            continue
        reqs = list(PARTS[part][0])
        extra = []
        if part == "superres" and not gpu and not wheels:
            extra = ["--extra-index-url", TORCH_CPU_INDEX]
        weight = {"core": 0.6, "plots": 0.1, "superres": 0.4}[part]
        steps.append(Step(f"install {part} ({', '.join(reqs)})",
                          [py, "-m", "pip", "install", *PIP_OPTIONS, "-c", str(LOCK_FILE), *source, *extra, *reqs],
                          weight, "pip", part))
    imports = [m for p in parts for m in PARTS[p][1]]
    steps.append(Step("check that every package imports", [py, "-c", _verify_script(imports)], 0.02, "verify"))
    return steps


_FAIL_PATTERNS = [
    (re.compile(r"No matching distribution found for ([^\s]+)"), "no matching distribution (no wheel for this "
     "Python/platform in the index or wheel folder, or the index cannot be reached)"),
    (re.compile(r"Could not find a version that satisfies the requirement ([^\s]+)"), "no version satisfies it"),
    (re.compile(r"Failed (?:to )?build(?:ing wheel for)? ([^\s]+)"), "it has no wheel here and building it "
     "from source failed"),
    (re.compile(r"ResolutionImpossible|conflicting dependencies"), "conflicting version requirements"),
    (re.compile(r"\[Errno 28\] No space left on device"), "no space left on the disk"),
    (re.compile(r"(?:Errno 13\] )?Permission denied"), "permission denied"),
    (re.compile(r"ensurepip is not available|No module named ensurepip"), "Python's ensurepip is missing"),
]


def failure_reason(lines, part=None):
    """One line naming the package and the reason of a failed pip (or venv) run, from its output."""
    text = "\n".join(lines)
    m = re.search(r"Cannot install ([^\s]+) because these package versions have conflicting dependencies", text)
    if m:
        # what pip says when the pinned version is nowhere to be found (or two pins disagree)
        pin = re.search(r"requested \(constraint\) (%s[^\s]*)" % re.escape(m.group(1)), text)
        return (f"{m.group(1)}: the pinned {pin.group(1) if pin else 'version'} is not in the package index or "
                f"wheel folder (or conflicts with another pin)")
    for pat, why in _FAIL_PATTERNS:
        m = pat.search(text)
        if m:
            pkg = m.group(1) if m.groups() else (part or "the environment")
            return f"{pkg.strip(',;')}: {why}"
    errors = [ln.strip() for ln in lines if ln.strip().startswith("ERROR")]
    last = errors[-1] if errors else (lines[-1].strip() if lines else "no output")
    return f"{part or 'set-up'}: {last[:240]}"


def _pip_wheel(wheels, log):
    """A pip wheel to bootstrap pip into an environment made without it: from ``wheels``, from the
    Python's own bundled wheels, or downloaded from the package index."""
    for folder in [wheels, "/usr/share/python-wheels"]:
        if folder and Path(folder).is_dir():
            found = sorted(Path(folder).glob("pip-*.whl"))
            if found:
                return found[-1]
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    log(f"downloading pip from {index}/pip/")
    with urllib.request.urlopen(f"{index}/pip/", timeout=30) as r:
        page = r.read().decode("utf-8", "replace")
    links = re.findall(r'href="([^"]*pip-[0-9.]+-py3-none-any\.whl)[^"]*"', page)
    if not links:
        raise EnvError(f"pip: no pip wheel found at {index}/pip/ to bootstrap the environment")
    url = links[-1] if links[-1].startswith("http") else f"{index}/pip/{links[-1]}"
    dest = Path(os.environ.get("TMPDIR", "/tmp")) / Path(url).name
    urllib.request.urlretrieve(url, dest)
    return dest


def _run(cmd, log, cancelled, env=None):
    """Run ``cmd``, passing each output line to ``log``; honour ``cancelled()`` within 0.2 s.
    Returns (exit status, lines)."""
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env or clean_environment())
    lines, q = [], queue.Queue()

    def read():
        for line in proc.stdout:
            q.put(line)
        q.put(None)
    threading.Thread(target=read, daemon=True).start()
    while True:
        if cancelled():
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise EnvError("set-up cancelled by the user")
        try:
            line = q.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        line = line.rstrip()
        if line:
            lines.append(line)
            log(line)
    return proc.wait(), lines


def run_plan(steps, env_dir, log=print, cancelled=lambda: False, progress=lambda f, m=None: None,
             wheels=None, python=None):
    """Run the steps of :func:`plan`. Returns a summary dict (parts, seconds, size_mb, versions,
    python). Writes the environment's record only after the final import check passed; a failure
    raises :class:`EnvError` with one line, a cancel too; an environment whose creation failed is
    removed (an installed part stays usable)."""
    env_dir = Path(env_dir)
    t0 = time.monotonic()
    total = sum(s.weight for s in steps) or 1.0
    done_w = 0.0
    created = False
    versions = {}
    for step in steps:
        progress(done_w / total, step.label)
        log(f"== {step.label}")
        try:
            if step.kind == "venv":
                created = True
                code, lines = _run(step.cmd, log, cancelled)
                if code != 0 and any("ensurepip" in ln for ln in lines):
                    # Debian without python3-venv: no ensurepip. Make it without pip, then bootstrap pip
                    log("ensurepip is missing: creating the environment without pip and bootstrapping pip")
                    code, lines = _run(step.cmd[:3] + ["--without-pip"] + step.cmd[3:], log, cancelled)
                    if code == 0:
                        whl = _pip_wheel(wheels, log)
                        code, lines = _run([env_python(env_dir), f"{whl}/pip", "install", "--no-index",
                                            "--disable-pip-version-check", str(whl)], log, cancelled)
                if code != 0:
                    raise EnvError(failure_reason(lines, "virtual environment"))
            else:
                seen = [0]

                def log_step(line, step=step, base=done_w):
                    log(line)
                    if step.kind == "pip" and line.startswith("Collecting "):
                        seen[0] += 1
                        frac = min(0.9, seen[0] / max(_EXPECTED.get(step.part, 10), 1))
                        progress((base + step.weight * frac) / total, f"{step.label}: {line[11:].split()[0]}")
                code, lines = _run(step.cmd, log_step, cancelled)
                if code != 0:
                    raise EnvError(failure_reason(lines, step.part))
                if step.kind == "verify":
                    res = json.loads(lines[-1])
                    bad = {k: v[1] for k, v in res.items() if v[0] != "ok"}
                    if bad:
                        name, why = next(iter(bad.items()))
                        raise EnvError(f"{name}: installed but does not import ({why})")
                    versions = {k: v[1] for k, v in res.items()}
        except EnvError:
            if created and step.kind == "venv":
                shutil.rmtree(env_dir, ignore_errors=True)
            raise
        except OSError as exc:
            raise EnvError(f"{step.part or 'set-up'}: cannot run {step.cmd[0]} ({exc})") from None
        done_w += step.weight
    parts = sorted(installed_parts(env_dir) | {s.part for s in steps if s.part})
    if "core" not in parts:
        parts.append("core")
    pyver = subprocess.run([str(env_python(env_dir)), "-c", "import sys; print(sys.version.split()[0])"],
                           capture_output=True, text=True, env=clean_environment()).stdout.strip()
    rec = dict(parts=sorted(parts), python=str(env_python(env_dir)), python_version=pyver,
               lock=str(LOCK_FILE), seconds=round(time.monotonic() - t0, 1), size_mb=round(dir_size_mb(env_dir), 1),
               versions=versions, made_from=python or base_python(), written=time.strftime("%Y-%m-%dT%H:%M:%S"))
    tmp = env_dir / (MARKER + ".tmp")
    tmp.write_text(json.dumps(rec, indent=1))
    os.replace(tmp, env_dir / MARKER)
    progress(1.0, "science environment ready")
    return rec


def check(env_dir, parts=None):
    """Import check of the environment's packages: (found {import: version}, missing {import: why}).
    Without an environment every package is missing."""
    parts = list(parts or PARTS)
    imports = [m for p in parts for m in PARTS[p][1]]
    py = env_python(env_dir)
    if not py.exists():
        return {}, {m: f"no science environment at {env_dir}" for m in imports}
    out = subprocess.run([str(py), "-c", _verify_script(imports)], capture_output=True, text=True,
                         env=clean_environment(), timeout=300)
    try:
        res = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}, {m: f"the environment's Python does not run ({out.stderr.strip()[-200:]})" for m in imports}
    found = {k: v[1] for k, v in res.items() if v[0] == "ok"}
    missing = {k: v[1] for k, v in res.items() if v[0] != "ok"}
    return found, missing
