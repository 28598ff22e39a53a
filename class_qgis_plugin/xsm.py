"""Chandrayaan-2 Solar X-ray Monitor (XSM) spectra and response, without XSMDAS/HEASoft.

* Type I spectra (``xsmgenspec`` time-integrated output, one spectrum per file) are read with
  :func:`read_xsm_pha`; their times (``TSTART``/``TSTOP`` in mission elapsed time, MET) and GTI.
* Type II spectra (``xsmgenspec spectype=time-resolved``: one spectrum per row with ``TSTART``,
  ``TSTOP``, ``EXPOSURE`` columns) are read with :func:`read_xsm_typeii` and summed over a time
  window with :func:`sum_time_window` (the ``xsmgenspec`` step that makes a spectrum matching an
  observation): rows whose time bin overlaps the window are weighted by the fraction of the bin
  inside the window and inside the good time intervals (GTI), counts and exposure alike.
* MET is seconds since ``MJDREF`` (XSM: MJD 57754 = 2017-01-01T00:00:00 UTC, ``TIMESYS='UTC'``),
  converted with ``astropy.time`` (:func:`met_to_utc`, :func:`utc_to_met`), reading ``MJDREF``
  (or ``MJDREFI`` + ``MJDREFF``) from the header.

Response
--------
ISRO's XSM redistribution matrix (``CH2xsmresponse20200423v01.rmf``) is not public. When the user
gives an RMF it is used (read with :func:`class_qgis_plugin.ogip.read_rmf`); otherwise
:func:`approximate_rmf` builds a Gaussian redistribution on the ARF's energy grid:

* PI channel scale: linear, ``E = PI_OFFSET + PI_GAIN * channel`` at the channel centre, 512
  channels of 1/30 keV (33.3 eV) from 0.5 keV. Verified on the real 16-s flare spectrum
  ``ch2_xsm_20210827_l1.pha``: the centroids of the Si, S, Ca and Fe line complexes lie at
  channels 41.05, 58.30, 102.61 and 184.45, i.e. 1.868, 2.443, 3.920 and 6.648 keV with this
  scale, against 1.865 (Si XIII w, blended with Si XIV), 2.46 (S XV), 3.90 (Ca XIX) and
  6.64-6.70 keV (Fe XXV with its satellites) (tests/core/test_xsm.py repeats this check).
* Energy resolution of the XSM silicon drift detector: FWHM about 180 eV at 5.9 keV
  (Vadawale et al. 2014, Adv. Space Res. 54, 2021; Mithun et al. 2020, Sol. Phys. 295, 139),
  modelled as electronic noise plus Fano statistics,
  ``FWHM(E) = 2.3548 sqrt(sigma_n^2 + F w E)`` with ``F = 0.12`` (Fano factor of silicon) and
  ``w = 3.65 eV`` (energy per electron-hole pair in silicon), ``sigma_n`` set so that
  ``FWHM(5.9 keV) = 0.180 keV``. This gives 0.150 keV at 1.87 keV, matching the 0.145-0.157 keV
  measured on the Si and S complexes of the flare spectrum.

The response used is said in :attr:`XSMResponse.kind` (``"rmf"`` or ``"approximate"``) and
:attr:`XSMResponse.description`, which the solar fit writes into its output.
"""
import glob
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

import numpy as np

from .errors import ClassXRFError
from .progress import as_progress
from .ogip import open_fits

__all__ = [
    "XSMSpectrum", "XSMTypeII", "XSMResponse", "read_xsm_pha", "read_xsm_typeii",
    "sum_time_window", "met_to_utc", "utc_to_met", "mjdref_of", "approximate_rmf",
    "xsm_channel_bounds", "xsm_fwhm", "load_response", "find_arf", "scan_xsm_folder",
    "PI_GAIN", "PI_OFFSET", "N_PI_CHANNELS", "XSM_MJDREF",
]

#: XSM PI channel scale (keV per channel, keV at the centre of channel 0) and channel count.
PI_GAIN = 1.0 / 30.0
PI_OFFSET = 0.5
N_PI_CHANNELS = 512
#: XSM mission reference epoch (MJD, UTC) used when a header lacks MJDREF.
XSM_MJDREF = 57754.0
#: Energy resolution of the approximate response: FWHM at a reference energy, Fano factor and
#: pair-creation energy of silicon (keV).
FWHM_REF_KEV = 0.180
E_REF_KEV = 5.9
FANO = 0.12
W_PAIR_KEV = 3.65e-3


# --------------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------------

