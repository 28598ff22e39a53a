"""CLASS lunar XRF: a QGIS plugin that turns Chandrayaan-2 CLASS X-ray fluorescence spectra into
maps of lunar surface composition. QGIS calls :func:`classFactory` when it loads the plugin."""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    from .plugin import ClassXrfPlugin

    return ClassXrfPlugin(iface)
