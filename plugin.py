"""The plugin object QGIS loads: it registers the Processing provider (id ``classxrf``).

Nothing heavy is imported here: torch, xraylib and friends are imported inside the algorithms
that need them, so the plugin loads in a QGIS whose Python lacks them.
"""
from qgis.core import QgsApplication


class ClassXrfPlugin:
    MENU = "&CLASS lunar XRF"

    def __init__(self, iface=None):
        self.iface = iface
        self.provider = None  # keep a reference: an unreferenced provider is garbage-collected
        self.action = None

    def initProcessing(self):  # noqa: N802
        from .processing_provider.provider import ClassXrfProvider

        if self.provider is None:
            _add_option()
            self.provider = ClassXrfProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()
        if self.iface is not None:
            from qgis.PyQt.QtGui import QIcon
            from qgis.PyQt.QtWidgets import QAction

            from .processing_provider.base import ICON_PATH

            self.action = QAction(QIcon(ICON_PATH), "Install the science environment…", self.iface.mainWindow())
            self.action.triggered.connect(self.open_installer)
            self.iface.addPluginToMenu(self.MENU, self.action)

    def open_installer(self):
        """The installer's dialog (classxrf:dependencies, Action = install): it runs as a task."""
        import processing

        processing.execAlgorithmDialog("classxrf:dependencies", {"ACTION": "install"})

    def unload(self):
        if self.action is not None and self.iface is not None:
            self.iface.removePluginMenu(self.MENU, self.action)
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
            _remove_option()


def _add_option():
    """The Processing option naming an interpreter for the science (Settings > Options > Processing >
    Providers > CLASS lunar XRF); empty means the plugin's own environment."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:  # QGIS without the Processing plugin: the provider works without the option
        return
    from .processing_provider.base import SETTING_PYTHON

    ProcessingConfig.addSetting(Setting("CLASS lunar XRF", SETTING_PYTHON,
                                        "Python interpreter for the science (empty: the plugin's own environment)",
                                        "", valuetype=Setting.FILE))
    ProcessingConfig.readSettings()


def _remove_option():
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:
        return
    from .processing_provider.base import SETTING_PYTHON

    ProcessingConfig.removeSetting(SETTING_PYTHON)