def mjdref_of(header, path=None):
    """The MET reference epoch (MJD) of a header: ``MJDREF`` or ``MJDREFI + MJDREFF``."""
    if "MJDREF" in header:
        try:
            return float(header["MJDREF"])
        except (TypeError, ValueError):
            raise ClassXRFError(path, f"not a number ({header['MJDREF']!r})", key="MJDREF") from None
    if "MJDREFI" in header:
        return float(header["MJDREFI"]) + float(header.get("MJDREFF", 0.0))
    raise ClassXRFError(path, "missing: cannot convert mission elapsed time to UTC", key="MJDREF")


def _timescale(timesys):
    t = str(timesys or "UTC").strip().lower()
    return t if t in ("utc", "tt", "tai", "tdb") else "utc"


def met_to_utc(met, mjdref=XSM_MJDREF, timesys="UTC"):
    """Mission elapsed time (s since ``mjdref``, in ``timesys``) to timezone-aware UTC datetimes.

    Scalar in, datetime out; array in, list of datetimes out. Uses ``astropy.time`` so leap
    seconds are counted.
    """
    from astropy.time import Time, TimeDelta
    scale = _timescale(timesys)
    ref = Time(float(mjdref), format="mjd", scale=scale)
    arr = np.asarray(met, dtype=float)
    t = (ref + TimeDelta(arr, format="sec")).utc
    dts = t.to_datetime(timezone=timezone.utc)
    return dts


def utc_to_met(when, mjdref=XSM_MJDREF, timesys="UTC"):
    """UTC time (datetime, ISO string, or a sequence of them) to mission elapsed time (s)."""
    from astropy.time import Time
    scale = _timescale(timesys)
    ref = Time(float(mjdref), format="mjd", scale=scale)

    def conv(w):
        if isinstance(w, datetime):
            if w.tzinfo is not None:
                w = w.astimezone(timezone.utc).replace(tzinfo=None)
            return w
        s = str(w).strip().replace(" ", "T", 1)
        if s.endswith("Z"):
            s = s[:-1]
        try:
            d = datetime.fromisoformat(s)
        except ValueError:
            return s
        if d.tzinfo is not None:
            d = d.astimezone(timezone.utc).replace(tzinfo=None)
        return d

    if isinstance(when, (list, tuple, np.ndarray)):
        vals = [conv(w) for w in when]
        t = Time(vals, scale="utc")
        return np.asarray((getattr(t, scale) - ref).sec, dtype=float)
    t = Time(conv(when), scale="utc")
    return float((getattr(t, scale) - ref).sec)


# --------------------------------------------------------------------------------------------
# Spectra
# --------------------------------------------------------------------------------------------

@dataclass
class XSMSpectrum:
    """One XSM spectrum (counts per PI channel) with its time range (MET s) and GTI."""
    counts: np.ndarray
    channel: np.ndarray
    exposure: float
    tstart: float
    tstop: float
    mjdref: float = XSM_MJDREF
    timesys: str = "UTC"
    gti: Optional[np.ndarray] = None
    sys_err: Optional[np.ndarray] = None
    header: dict = field(default_factory=dict)
    path: Optional[str] = None
    arf_path: Optional[str] = None
    n_rows: int = 1

    @property
    def start_utc(self):
        return met_to_utc(self.tstart, self.mjdref, self.timesys)

    @property
    def stop_utc(self):
        return met_to_utc(self.tstop, self.mjdref, self.timesys)


@dataclass
class XSMTypeII:
    """A time-resolved XSM file: ``counts[row, channel]`` with per-row TSTART/TSTOP/EXPOSURE."""
    counts: np.ndarray
    channel: np.ndarray
    tstart: np.ndarray
    tstop: np.ndarray
    exposure: np.ndarray
    mjdref: float = XSM_MJDREF
    timesys: str = "UTC"
    gti: Optional[np.ndarray] = None
    header: dict = field(default_factory=dict)
    path: Optional[str] = None
    arf_path: Optional[str] = None


def _spectrum_hdu(hdul, path):
    for h in hdul[1:]:
        if str(h.header.get("EXTNAME", "")).strip().upper() == "SPECTRUM":
            return h
    for h in hdul[1:]:
        if h.data is not None and hasattr(h, "columns") and (
                "COUNTS" in h.columns.names or "RATE" in h.columns.names):
            return h
    raise ClassXRFError(path, "no SPECTRUM extension with a COUNTS or RATE column", key="SPECTRUM")


