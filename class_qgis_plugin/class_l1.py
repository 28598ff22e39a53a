"""Reader of CLASS (Chandrayaan-2 Large Area Soft X-ray Spectrometer) L1 spectra.

CLASS L1 files as PRADAN distributes them are OGIP PHA type I files: a ``SPECTRUM`` binary table
of 2048 channels (13.5 eV each) for the raw 8-s frames, or 1024 channels (27 eV, adjacent pairs
summed) for ISRO's X2ABUNDANCE products, with the observation geometry in the header:
``STARTIME``/``ENDTIME``/``MID_UTC`` (UTC), the four footprint corners ``V0..V3_LAT/LON``,
``BORE_LAT/LON``, ``SOLARANG``, ``EMISNANG``, ``PHASEANG`` and ``SAT_ALT``.

Reading is fast: a file that has the simple fixed layout of the L1 products (a primary header
without data, then one binary table of scalar numeric columns) is parsed directly with NumPy from
its bytes, about two orders of magnitude faster than opening it with astropy; any other layout
falls back to astropy. Both paths give the same numbers (tested).

A bad file (not FITS, truncated, missing or non-numeric key, NaN corner, wrong channel count,
zero exposure) raises :class:`ClassXRFError` naming the file and the key.
"""
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

import numpy as np

from .errors import ClassXRFError
from .ogip import NotSimple, fast_table, header_float, parse_utc

__all__ = ["ClassFrame", "read_class_l1", "rebin_channels", "CLASS_CHANNELS", "FRAME_SECONDS"]

#: channel counts of CLASS L1 spectra: raw (13.5 eV) and pair-summed (27 eV)
CLASS_CHANNELS = (2048, 1024)
#: duration of one raw CLASS L1 frame
FRAME_SECONDS = 8.0

_ANGLE_KEYS = ("SOLARANG", "EMISNANG", "PHASEANG")


@dataclass
class ClassFrame:
    """One CLASS L1 spectrum and its geometry (angles in degrees, altitude in km)."""
    counts: np.ndarray
    exposure: float
    start: datetime
    end: datetime
    mid: datetime
    corner_lat: np.ndarray
    corner_lon: np.ndarray
    bore_lat: float
    bore_lon: float
    solar_angle: float
    emission_angle: float
    phase_angle: float
    sat_alt: float
    header: dict = field(default_factory=dict)
    path: Optional[str] = None
    first_channel: int = 0

    @property
    def n_channels(self):
        return int(self.counts.size)

    @property
    def channel(self):
        return self.first_channel + np.arange(self.n_channels)


