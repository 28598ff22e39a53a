"""The classxrf Processing provider: every stage of the CLASS XRF chain as an algorithm."""
from qgis.core import QgsProcessingProvider

from .base import ICON_PATH


def algorithm_classes():
    """The provider's algorithm classes, in pipeline order (ids stay stable across versions)."""
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
            BasemapAlgorithm, ExportMapAlgorithm, DependenciesAlgorithm]


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

    def loadAlgorithms(self):  # noqa: N802
        for cls in algorithm_classes():
            self.addAlgorithm(cls())