def _read_gti(hdul, path):
    for h in hdul[1:]:
        name = str(h.header.get("EXTNAME", "")).strip().upper()
        if name in ("GTI", "STDGTI") and h.data is not None:
            try:
                start = np.asarray(h.data["START"], float)
                stop = np.asarray(h.data["STOP"], float)
            except KeyError:
                raise ClassXRFError(path, "GTI extension lacks START/STOP columns", key="GTI") from None
            if np.any(stop < start):
                raise ClassXRFError(path, "a good time interval ends before it starts", key="GTI")
            return np.column_stack([start, stop])
    return None


def _header_dict(header):
    out = {}
    for k in header.keys():
        if k in ("", "COMMENT", "HISTORY"):
            continue
        try:
            out[k] = header[k]
        except Exception:  # unparseable card: keep going
            continue
    return out


def _fnum(header, key, path, default=None):
    if key not in header:
        if default is not None:
            return default
        raise ClassXRFError(path, "required key is missing", key=key)
    try:
        return float(header[key])
    except (TypeError, ValueError):
        raise ClassXRFError(path, f"not a number ({header[key]!r})", key=key) from None


def find_arf(pha_path, header=None):
    """The ARF named by ``ANCRFILE`` (relative to the spectrum's folder), else ``<stem>.arf``
    beside the spectrum; ``None`` when neither exists."""
    folder = os.path.dirname(os.path.abspath(pha_path))
    cands = []
    if header is not None:
        a = str(header.get("ANCRFILE", "") or "").strip()
        if a and a.lower() != "none":
            cands += [a if os.path.isabs(a) else os.path.join(folder, a),
                      os.path.join(folder, os.path.basename(a))]
    stem = os.path.splitext(os.path.abspath(pha_path))[0]
    cands.append(stem + ".arf")
    for c in cands:
        if os.path.isfile(c):
            return c
    return None


def read_xsm_pha(path):
    """Read a type I XSM spectrum (``xsmgenspec`` output) into an :class:`XSMSpectrum`.

    The spectrum itself is read by :func:`ogip.read_pha` (``COUNTS`` or ``RATE`` x ``EXPOSURE``,
    errors naming the file and key); ``TSTART``/``TSTOP`` (MET) come from the header, or from
    ``DATE-OBS``/``DATE-END`` when absent; GTI from a ``GTI`` extension when present, else
    ``[[TSTART, TSTOP]]``.
    """
    from .ogip import read_pha

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ClassXRFError(path, "XSM spectrum file not found")
    try:
        pha = read_pha(path)
    except ClassXRFError as exc:
        if "type II" in exc.problem:
            raise ClassXRFError(path, "is a type II (time-resolved) file: use read_xsm_typeii",
                                key="COUNTS") from None
        raise
    h = pha.header
    mjdref = mjdref_of(h, path) if ("MJDREF" in h or "MJDREFI" in h) else XSM_MJDREF
    timesys = str(h.get("TIMESYS", "UTC")).strip()
    if "TSTART" in h and "TSTOP" in h:
        tstart, tstop = _fnum(h, "TSTART", path), _fnum(h, "TSTOP", path)
    elif "DATE-OBS" in h and "DATE-END" in h:
        tstart = utc_to_met(str(h["DATE-OBS"]), mjdref, timesys)
        tstop = utc_to_met(str(h["DATE-END"]), mjdref, timesys)
    else:
        raise ClassXRFError(path, "no time range (TSTART/TSTOP or DATE-OBS/DATE-END)", key="TSTART")
    if tstop < tstart:
        raise ClassXRFError(path, f"TSTOP {tstop} is before TSTART {tstart}", key="TSTOP")
    with open_fits(path) as hdul:
        gti = _read_gti(hdul, path)
    if gti is None:
        gti = np.array([[tstart, tstop]], float)
    return XSMSpectrum(counts=np.asarray(pha.counts, float), channel=np.asarray(pha.channel, np.int64),
                       exposure=float(pha.exposure), tstart=tstart, tstop=tstop, mjdref=mjdref, timesys=timesys,
                       gti=gti, sys_err=pha.sys_err, header=h, path=path, arf_path=find_arf(path, h))


