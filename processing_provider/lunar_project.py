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
import re

from qgis.core import Qgis, QgsEllipsoidUtils, QgsMessageLog, QgsProject

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


def is_lunar(crs):
    """True when ``crs`` is defined on a body of the Moon's radius."""
    if crs is None or not crs.isValid():
        return False
    p = QgsEllipsoidUtils.ellipsoidParameters(crs.ellipsoidAcronym())
    return p.valid and _lunar(p.semiMajor)


_NO_TRANSFORM = re.compile(r"^No transform available between (.+?) and (.+)$")


def dismiss_switch_messages(lunar_authid):
    """When a project changes from an Earth CRS to a lunar one, QGIS 3.22 desktop tries to carry the
    previous view and its ellipsoid over and reports, in red, "No transform available between
    ESRI:104903 and EPSG:4326" (and "... and Custom CRS", the WGS 84 ellipsoid's CRS): there is no
    transform between bodies, and none is needed (measured: the message comes with any lunar CRS,
    even on an empty project whose canvas has no extent; "EPSG:4326 and Custom CRS" comes when the
    lunar sphere becomes the ellipsoid while the old CRS is still set). Those messages, and only
    those (one side the lunar CRS or the ellipsoid's "Custom CRS"), are moved from the message bar to the message log
    (tab "CLASS lunar XRF") in the ten seconds after the switch, with the reason. Desktop only."""
    try:
        from qgis.PyQt.QtCore import QTimer
        from qgis.utils import iface
    except ImportError:
        return
    if iface is None:
        return

    def sweep():
        try:
            bar = iface.messageBar()
            for item in list(bar.items()):
                m = _NO_TRANSFORM.match(item.text() or "")
                if not m or not {lunar_authid, "Custom CRS"} & {m.group(1).strip(), m.group(2).strip()}:
                    continue
                QgsMessageLog.logMessage(
                    f"{item.text()}: reported by QGIS while the project changed to the lunar CRS {lunar_authid}; "
                    f"there is no transform between the Moon and the Earth, and the lunar project needs none",
                    "CLASS lunar XRF", Qgis.Info)
                bar.popWidget(item)
        except RuntimeError:  # QGIS is closing
            pass
    for delay in (0, 250, 1000, 2500, 5000, 10000):   # later ones for a loaded machine
        QTimer.singleShot(delay, sweep)


class EllipsoidWatcher:
    """Keeps the current project's ellipsoid lunar while its CRS is lunar, and clears the messages
    QGIS 3.22 shows when a project becomes lunar (see the module's notes)."""

    def __init__(self):
        self.project = None
        self.was_lunar = False

    def _check(self, *args):
        try:
            lunar_ellipsoid(self.project)
            now = is_lunar(self.project.crs())
            if now and not self.was_lunar:
                dismiss_switch_messages(self.project.crs().authid())
            self.was_lunar = now
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
