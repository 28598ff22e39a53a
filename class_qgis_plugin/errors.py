"""Errors of the science core.

Every error a user can cause by giving a bad file names the file and, where there is one, the
header key or column at fault, so a message in QGIS (``QgsProcessingException``) or on the command
line says exactly what to fix.
"""


class ClassXRFError(Exception):
    """An input (file, parameter) the core cannot use.

    ``path`` is the file at fault (or ``None`` for a parameter), ``key`` the header key, column or
    parameter, and ``problem`` a sentence saying what is wrong.
    """

    def __init__(self, path, problem, key=None):
        self.path = None if path is None else str(path)
        self.key = key
        self.problem = problem
        where = self.path if self.path is not None else "input"
        msg = f"{where}: {problem}" if key is None else f"{where}: {key}: {problem}"
        super().__init__(msg)

    def __reduce__(self):
        # rebuilt from its fields: an error raised in a process of parallel.map_chunks comes back whole
        return (type(self), (self.path, self.problem, self.key))


class Cancelled(BaseException):
    """Raised when a progress callback reports that the user cancelled the work (or the worker
    gets SIGTERM).

    Not an :class:`Exception`: code that turns failures into file errors (``except Exception``, e.g.
    around a FITS reader) lets a cancel through, as Python does with ``KeyboardInterrupt``; catch it
    by name where a cancel is handled."""
