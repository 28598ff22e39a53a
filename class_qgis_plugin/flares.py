"""The XSM solar flare catalogue and the flare filter of the co-add stage.

The catalogue is the CSV of solar flares seen by Chandrayaan-2 XSM (e.g. ``SD-CH2.csv``: 6266
flares, 2019-09 to 2022-11): one row per flare with ``date`` (``YYYYMMDD``), the start, peak and
end times in seconds of that UTC day (``post_fit_start_time``, ``post_fit_peak_time``,
``post_fit_end_time``; the ``pre_fit_*`` columns are used when the fitted ones are empty) and the
GOES-like class ``flare_class_with_bg`` (``B5``, ``C1``, ``sub-A``...).

CLASS sees lunar fluorescence of Mg, Al, Si only under B/C-class flares or brighter, and A-class
(or weaker) flares give too few counts, while X-class flares saturate/pile up the detectors, so
the default keeps frames inside B, C and M flares and rejects the rest; the classes are
configurable.
"""
import csv
import os
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from .errors import ClassXRFError
from .specs import CoaddParams

__all__ = ["FlareCatalog", "read_flare_catalog", "flare_letter", "DEFAULT_ALLOWED"]

#: the flare classes co-added by default (the co-add stage's ``allowed_classes``)
DEFAULT_ALLOWED = CoaddParams.allowed_classes

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def flare_letter(cls):
    """The class letter of a flare class string: ``'B5'`` -> ``'B'``, ``'M1.2'`` -> ``'M'``,
    ``'sub-A'`` -> ``'sub-A'`` (below A), anything unreadable -> ``''``."""
    s = str(cls).strip()
    if s.lower().startswith("sub"):
        return "sub-A"
    if s and s[0].upper() in "ABCMX":
        return s[0].upper()
    return ""


def _seconds(dt):
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH).total_seconds()


@dataclass
class FlareCatalog:
    """Flares as arrays sorted by start: ``start``/``peak``/``end`` in seconds since 1970-01-01
    UTC, ``flare_class`` (as written) and ``letter`` (A, B, C, M, X or sub-A)."""
    start: np.ndarray
    peak: np.ndarray
    end: np.ndarray
    flare_class: np.ndarray
    letter: np.ndarray
    path: str = None

    def __len__(self):
        return int(self.start.size)

    def flare_at(self, times, allowed=None):
        """Index of the flare (the brightest-class one if several) that contains each time
        (``datetime`` or seconds since 1970), -1 where none does; with ``allowed`` only flares
        of those class letters count."""
        t = np.array([_seconds(x) if isinstance(x, datetime) else float(x)
                      for x in np.atleast_1d(times)], dtype=float)
        out = np.full(t.size, -1, dtype=np.int64)
        if not len(self):
            return out
        ok = np.ones(len(self), bool) if allowed is None else \
            np.isin(self.letter, [flare_letter(a) if flare_letter(a) else a for a in allowed])
        rank = {"sub-A": 0, "A": 1, "B": 2, "C": 3, "M": 4, "X": 5}
        r = np.array([rank.get(x, -1) for x in self.letter])
        # flares may overlap: check every flare whose start <= t (sorted) and end >= t
        max_dur = float(np.max(self.end - self.start)) if len(self) else 0.0
        lo = np.searchsorted(self.start, t - max_dur, side="left")
        hi = np.searchsorted(self.start, t, side="right")
        for k in range(t.size):
            idx = np.arange(lo[k], hi[k])
            idx = idx[(self.end[idx] >= t[k]) & ok[idx]]
            if idx.size:
                out[k] = idx[np.argmax(r[idx])]
        return out

    def classes_at(self, times):
        """Class string of the brightest flare containing each time ('' where none)."""
        idx = self.flare_at(times)
        return np.array([self.flare_class[i] if i >= 0 else "" for i in idx], dtype=object)

    def in_allowed_flare(self, times, allowed_classes=DEFAULT_ALLOWED):
        """Boolean per time: the brightest flare containing the time is of an allowed class
        (so an X flare overlapping a C flare rejects the frame, a B flare over an A one keeps
        it); times in no flare are rejected."""
        allowed = {flare_letter(a) or a for a in allowed_classes}
        idx = self.flare_at(times)
        return np.array([i >= 0 and self.letter[i] in allowed for i in idx], dtype=bool)


def _num(row, keys, path, line):
    for k in keys:
        v = row.get(k)
        if v is not None and str(v).strip() not in ("", "nan", "NaN"):
            try:
                return float(v)
            except ValueError:
                raise ClassXRFError(path, f"line {line}: {v!r} is not a number", key=k) from None
    raise ClassXRFError(path, f"line {line}: no value", key=keys[0])


def read_flare_catalog(path):
    """Read the XSM flare catalogue CSV into a :class:`FlareCatalog`.

    A flare whose end time (seconds of day) is before its start crosses midnight: its end is
    moved to the next day.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ClassXRFError(path, "flare catalogue not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip() for f in (reader.fieldnames or [])]
            for need in ("date", "flare_class_with_bg"):
                if need not in fields:
                    raise ClassXRFError(path, "required column is missing", key=need)
            if "post_fit_start_time" not in fields and "pre_fit_start_time" not in fields:
                raise ClassXRFError(path, "required column is missing",
                                    key="post_fit_start_time")
            starts, peaks, ends, classes = [], [], [], []
            for line, raw in enumerate(reader, start=2):
                row = {k.strip(): v for k, v in raw.items() if k is not None}
                d = str(row.get("date", "")).strip()
                try:
                    day = datetime.strptime(d, "%Y%m%d").replace(tzinfo=timezone.utc)
                except ValueError:
                    raise ClassXRFError(path, f"line {line}: date {d!r} is not YYYYMMDD",
                                        key="date") from None
                s = _num(row, ("post_fit_start_time", "pre_fit_start_time"), path, line)
                e = _num(row, ("post_fit_end_time", "pre_fit_end_time"), path, line)
                try:
                    p = _num(row, ("post_fit_peak_time", "pre_fit_peak_time"), path, line)
                except ClassXRFError:
                    p = 0.5 * (s + e)
                if e < s:
                    e += 86400.0
                if p < s:
                    p += 86400.0
                base = _seconds(day)
                starts.append(base + s)
                peaks.append(base + p)
                ends.append(base + e)
                classes.append(str(row.get("flare_class_with_bg", "")).strip())
    except UnicodeDecodeError:
        raise ClassXRFError(path, "is not a text CSV file") from None
    except csv.Error as exc:
        raise ClassXRFError(path, f"is not a readable CSV file ({exc})") from None
    start = np.asarray(starts, float)
    order = np.argsort(start, kind="stable")
    cls = np.asarray(classes, dtype=object)[order]
    return FlareCatalog(start=start[order], peak=np.asarray(peaks, float)[order],
                        end=np.asarray(ends, float)[order], flare_class=cls,
                        letter=np.array([flare_letter(c) for c in cls], dtype=object),
                        path=path)

