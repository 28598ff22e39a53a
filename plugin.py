"""The plugin object QGIS loads: it registers the Processing provider (id ``classxrf``).

Nothing heavy is imported here: torch, xraylib and friends are imported inside the algorithms
that need them, so the plugin loads in a QGIS whose Python lacks them.
"""
from qgis.core import QgsApplication


class ClassXrfPlugin:
    def __init__(self, iface=None):
        self.iface = iface
        self.provider = None  # keep a reference: an unreferenced provider is garbage-collected
        # packages installed by classxrf:dependencies (profile's python/dependencies, as QPIP does);
        # appended, so QGIS's own packages keep priority
        from .processing_provider.dependencies_alg import add_dependencies_to_path

        add_dependencies_to_path()

    def initProcessing(self):  # noqa: N802
        from .processing_provider.provider import ClassXrfProvider

        if self.provider is None:
            self.provider = ClassXrfProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