def read_xsm_typeii(path):
    """Read a time-resolved (type II) XSM spectrum file: one spectrum per row with ``TSTART``,
    ``TSTOP`` (MET) and ``EXPOSURE`` columns (``EXPOSURE`` may be a header key), ``COUNTS`` or
    ``RATE`` vector column, and an optional ``GTI`` extension."""
    path = os.fspath(path)
    with open_fits(path) as hdul:
        hdu = _spectrum_hdu(hdul, path)
        h = hdu.header
        data = hdu.data
        names = [n.upper() for n in hdu.columns.names]
        if data is None or len(data) == 0:
            raise ClassXRFError(path, "spectrum table has no rows", key="SPECTRUM")
        for key in ("TSTART", "TSTOP"):
            if key not in names:
                raise ClassXRFError(path, "time-resolved spectrum lacks this column", key=key)
        tstart = np.asarray(data["TSTART"], float)
        tstop = np.asarray(data["TSTOP"], float)
        if np.any(tstop <= tstart):
            raise ClassXRFError(path, "a row's TSTOP is not after its TSTART", key="TSTOP")
        if "EXPOSURE" in names:
            exposure = np.asarray(data["EXPOSURE"], float)
        elif "EXPOSURE" in h:
            exposure = np.full(tstart.size, _fnum(h, "EXPOSURE", path))
        else:
            exposure = tstop - tstart
        if np.any(~np.isfinite(exposure)) or np.any(exposure < 0):
            raise ClassXRFError(path, "exposure must be finite and non-negative", key="EXPOSURE")
        if "COUNTS" in names:
            counts = np.asarray(data["COUNTS"], float)
        elif "RATE" in names:
            counts = np.asarray(data["RATE"], float) * exposure[:, None]
        else:
            raise ClassXRFError(path, "neither COUNTS nor RATE column", key="COUNTS")
        if counts.ndim != 2:
            raise ClassXRFError(path, "is not time-resolved (COUNTS is not a vector column); "
                                "use read_xsm_pha", key="COUNTS")
        if not np.all(np.isfinite(counts)):
            raise ClassXRFError(path, "spectrum has non-finite values", key="COUNTS")
        if "CHANNEL" in names:
            ch = np.asarray(data["CHANNEL"])
            channel = np.asarray(ch[0] if ch.ndim > 1 else ch, np.int64)
        else:
            channel = np.arange(counts.shape[1]) + int(h.get("TLMIN1", 0))
        mjdref = mjdref_of(h, path)
        timesys = str(h.get("TIMESYS", "UTC")).strip()
        gti = _read_gti(hdul, path)
        header = _header_dict(h)
    return XSMTypeII(counts=counts, channel=channel, tstart=tstart, tstop=tstop,
                     exposure=exposure, mjdref=mjdref, timesys=timesys, gti=gti, header=header,
                     path=path, arf_path=find_arf(path, header))


def _overlap(a0, a1, b0, b1):
    return np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0.0, None)


def sum_time_window(spec2, t_start, t_stop):
    """Sum the rows of a type II spectrum over ``[t_start, t_stop]`` (MET seconds, or UTC
    datetimes / ISO strings) into an :class:`XSMSpectrum`.

    Each row is weighted by the fraction of its time bin that lies inside the window and inside
    the GTI (all of it when the file has no GTI); counts and exposure get the same weight, so the
    count rate of a partly covered row is kept. Raises when the window holds no good time.
    """
    path = spec2.path
    t0 = t_start if isinstance(t_start, (int, float, np.floating)) else \
        utc_to_met(t_start, spec2.mjdref, spec2.timesys)
    t1 = t_stop if isinstance(t_stop, (int, float, np.floating)) else \
        utc_to_met(t_stop, spec2.mjdref, spec2.timesys)
    t0, t1 = float(t0), float(t1)
    if not t1 > t0:
        raise ClassXRFError(path, f"time window {t0}..{t1} MET is empty", key="TSTART")
    width = spec2.tstop - spec2.tstart
    good = _overlap(spec2.tstart, spec2.tstop, t0, t1)
    if spec2.gti is not None and len(spec2.gti):
        g = np.zeros_like(good)
        for gs, ge in spec2.gti:
            w0, w1 = max(gs, t0), min(ge, t1)
            if w1 > w0:
                g += _overlap(spec2.tstart, spec2.tstop, w0, w1)
        good = g
    weight = np.clip(good / width, 0.0, 1.0)
    exposure = float(np.sum(weight * spec2.exposure))
    if exposure <= 0:
        raise ClassXRFError(path, f"no good exposure between MET {t0:.1f} and {t1:.1f} "
                            f"(file covers {spec2.tstart.min():.1f}..{spec2.tstop.max():.1f})",
                            key="TSTART")
    counts = weight @ spec2.counts
    sel = weight > 0
    gti = np.array([[t0, t1]]) if spec2.gti is None else np.array(
        [[max(a, t0), min(b, t1)] for a, b in spec2.gti if min(b, t1) > max(a, t0)])
    header = dict(spec2.header)
    header.update({"TSTART": t0, "TSTOP": t1, "EXPOSURE": exposure})
    return XSMSpectrum(counts=counts, channel=spec2.channel.copy(), exposure=exposure,
                       tstart=t0, tstop=t1, mjdref=spec2.mjdref, timesys=spec2.timesys, gti=gti,
                       header=header, path=path, arf_path=spec2.arf_path, n_rows=int(sel.sum()))


