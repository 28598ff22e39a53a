"""Shared test fixtures: where the real instrument data lives (and a skip when it does not), and a
headless QGIS with the plugin loaded as QGIS loads it.

pytest-qgis starts a QgsApplication (offscreen). The checkout is linked into a temporary plugins
folder under its installed package name (``class_qgis``) so the glue's relative imports are
exercised exactly as in a user's profile; the provider is registered and ``processing.run`` is used
as a PyQGIS batch user would.
"""
import importlib
import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CLASSXRF_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_data(*parts):
    """Path under ../shared/data, skipping the test with a clear reason when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real instrument data not found at {p} (../shared/data is absent in a fresh clone)")
    return p


@pytest.fixture
def data_dir():
    return shared_data()


PACKAGE = "class_qgis"


@pytest.fixture(scope="session")
def plugin(qgis_app):
    plugins_dir = Path(tempfile.mkdtemp(prefix="qgis_plugins_"))
    os.symlink(ROOT, plugins_dir / PACKAGE)
    sys.path.insert(0, str(plugins_dir))
    sys.path.insert(0, "/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing

    Processing.initialize()
    module = importlib.import_module(PACKAGE)
    instance = module.classFactory(None)
    instance.initProcessing()
    yield instance
    instance.unload()


@pytest.fixture(scope="session")
def run_alg(plugin):
    """processing.run with a fresh context; returns the result dictionary."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject

    def _run(alg_id, params, feedback=None):
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        return processing.run(alg_id, params, context=context, feedback=feedback or QgsProcessingFeedback())

    return _run
