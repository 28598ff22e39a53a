"""Run one task of :mod:`tasks` in its own Python process: ``python -m class_qgis_plugin.worker``.

Why a separate process: the QGIS executables (``qgis``, ``qgis_process``) link the system GEOS and
GDAL, and their symbols take precedence over the newer GEOS/GDAL bundled inside the shapely,
pyogrio and rasterio wheels, which then fail (shapely's WKB writer) or crash the process (pyogrio at
exit). A plain Python process has no such conflict, and a heavy computation (torch, large numpy
arrays) cannot take QGIS down with it. Cancelling is a SIGTERM, which the worker turns into
:class:`errors.Cancelled`, so atomic writes clean their temporary files.

Protocol: one JSON request on standard input, ``{"task": STAGE, "params": {...}}`` (the stage's
spec as a dict, :meth:`specs.Spec.to_dict`); JSON lines on
standard output: ``{"progress": f, "message": m}`` while it works, then one final line
``{"result": {...}}`` or ``{"error": message, "type": "ClassXRFError" | "Cancelled" | "Exception"}``.
"""
import json
import os
import signal
import sys
import traceback


def jsonable(x):
    """``x`` with numpy values, tuples and paths turned into JSON types (the one place a stage's
    summary is made serialisable: at the process boundary)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if hasattr(x, "tolist") and hasattr(x, "dtype"):     # numpy arrays and scalars
        return jsonable(x.tolist())
    return x


def _emit(obj, stream):
    stream.write(json.dumps(obj) + "\n")
    stream.flush()


def main(stdin=None, stdout=None):
    from .errors import Cancelled, ClassXRFError
    from .progress import Progress
    from . import tasks

    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    # anything a library prints goes to stderr, keeping stdout for the protocol
    sys.stdout = sys.stderr

    class LineProgress(Progress):
        def __init__(self):
            self._last = (-1.0, None)

        def set(self, fraction, message=None):
            f = round(min(max(float(fraction), 0.0), 1.0), 3)
            if (f, message) != self._last:
                self._last = (f, message)
                _emit({"progress": f, "message": message}, out)

    def _terminate(signum, frame):
        raise Cancelled("cancelled by the user")

    signal.signal(signal.SIGTERM, _terminate)
    try:
        request = json.loads(stdin.read())
        result = tasks.run(request["task"], request.get("params", {}), progress=LineProgress())
        _emit({"result": jsonable(result)}, out)
        return 0
    except ClassXRFError as exc:
        _emit({"error": str(exc), "type": "ClassXRFError"}, out)
    except Cancelled as exc:
        _emit({"error": str(exc), "type": "Cancelled"}, out)
    except Exception as exc:  # an unexpected failure: report it with its traceback
        tb = traceback.format_exc(limit=8)
        _emit({"error": f"{type(exc).__name__}: {exc}", "type": "Exception", "traceback": tb}, out)
    return 1


if __name__ == "__main__":
    sys.exit(main())
