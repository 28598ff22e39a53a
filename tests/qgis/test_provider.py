"""The plugin loads in QGIS, registers the classxrf provider and its algorithms with help text."""
from qgis.core import QgsApplication


def test_provider_registered_with_algorithms(plugin):
    reg = QgsApplication.processingRegistry()
    provider = reg.providerById("classxrf")
    assert provider is not None
    ids = {a.id() for a in provider.algorithms()}
    assert "classxrf:coadd" in ids
    for alg in provider.algorithms():
        assert len(alg.shortHelpString()) > 200, alg.id()
        assert alg.group() and alg.groupId()
        assert not alg.icon().isNull(), alg.id()


def test_plugin_loads_where_heavy_packages_are_missing(tmp_path):
    """In a Python that cannot import numpy, torch, torch_geometric, xraylib, astropy, scipy, shapely, pyogrio or rasterio,
    the plugin still loads and the provider lists every algorithm (heavy imports happen in the worker)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    os.symlink(root, plugins / "class_qgis")
    code = f"""
import sys, importlib.abc
BLOCKED = {{"numpy", "torch", "torch_geometric", "torch_optimizer", "xraylib", "astropy", "scipy", "shapely", "pyogrio",
           "rasterio", "pykrige"}}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked for the test: " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(plugins)!r})
from qgis.core import QgsApplication
app = QgsApplication([], False); app.initQgis()
import class_qgis
p = class_qgis.classFactory(None); p.initProcessing()
ids = sorted(a.id() for a in QgsApplication.processingRegistry().providerById("classxrf").algorithms())
print("IDS", ",".join(ids))
print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
"""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "IDS " in proc.stdout, proc.stderr[-2000:]
    ids = proc.stdout.split("IDS ")[1].split()[0].split(",")
    assert {"classxrf:simulate", "classxrf:coadd", "classxrf:solarfit", "classxrf:invert", "classxrf:populate",
            "classxrf:superresolve", "classxrf:basemap", "classxrf:exportmap", "classxrf:dependencies"} <= set(ids)
    assert "LOADED []" in proc.stdout
