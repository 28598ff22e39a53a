"""The classxrf Processing provider: every stage of the CLASS XRF chain as an algorithm, and the
Processing models shipped in ``resources/`` (``*.model3``) as algorithms of the same provider."""
import glob
import os

from qgis.core import QgsApplication, QgsMessageLog, QgsProcessingModelAlgorithm, QgsProcessingProvider

from .base import ICON_PATH, PLUGIN_DIR
from .lunar_project import EllipsoidWatcher

MODEL_DIR = os.path.join(PLUGIN_DIR, "resources")
#: the Toolbox group of the shipped models, after the algorithms' groups ("1 Data" ... "5 ...")
MODEL_GROUP, MODEL_GROUP_ID = "6 Models", "models"
#: Toolbox entry of each shipped model: file stem -> (step, display name). A model not listed here
#: is shown under its own name.
MODELS = {"classxrf_chain": ("6.1", "Whole chain: simulate to super-resolution (model)")}


def algorithm_classes():
    """The provider's algorithm classes, in pipeline order (ids stay stable across versions)."""
    from .archive_alg import ArchiveAlgorithm
    from .basemap_alg import BasemapAlgorithm
    from .coadd_alg import CoaddAlgorithm
    from .dependencies_alg import DependenciesAlgorithm
    from .export_alg import ExportMapAlgorithm
    from .invert_alg import InvertAlgorithm
    from .populate_alg import PopulateAlgorithm
    from .simulate_alg import SimulateAlgorithm
    from .solarfit_alg import SolarFitAlgorithm
    from .superres_alg import SuperResolveAlgorithm

    return [SimulateAlgorithm, CoaddAlgorithm, SolarFitAlgorithm, InvertAlgorithm, PopulateAlgorithm,
            SuperResolveAlgorithm,
            BasemapAlgorithm, ExportMapAlgorithm, ArchiveAlgorithm, DependenciesAlgorithm]


def model_files(folder=MODEL_DIR):
    """The ``.model3`` files the provider serves, sorted by name."""
    return sorted(glob.glob(os.path.join(folder, "*.model3")))


class ShippedModel(QgsProcessingModelAlgorithm):
    """A model file of ``resources/`` served by the provider: the model as saved by the designer,
    with a Toolbox name and group of the provider's and a Help page (``helptext.model_page``).

    The model's id stays ``classxrf:<model name>``: a model's ``name()`` is also its display name in
    QGIS 3.22, so the Toolbox name is set here instead of in the file."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.ok = self.fromFile(path)
        self.setSourceFilePath(path)
        stem = os.path.splitext(os.path.basename(path))[0]
        self.step, self.title = MODELS.get(stem, ("", self.name()))

    def displayName(self):  # noqa: N802
        return f"{self.step} {self.title}" if self.step else self.title

    def group(self):
        return MODEL_GROUP

    def groupId(self):  # noqa: N802
        return MODEL_GROUP_ID

    def icon(self):
        from qgis.PyQt.QtGui import QIcon

        return QIcon(ICON_PATH)

    def helpUrl(self):  # noqa: N802
        from .helptext import help_url, model_page

        return help_url(self.name(), model_page(self))

    def shortHelpString(self):  # noqa: N802
        # QGIS's own help of a model (its description as HTML), as plain text in qgis_process
        from .helptext import for_application

        return for_application(super().shortHelpString())

    def createInstance(self):  # noqa: N802
        # a fresh load: its child algorithms resolve against the registry as it is now
        return ShippedModel(self.path)


class ClassXrfProvider(QgsProcessingProvider):
    def id(self):
        return "classxrf"

    def name(self):
        return "CLASS lunar XRF"

    def longName(self):  # noqa: N802
        return "Chandrayaan-2 CLASS X-ray fluorescence to lunar composition maps"

    def icon(self):
        from qgis.PyQt.QtGui import QIcon

        return QIcon(ICON_PATH)

    def load(self):
        # A model's child algorithms (classxrf:...) resolve against the registry when the model is
        # read, and this provider is registered only after load() returns: read the models again once
        # it is (what QGIS's own model provider does on providerAdded).
        QgsApplication.processingRegistry().providerAdded.connect(self._provider_added)
        # a lunar project measures on the lunar sphere (QGIS 3.22 would use WGS 84 or a NaN ellipsoid)
        self._ellipsoid_watcher = EllipsoidWatcher()
        self._ellipsoid_watcher.start()
        return super().load()

    def unload(self):
        try:
            QgsApplication.processingRegistry().providerAdded.disconnect(self._provider_added)
        except (TypeError, RuntimeError):
            pass
        watcher = getattr(self, "_ellipsoid_watcher", None)
        if watcher is not None:
            watcher.stop()
        super().unload()

    def _provider_added(self, provider_id):
        if provider_id == self.id():
            self.refreshAlgorithms()

    def loadAlgorithms(self):  # noqa: N802
        for cls in algorithm_classes():
            self.addAlgorithm(cls())
        for path in model_files():
            model = ShippedModel(path)
            if model.ok and model.name():
                self.addAlgorithm(model)
            else:
                QgsMessageLog.logMessage(f"{path}: not a readable Processing model", "CLASS lunar XRF")