def rebin_channels(counts, factor=2):
    """Sum adjacent groups of ``factor`` channels along the last axis (2048 -> 1024 for 2).

    Counts are summed exactly; the channel count must be a multiple of ``factor``.
    """
    c = np.asarray(counts)
    factor = int(factor)
    if factor < 1:
        raise ClassXRFError(None, f"rebinning factor must be >= 1 (got {factor})", key="factor")
    n = c.shape[-1]
    if n % factor:
        raise ClassXRFError(None, f"{n} channels cannot be rebinned by {factor}",
                            key="channels")
    return c.reshape(c.shape[:-1] + (n // factor, factor)).sum(axis=-1)


# --------------------------------------------------------------------------------------------
# fast path: the fixed layout of the L1 products parsed from bytes
# --------------------------------------------------------------------------------------------

def _astropy_table(path):
    """The SPECTRUM table and header through astropy (any valid layout)."""
    from .ogip import _column, open_fits, spectrum_table
    hdul = open_fits(path)
    try:
        hdr, comments, data, key, values = spectrum_table(hdul, path)
        cols = {key: values}
        channel = _column(data, "CHANNEL", path, required=False)
        if channel is not None:
            cols["CHANNEL"] = channel
        return hdr, comments, cols
    finally:
        hdul.close()


# --------------------------------------------------------------------------------------------
# public reader
# --------------------------------------------------------------------------------------------

def read_class_l1(path, use_fast=True):
    """Read one CLASS L1 spectrum (2048 or 1024 channels) into a :class:`ClassFrame`.

    ``use_fast=False`` forces the astropy path (used by tests to compare both).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ClassXRFError(path, "file not found")
    hdr = comments = cols = None
    if use_fast:
        try:
            with open(path, "rb") as fh:
                buf = fh.read()
        except OSError as exc:
            raise ClassXRFError(path, f"cannot read the file ({exc})") from None
        try:
            hdr, comments, table = fast_table(path, buf)
            cols = {n: table[n] for n in table.dtype.names}
        except NotSimple:
            hdr = None
    if hdr is None:
        hdr, comments, cols = _astropy_table(path)
    return _frame_from(path, hdr, cols)


def _frame_from(path, hdr, cols):
    if "COUNTS" in cols:
        counts = np.asarray(cols["COUNTS"], dtype=np.float64)
        key = "COUNTS"
    elif "RATE" in cols:
        key = "RATE"
        counts = None
    else:
        raise ClassXRFError(path, "spectrum has neither a COUNTS nor a RATE column",
                            key="COUNTS")
    if (cols[key].ndim if hasattr(cols[key], "ndim") else 1) != 1:
        raise ClassXRFError(path, "is not a type I spectrum (one spectrum per file)", key=key)
    n = cols[key].shape[0]
    if n not in CLASS_CHANNELS:
        raise ClassXRFError(path, f"has {n} channels; CLASS L1 spectra have 2048 (raw) or "
                            "1024 (pair-summed)", key="NAXIS2")
    det = hdr.get("DETCHANS")
    if isinstance(det, (int, np.integer)) and int(det) != n:
        raise ClassXRFError(path, f"DETCHANS says {det} channels but the table has {n}",
                            key="DETCHANS")
    exposure = header_float(hdr, "EXPOSURE", path)
    if exposure <= 0:
        raise ClassXRFError(path, f"exposure must be positive (got {exposure})",
                            key="EXPOSURE")
    if counts is None:
        counts = np.asarray(cols["RATE"], dtype=np.float64) * exposure
    if not np.all(np.isfinite(counts)):
        raise ClassXRFError(path, "spectrum has non-finite values", key=key)
    first = 0
    if "CHANNEL" in cols:
        ch = np.asarray(cols["CHANNEL"]).astype(np.int64)
        first = int(ch[0])
        if not np.array_equal(ch, first + np.arange(n)):
            raise ClassXRFError(path, "channels are not consecutive", key="CHANNEL")
    elif isinstance(hdr.get("TLMIN1"), (int, np.integer)):
        first = int(hdr["TLMIN1"])
    start = parse_utc(_req(hdr, "STARTIME", path), path, "STARTIME")
    end = parse_utc(_req(hdr, "ENDTIME", path), path, "ENDTIME")
    if end <= start:
        raise ClassXRFError(path, f"ends ({end.isoformat()}) before it starts "
                            f"({start.isoformat()})", key="ENDTIME")
    mid = parse_utc(hdr["MID_UTC"], path, "MID_UTC") if hdr.get("MID_UTC") else \
        start + (end - start) / 2
    lat = np.array([_angle(hdr, f"V{i}_LAT", path, -90.0, 90.0) for i in range(4)])
    lon = np.array([_angle(hdr, f"V{i}_LON", path, -360.0, 360.0) for i in range(4)])
    bore_lat = _angle(hdr, "BORE_LAT", path, -90.0, 90.0)
    bore_lon = _angle(hdr, "BORE_LON", path, -360.0, 360.0)
    angles = [_angle(hdr, k, path, 0.0, 180.0) for k in _ANGLE_KEYS]
    sat_alt = header_float(hdr, "SAT_ALT", path)
    return ClassFrame(counts=counts, exposure=exposure, start=start, end=end, mid=mid,
                      corner_lat=lat, corner_lon=lon, bore_lat=bore_lat, bore_lon=bore_lon,
                      solar_angle=angles[0], emission_angle=angles[1], phase_angle=angles[2],
                      sat_alt=sat_alt, header=hdr, path=path, first_channel=first)


def _req(hdr, key, path):
    if key not in hdr or hdr[key] is None or (isinstance(hdr[key], str) and not hdr[key].strip()):
        raise ClassXRFError(path, "required header key is missing", key=key)
    return hdr[key]


def _angle(hdr, key, path, lo, hi):
    """A finite angle within [lo, hi] degrees (NaN or out-of-range values are errors)."""
    x = header_float(hdr, key, path)
    if not lo <= x <= hi:
        raise ClassXRFError(path, f"value {x} is outside [{lo}, {hi}] degrees", key=key)
    return x
