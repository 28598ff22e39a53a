"""Progress and cancel for long work, independent of QGIS.

Core functions take an optional ``progress`` object with ``set(fraction, message=None)`` and a
``cancelled`` property. The QGIS glue wraps ``QgsProcessingFeedback`` in one; the command line uses
:class:`ConsoleProgress`; ``None`` means silent.
"""
import sys
import time

from .errors import Cancelled


class Progress:
    """Silent progress: the base class and the default."""

    cancelled = False

    def set(self, fraction, message=None):
        pass

    def check(self):
        """Raise :class:`Cancelled` if the user asked to stop."""
        if self.cancelled:
            raise Cancelled("cancelled by the user")


class ConsoleProgress(Progress):
    """A one-line progress bar on standard error, at most a few updates a second."""

    def __init__(self, label="", stream=None, width=30):
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self._last = 0.0

    def set(self, fraction, message=None):
        now = time.monotonic()
        if fraction < 1.0 and now - self._last < 0.2:
            return
        self._last = now
        f = min(max(float(fraction), 0.0), 1.0)
        bar = "#" * int(round(f * self.width))
        text = f"\r{self.label} [{bar:<{self.width}}] {100 * f:5.1f}%"
        if message:
            text += f" {message}"
        self.stream.write(text[:120])
        if f >= 1.0:
            self.stream.write("\n")
        self.stream.flush()


def as_progress(progress):
    """Return ``progress`` or a silent :class:`Progress` when it is ``None``."""
    return progress if progress is not None else Progress()


def subrange(progress, start, stop):
    """A progress object mapping [0, 1] onto [start, stop] of ``progress``."""
    parent = as_progress(progress)

    class _Sub(Progress):
        @property
        def cancelled(self):
            return parent.cancelled

        def set(self, fraction, message=None):
            parent.set(start + (stop - start) * float(fraction), message)

    return _Sub()