# --------------------------------------------------------------------------------------------
# Response
# --------------------------------------------------------------------------------------------

def xsm_channel_bounds(n_chan=N_PI_CHANNELS, gain=PI_GAIN, offset=PI_OFFSET, first_channel=0):
    """Nominal (E_MIN, E_MAX) keV of the PI channels: channel centre ``offset + gain * ch``."""
    ch = first_channel + np.arange(n_chan, dtype=float)
    centre = offset + gain * ch
    return centre - 0.5 * gain, centre + 0.5 * gain


def xsm_fwhm(energy_keV, fwhm_ref=FWHM_REF_KEV, e_ref=E_REF_KEV, fano=FANO, w_pair=W_PAIR_KEV):
    """FWHM (keV) of the XSM SDD at ``energy_keV``: noise + Fano, scaled to ``fwhm_ref`` at
    ``e_ref`` (see the module docstring for the sources)."""
    k = 2.0 * np.sqrt(2.0 * np.log(2.0))
    noise2 = (fwhm_ref / k) ** 2 - fano * w_pair * e_ref
    if noise2 < 0:
        raise ClassXRFError(None, f"FWHM {fwhm_ref} keV at {e_ref} keV is below the Fano limit",
                            key="fwhm_ref")
    return k * np.sqrt(noise2 + fano * w_pair * np.asarray(energy_keV, float))


@dataclass
class XSMResponse:
    """Response of one spectrum: redistribution (an ``ogip.RMF``), effective area on the RMF's
    energy grid, and which response it is."""
    rmf: object
    specresp: np.ndarray
    kind: str
    description: str
    arf_path: Optional[str] = None
    rmf_path: Optional[str] = None

    @property
    def energ_lo(self):
        return np.asarray(self.rmf.energ_lo, float)

    @property
    def energ_hi(self):
        return np.asarray(self.rmf.energ_hi, float)

    def fold(self, photon_flux_density, exposure):
        """Expected counts per channel of a photon flux density (photons cm^-2 s^-1 keV^-1 on
        the RMF's energy grid, shape (..., n_e)) seen for ``exposure`` s."""
        de = self.energ_hi - self.energ_lo
        return self.rmf.fold(np.asarray(photon_flux_density) * de * self.specresp) * exposure


def approximate_rmf(energ_lo, energ_hi, n_chan=N_PI_CHANNELS, gain=PI_GAIN, offset=PI_OFFSET,
                    first_channel=0, fwhm_ref=FWHM_REF_KEV, e_ref=E_REF_KEV):
    """A Gaussian redistribution matrix for the XSM SDD on the given energy grid (an
    ``ogip.RMF``): each energy bin's centre spread over the PI channels with the noise + Fano
    resolution of :func:`xsm_fwhm`, integrated exactly over each channel (error function). Rows
    are not renormalised: probability falling outside the channel range is lost, as in a real
    detector."""
    from scipy.special import erf
    from .ogip import RMF
    lo = np.asarray(energ_lo, float)
    hi = np.asarray(energ_hi, float)
    e = 0.5 * (lo + hi)
    sig = xsm_fwhm(e, fwhm_ref, e_ref) / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    e_min, e_max = xsm_channel_bounds(n_chan, gain, offset, first_channel)
    s2 = np.sqrt(2.0) * sig[:, None]
    matrix = 0.5 * (erf((e_max[None, :] - e[:, None]) / s2) - erf((e_min[None, :] - e[:, None]) / s2))
    matrix[matrix < 1e-12] = 0.0
    header = {"XSMRESP": "approximate", "PIGAIN": gain, "PIOFFSET": offset,
              "FWHMREF": fwhm_ref, "EREF": e_ref, "FANO": FANO, "WPAIR": W_PAIR_KEV}
    return RMF(energ_lo=lo, energ_hi=hi, e_min=e_min, e_max=e_max, matrix=matrix,
               first_channel=int(first_channel), header=header, path=None)


