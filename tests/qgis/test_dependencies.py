"""classxrf:dependencies and the plugin's own science environment (processing_provider/envsetup.py).

The full path a user takes (a plain Debian QGIS, a fresh profile, the zip, the installer, the chain)
is tests/qgis/test_plain_qgis.py; here: the plan, the runner's failure and cancel handling, what
the algorithm reports, and what an algorithm says when there is no environment."""
import json
import sys
import time
from pathlib import Path

import pytest


def _mods():
    base = __import__("class_qgis.processing_provider.base", fromlist=["x"])
    env = __import__("class_qgis.processing_provider.envsetup", fromlist=["x"])
    return base, env


def test_plan_pins_every_package_and_takes_the_cpu_torch(plugin, tmp_path):
    """The steps for a new environment: a venv made from the given Python, one pip install per part
    with the lock file as constraints (so every version is the pinned one), torch from PyTorch's CPU
    index unless a GPU is asked for, an offline wheel folder with --no-index, then an import check."""
    _, env = _mods()
    steps = env.plan(tmp_path / "e", ["superres", "plots"], python="/usr/bin/python3")
    assert [s.kind for s in steps] == ["venv", "pip", "pip", "pip", "verify"]
    assert steps[0].cmd == ["/usr/bin/python3", "-m", "venv", str(tmp_path / "e")]
    core, plots, sr = steps[1:4]
    assert [core.part, plots.part, sr.part] == ["core", "plots", "superres"]
    for s in (core, plots, sr):
        assert s.cmd[:4] == [str(env.env_python(tmp_path / "e")), "-m", "pip", "install"]
        assert s.cmd[s.cmd.index("-c") + 1] == str(env.LOCK_FILE) and "--no-compile" in s.cmd
        assert "--target" not in s.cmd and "--user" not in s.cmd
    assert sr.cmd[sr.cmd.index("--extra-index-url") + 1] == env.TORCH_CPU_INDEX and "torch" in sr.cmd
    assert "--extra-index-url" not in core.cmd
    gpu = env.plan(tmp_path / "e", ["superres"], gpu=True)[2]
    assert "--extra-index-url" not in gpu.cmd and "torch" in gpu.cmd
    off = env.plan(tmp_path / "e", ["core"], wheels=tmp_path)[1]
    assert off.cmd[off.cmd.index("--find-links") + 1] == str(tmp_path) and "--no-index" in off.cmd
    # every top-level package of every part is pinned in the lock
    pins = {ln.split("==")[0].lower() for ln in env.LOCK_FILE.read_text().splitlines() if "==" in ln}
    for reqs, _, _ in env.PARTS.values():
        assert {r.lower() for r in reqs} <= pins
    with pytest.raises(env.EnvError, match="unknown part"):
        env.plan(tmp_path / "e", ["gpu"])


def test_an_installed_part_is_not_installed_again(plugin, tmp_path):
    _, env = _mods()
    e = tmp_path / "e"
    (e / "bin").mkdir(parents=True)
    (e / "bin" / "python").write_text("")
    (e / env.MARKER).write_text(json.dumps({"parts": ["core"]}))
    assert env.installed_parts(e) == {"core"}
    steps = env.plan(e, ["core", "plots"])
    assert [s.kind for s in steps] == ["pip", "verify"] and steps[0].part == "plots"


def test_a_failed_install_is_one_line_naming_the_package(plugin, tmp_path):
    """An offline install from an empty wheel folder: pip fails; the error is one line that names the
    package pip could not get and why; no environment record is written (the part is not marked)."""
    _, env = _mods()
    e = tmp_path / "e"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    steps = env.plan(e, ["core"], python=sys.executable if "python" in Path(sys.executable).name else None,
                     wheels=wheels)
    with pytest.raises(env.EnvError) as err:
        env.run_plan(steps, e, log=lambda line: None, wheels=wheels)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("numpy: the pinned numpy==1.26.4 is not in the package index"), msg
    assert env.read_marker(e) is None
    lines = ["Collecting xraylib==9.9", "ERROR: Could not find a version that satisfies the requirement "
             "xraylib==9.9 (from versions: none)", "ERROR: No matching distribution found for xraylib==9.9"]
    assert env.failure_reason(lines).startswith("xraylib==9.9: no matching distribution")
    assert "no space left" in env.failure_reason(["OSError: [Errno 28] No space left on device"], "core")


def test_cancel_stops_a_running_step(plugin, tmp_path):
    """A cancel while a step runs (a 10-minute one here) stops it: the runner polls the cancel every
    0.2 s while it reads the step's output, then terminates the process."""
    _, env = _mods()
    step = env.Step("a long step", [sys.executable, "-c", "import time; time.sleep(600)"], 1.0, "pip", "core")
    t0 = time.monotonic()
    with pytest.raises(env.EnvError, match="cancelled"):
        env.run_plan([step], tmp_path / "e", log=lambda line: None, cancelled=lambda: time.monotonic() - t0 > 0.5)
    assert time.monotonic() - t0 < 300            # long before the step would have ended


