"""The project settings a lunar project needs in QGIS 3.22: its ellipsoid.

QGIS measures distances and areas (measure tool, scale bar, identify, ``$length``) with a
QgsDistanceArea from the layer's or the project's CRS onto the project's *ellipsoid*. Measured on
QGIS 3.22.16 (desktop under Xvfb and headless):

* a new project has the WGS 84 ellipsoid (EPSG:7030); with a lunar CRS QGIS then needs a Moon ->
  Earth transform, which PROJ refuses: the red "No transform available between ESRI:104903 and
  Custom CRS" (the "Custom CRS" is the ellipsoid's longitude/latitude CRS, not a layer);
* a new project that takes the CRS of its first lunar layer also takes that CRS's own ellipsoid
  (ESRI:107903 for ESRI:104903; IAU_2015:30100 for IAU_2015:30100): the same message, and every
  distance is NaN;
* ``PARAMETER:1737400:1737400`` (the 1,737,400 m sphere) measures 1 degree as 30,323 m, no message.

:func:`lunar_ellipsoid` gives a project in a lunar CRS that sphere; the plugin calls it whenever it
loads a layer or sets the project CRS, and :class:`EllipsoidWatcher` (kept by the provider) calls it
when QGIS itself changes the CRS or ellipsoid of the current project, e.g. when a new project takes
its first layer's CRS. A project on another body is left alone, and so is an ellipsoid chosen on
purpose: none (planimetric) or an explicit lunar ``PARAMETER:a:b``.

No numpy here: the provider imports this module when the plugin loads.
"""
from qgis.core import QgsEllipsoidUtils, QgsProject

from ..class_qgis_plugin.choices import LUNAR_ELLIPSOID

MOON_RADIUS_M = 1737400.0


def _lunar(semi_major):
    return semi_major is not None and abs(semi_major - MOON_RADIUS_M) <= 0.01 * MOON_RADIUS_M


def lunar_ellipsoid(project):
    """Set the lunar sphere as the ellipsoid of ``project`` when its CRS is lunar and its ellipsoid
    does not measure on the Moon (WGS 84, or a lunar CRS's own ellipsoid, NaN in QGIS 3.22); returns
    True when it changed it."""
    if project is None or not project.crs().isValid():
        return False
    current = project.ellipsoid()
    if current == LUNAR_ELLIPSOID or current in ("", "NONE"):
        return False
    crs_ellipsoid = QgsEllipsoidUtils.ellipsoidParameters(project.crs().ellipsoidAcronym())
    if not crs_ellipsoid.valid or not _lunar(crs_ellipsoid.semiMajor):
        return False  # not a lunar project
    if current.startswith("PARAMETER:"):
        params = QgsEllipsoidUtils.ellipsoidParameters(current)
        if params.valid and _lunar(params.semiMajor):
            return False  # a lunar ellipsoid given explicitly
    project.setEllipsoid(LUNAR_ELLIPSOID)
    return True


class EllipsoidWatcher:
    """Keeps the current project's ellipsoid lunar while its CRS is lunar (see the module's notes)."""

    def __init__(self):
        self.project = None

    def _check(self, *args):
        try:
            lunar_ellipsoid(self.project)
        except RuntimeError:  # the project object is gone (QGIS is closing)
            pass

    def start(self):
        self.project = QgsProject.instance()
        self.project.crsChanged.connect(self._check)
        self.project.ellipsoidChanged.connect(self._check)
        self._check()

    def stop(self):
        project, self.project = self.project, None
        if project is None:
            return
        try:  # at exit (qgis_process) the project may be deleted before the provider is unloaded
            project.crsChanged.disconnect(self._check)
            project.ellipsoidChanged.disconnect(self._check)
        except (TypeError, RuntimeError):
            pass
