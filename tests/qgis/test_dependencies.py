"""classxrf:dependencies: the check reports what this Python really has; installs nothing by default."""
import importlib.metadata as md
import os
import sys

import pytest


def _deps():
    return __import__("class_qgis.processing_provider.dependencies_alg", fromlist=["x"])


def test_check_reports_installed_versions_and_installs_nothing(run_alg, plugin):
    deps = _deps()
    target = deps.dependencies_dir()
    before = os.path.exists(target) and sorted(os.listdir(target))
    res = run_alg("classxrf:dependencies", {})
    found = dict(kv.split("=", 1) for kv in res["FOUND"].split(","))
    assert set(found) == set(deps.PACKAGES)  # everything is installed in this venv
    assert res["MISSING"] == ""
    # versions agree with the installed distributions' metadata
    for module, dist in [("numpy", "numpy"), ("scipy", "scipy"), ("rasterio", "rasterio"), ("xraylib", "xraylib"),
                         ("torch", "torch"), ("shapely", "shapely")]:
        assert found[module].split("+")[0] == md.version(dist).split("+")[0], module
    assert res["TARGET"] == target
    assert res["COMMANDS"] == ""
    assert (os.path.exists(target) and sorted(os.listdir(target))) == before


def test_dependencies_folder_is_on_sys_path_after_the_profile(plugin):
    deps = _deps()
    target = deps.dependencies_dir()
    assert target.endswith(os.path.join("python", "dependencies"))
    assert target in sys.path
    # appended after QGIS's own site-packages, so nothing QGIS ships is shadowed
    site = [i for i, p in enumerate(sys.path) if p.endswith("site-packages") or p.endswith("dist-packages")]
    assert sys.path.index(target) > min(site)


def test_missing_package_detected_with_reason():
    deps = _deps()
    found, missing = deps.check_packages(["numpy", "no_such_module_classxrf"])
    assert "numpy" in found and list(missing) == ["no_such_module_classxrf"]
    assert "ModuleNotFoundError" in missing["no_such_module_classxrf"]


def test_pip_commands_take_cpu_torch_unless_gpu(tmp_path):
    deps = _deps()
    cmds = deps.pip_commands(["torch", "xraylib", "torch_geometric"], tmp_path, python="/usr/bin/python3")
    assert len(cmds) == 2
    torch_cmd, rest = cmds
    assert torch_cmd[:4] == ["/usr/bin/python3", "-m", "pip", "install"]
    assert torch_cmd[torch_cmd.index("--target") + 1] == str(tmp_path)
    assert torch_cmd[torch_cmd.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert "torch" in torch_cmd
    assert rest[-2:] == ["xraylib", "torch-geometric"] and "--index-url" not in rest
    gpu = deps.pip_commands(["torch"], tmp_path, gpu=True, python="py")
    assert gpu == [["py", "-m", "pip", "install", "--disable-pip-version-check", "--target", str(tmp_path), "torch"]]
    assert deps.pip_commands([], tmp_path, python="py") == []


def test_python_executable_is_a_python():
    exe = _deps().python_executable()
    assert os.path.basename(exe).startswith("python")


def test_dry_run_with_a_missing_package_prints_commands_without_running(run_alg, plugin, monkeypatch, tmp_path):
    deps = _deps()
    monkeypatch.setitem(deps.PACKAGES, "no_such_module_classxrf", ("no-such-module-classxrf", "a test"))
    res = run_alg("classxrf:dependencies", {"ACTION": "dry-run", "TARGET": str(tmp_path)})
    assert res["MISSING"] == "no_such_module_classxrf"
    assert res["COMMANDS"].endswith(f"--target {tmp_path} no-such-module-classxrf")
    assert os.listdir(tmp_path) == []  # nothing ran


@pytest.mark.parametrize("alg", ["classxrf:simulate", "classxrf:invert"])
def test_algorithm_names_the_missing_package(run_alg, plugin, monkeypatch, alg, tmp_path):
    """A QGIS without xraylib: the algorithm says which package is missing and how to get it."""
    from qgis.core import QgsProcessingException, QgsVectorLayer

    layer = QgsVectorLayer("Polygon?crs=ESRI:104903", "obs", "memory")
    f = tmp_path / "placeholder.fits"
    f.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "xraylib", None)  # import xraylib -> ImportError
    with pytest.raises(QgsProcessingException, match=r"xraylib.*pip install xraylib"):
        run_alg(alg, {"OUTPUT_FOLDER": "TEMPORARY_OUTPUT"} if alg.endswith("simulate") else
                {"INPUT": layer, "RMF": str(f), "ARF": str(f), "BACKGROUND": str(f),
                 "OUTPUT": "TEMPORARY_OUTPUT"})