_RESP_CACHE = {}


_ARF_CACHE = {}


def _read_arf_once(path):
    """:func:`ogip.read_arf`, once per file (by path, size and modification time): every window of a
    day's spectra names the same ARF."""
    from .ogip import read_arf
    try:
        st = os.stat(path)
        key = (os.path.abspath(os.fspath(path)), st.st_size, st.st_mtime_ns)
    except OSError:
        return read_arf(path)           # read_arf names the file and the problem
    hit = _ARF_CACHE.get(key)
    if hit is None:
        hit = read_arf(path)
        if len(_ARF_CACHE) > 8:
            _ARF_CACHE.clear()
        _ARF_CACHE[key] = hit
    return hit


def load_response(spectrum, arf=None, rmf=None, gain=PI_GAIN, offset=PI_OFFSET,
                  fwhm_ref=FWHM_REF_KEV):
    """The response of an :class:`XSMSpectrum`: ``rmf`` (a path) when given, else the
    approximate one built on the ARF's energy grid; ``arf`` (a path) or the spectrum's own.

    Channel counts of spectrum and RMF must match (spectrum row i pairs with matrix column i, the
    RMF's first channel being TLMIN of F_CHAN, 1 by default: :func:`ogip.read_rmf`); the ARF goes
    with the RMF row by row as XSPEC pairs them (:func:`ogip.arf_on_rmf`). Approximate matrices are cached per (grid, scale, resolution).
    """
    from .ogip import arf_on_rmf, read_rmf
    arf_path = arf or spectrum.arf_path
    if arf_path is None:
        raise ClassXRFError(spectrum.path, "no ARF given and none found beside the spectrum "
                            "(ANCRFILE)", key="ANCRFILE")
    a = _read_arf_once(arf_path)
    n_chan = int(np.size(spectrum.counts))
    first = int(spectrum.channel[0]) if np.size(spectrum.channel) else 0
    if rmf is not None:
        r = read_rmf(rmf)
        if r.n_channels != n_chan:
            raise ClassXRFError(rmf, f"RMF has {r.n_channels} channels but the spectrum "
                                f"{spectrum.path} has {n_chan}", key="DETCHANS")
        area, note = arf_on_rmf(a, r)
        notes = "; ".join(list(r.notes) + ([note] if note else []))
        return XSMResponse(rmf=r, specresp=area, kind="rmf",
                           description=f"RMF {os.path.basename(os.fspath(rmf))} with ARF "
                                       f"{os.path.basename(os.fspath(arf_path))}"
                                       + (f" ({notes})" if notes else ""),
                           arf_path=os.fspath(arf_path), rmf_path=os.fspath(rmf))
    lo = np.asarray(a.energ_lo, float)
    hi = np.asarray(a.energ_hi, float)
    if np.any(hi <= lo):
        raise ClassXRFError(arf_path, "energy bins must have ENERG_HI > ENERG_LO", key="ENERG_HI")
    key = (lo.size, float(lo[0]), float(hi[-1]), float(np.sum(lo)), n_chan, first, gain, offset,
           fwhm_ref)
    r = _RESP_CACHE.get(key)
    if r is None:
        r = approximate_rmf(lo, hi, n_chan, gain, offset, first, fwhm_ref)
        if len(_RESP_CACHE) > 8:
            _RESP_CACHE.clear()
        _RESP_CACHE[key] = r
    desc = (f"approximate XSM response (Gaussian, FWHM {fwhm_ref * 1000:.0f} eV at 5.9 keV, "
            f"noise+Fano; PI E = {offset:g} + {gain:.6g} ch keV) with ARF "
            f"{os.path.basename(os.fspath(arf_path))}")
    return XSMResponse(rmf=r, specresp=np.asarray(a.specresp, float), kind="approximate",
                       description=desc, arf_path=os.fspath(arf_path))


def scan_xsm_folder(folder, progress=None):
    """Type I XSM spectra of a folder (``*.pha``, ``*.pi``): list of (path, tstart, tstop)
    MET seconds, for matching observations to spectra."""
    p = as_progress(progress)
    files = sorted(glob.glob(os.path.join(os.fspath(folder), "*.pha")) +
                   glob.glob(os.path.join(os.fspath(folder), "*.pi")))
    out = []
    for i, f in enumerate(files):
        p.check()
        s = read_xsm_pha(f)
        out.append((f, s.tstart, s.tstop))
        p.set((i + 1) / max(len(files), 1), os.path.basename(f))
    return out