def test_check_reports_the_missing_environment_and_installs_nothing(run_alg, plugin, monkeypatch, tmp_path):
    base, env = _mods()
    monkeypatch.setattr(base, "own_env_dir", lambda: tmp_path / "classxrf-env")
    dep = __import__("class_qgis.processing_provider.dependencies_alg", fromlist=["x"])
    monkeypatch.setattr(dep, "own_env_dir", lambda: tmp_path / "classxrf-env")
    res = run_alg("classxrf:dependencies", {"ACTION": "dry-run", "SUPERRES": True})
    assert res["PARTS"] == "" and res["ENV_FOLDER"] == str(tmp_path / "classxrf-env")
    assert "numpy" in res["MISSING"] and res["FOUND"] == ""
    assert "-m venv" in res["COMMANDS"] and "requirements.lock" in res["COMMANDS"]
    assert env.TORCH_CPU_INDEX in res["COMMANDS"]
    assert list(tmp_path.iterdir()) == []           # nothing ran


def test_the_algorithm_runs_in_the_background():
    """No FlagNoThreading: from the Toolbox the installer runs as a task and QGIS stays responsive
    (measured with a timer in tests/qgis/test_plain_qgis.py)."""
    from qgis.core import QgsProcessingAlgorithm
    dep = __import__("class_qgis.processing_provider.dependencies_alg", fromlist=["x"])
    assert not dep.DependenciesAlgorithm().flags() & QgsProcessingAlgorithm.FlagNoThreading


@pytest.mark.parametrize("alg", ["classxrf:simulate", "classxrf:invert"])
def test_without_an_environment_an_algorithm_points_to_the_installer(run_alg, plugin, monkeypatch, alg, tmp_path):
    """A QGIS without xraylib and without the science environment: the algorithm says which package
    is missing and to run the installer, not a pip command Debian refuses."""
    from qgis.core import QgsProcessingException, QgsVectorLayer
    base, _ = _mods()
    monkeypatch.setattr(base, "own_env_dir", lambda: tmp_path / "classxrf-env")
    layer = QgsVectorLayer("Polygon?crs=ESRI:104903", "obs", "memory")
    f = tmp_path / "placeholder.fits"
    f.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "xraylib", None)  # import xraylib -> ImportError
    with pytest.raises(QgsProcessingException) as err:
        run_alg(alg, {"OUTPUT_FOLDER": "TEMPORARY_OUTPUT"} if alg.endswith("simulate") else
                {"INPUT": layer, "RMF": str(f), "ARF": str(f), "BACKGROUND": str(f),
                 "OUTPUT": "TEMPORARY_OUTPUT"})
    msg = str(err.value)
    assert "xraylib" in msg and "Install the science environment" in msg and "pip install" not in msg


def test_with_an_environment_lacking_a_part_the_message_names_the_part(run_alg, plugin, monkeypatch, tmp_path):
    base, env = _mods()
    e = tmp_path / "classxrf-env"
    (e / "bin").mkdir(parents=True)
    (e / "bin" / "python").write_text("")
    (e / env.MARKER).write_text(json.dumps({"parts": ["core"]}))
    monkeypatch.setattr(base, "own_env_dir", lambda: e)
    assert base.science_python() == (str(e / "bin" / "python"), "own")
    from qgis.core import QgsProcessingException
    with pytest.raises(QgsProcessingException, match="'superres'.*torch.*not installed"):
        base.require("torch", "numpy")
    base.require("numpy", "xraylib")             # core is there: no error


def test_an_interpreter_named_in_the_processing_options_runs_the_science(run_alg, plugin, monkeypatch, tmp_path):
    """Settings > Options > Processing > Providers > CLASS lunar XRF names an interpreter (a conda
    environment, a cluster's Python): the worker runs in it, with none of QGIS's Python paths; a
    name that does not exist is a clear error; cleared, the default comes back."""
    from processing.core.ProcessingConfig import ProcessingConfig
    from qgis.core import QgsProcessingException
    base, _ = _mods()
    monkeypatch.setattr(base, "own_env_dir", lambda: tmp_path / "classxrf-env")
    assert ProcessingConfig.getSetting(base.SETTING_PYTHON) in (None, "")
    try:
        ProcessingConfig.setSettingValue(base.SETTING_PYTHON, sys.executable)
        assert base.science_python() == (sys.executable, "named")
        res = run_alg("classxrf:simulate", {"SEED": 1, "TRACKS": 1, "OUTPUT_FOLDER": str(tmp_path / "sim")})
        assert res["N_FRAMES"] > 0
        # the option's own validator refuses a path that does not exist; one removed since is caught here
        with monkeypatch.context() as m:
            m.setattr(base, "_option", lambda name: str(tmp_path / "no_python"))
            with pytest.raises(QgsProcessingException, match="no_python"):
                base.science_python()
    finally:
        ProcessingConfig.setSettingValue(base.SETTING_PYTHON, "")
    assert base.science_python()[1] == "current"
