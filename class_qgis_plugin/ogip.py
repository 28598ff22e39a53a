"""OGIP spectral files: PHA (type I and II), RMF and ARF, read and write.

Formats follow the HEASARC OGIP memos:

* PHA: OGIP/92-007 ("The OGIP Spectral File Format") and its addendum 92-007a: a ``SPECTRUM``
  binary table with ``CHANNEL`` and ``COUNTS`` (or ``RATE`` in counts/s), optional ``STAT_ERR``,
  ``SYS_ERR``, ``QUALITY``, ``GROUPING``, and ``EXPOSURE``/``BACKSCAL``/``AREASCAL`` either as
  header keys or as columns. Type II files hold one spectrum per row (vector columns).
* RMF/ARF: CAL/GEN/92-002 ("The Calibration Requirements for Spectral Analysis"): ``EBOUNDS``
  (``CHANNEL``, ``E_MIN``, ``E_MAX``) and ``MATRIX`` / ``SPECRESP MATRIX`` (``ENERG_LO``,
  ``ENERG_HI``, ``N_GRP``, ``F_CHAN``, ``N_CHAN``, ``MATRIX``), where ``F_CHAN``/``N_CHAN``/
  ``MATRIX`` may be variable-length arrays and ``N_GRP`` > 1; the first legal channel is the
  ``TLMIN`` of the ``F_CHAN`` column, 1 when absent, as XSPEC and sherpa read it (:func:`read_rmf`).
  An ARF goes with its RMF row by row (:func:`arf_on_rmf`). A PHA file's first legal channel is
  ``TLMIN`` of its CHANNEL column (:attr:`PHA.legal_first_channel`). ARF: ``SPECRESP`` table with ``ENERG_LO``,
  ``ENERG_HI``, ``SPECRESP`` (cm^2); CLASS's own ARFs name the energy columns ``E_LOW``/``E_HIGH``,
  which are accepted too.

The real CLASS files carry non-standard cards (``GAIN USE`` keys with a space, ``HIERARCH`` cards,
values with comments embedded in strings such as ``'4.53672e-09 / A...'``): header values are read
card by card and fall back to parsing the raw 80-character card image when astropy refuses one;
:func:`header_float` turns such a value into a number.

Every write goes to a temporary file in the destination folder and is moved into place with
``os.replace`` only when complete.
"""
import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

import numpy as np

from .errors import ClassXRFError

__all__ = [
    "PHA", "RMF", "ARF", "read_pha", "read_pha_typeii", "write_pha", "read_rmf", "write_rmf",
    "read_arf", "write_arf", "arf_on_rmf", "open_fits", "spectrum_table", "header_float", "header_value", "parse_card_image", "parse_utc",
    "header_to_dict", "atomic_fits_write",
]

# --------------------------------------------------------------------------------------------
# Header helpers
# --------------------------------------------------------------------------------------------

_NUM_RE = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][+-]?\d+)?)")
_STRUCTURAL = re.compile(
    r"^(XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|TTYPE\d+|TFORM\d+|TUNIT\d+|TSCAL\d+|"
    r"TZERO\d+|TNULL\d+|TDIM\d+|TDISP\d+|TLMIN\d+|TLMAX\d+|THEAP|EXTNAME|SIMPLE|EXTEND|END|"
    r"CHECKSUM|DATASUM)$")


_FITS_STRING = re.compile(r"'((?:[^']|'')*)'?")


#: parsed cards by their 80 bytes: the frames of an archive repeat most of their cards (columns,
#: instrument keys), so each distinct card is parsed once (values are immutable: str, int, float, bool)
_CARDS = {}


def parse_card_image(image):
    """Parse one raw 80-character FITS card image into ``(key, value, comment)``.

    Tolerates what astropy may refuse: free-format numbers, ``D`` exponents, a missing closing
    quote, ``HIERARCH`` cards and keys with blanks (``GAIN USE``). A card without a value
    indicator returns ``value=None``. Strings are returned with trailing blanks stripped.
    """
    image = image.ljust(80)[:80] if len(image) <= 80 else image
    if image.startswith("HIERARCH"):
        body = image[8:]
        if "=" not in body:
            return body.strip(), None, ""
        k, rest = body.split("=", 1)
        key = k.strip()
    else:
        key = image[:8].strip()
        if image[8:10] != "= ":
            return key, None, image[8:].strip()
        rest = image[10:]
    rest = rest.strip()
    if rest.startswith("'"):
        # FITS string: '' escapes a quote; ends at the first lone quote (or the card's end)
        m = _FITS_STRING.match(rest)
        value = m.group(1).replace("''", "'").rstrip()
        tail = rest[m.end():]
        comment = tail.split("/", 1)[1].strip() if "/" in tail else ""
        return key, value, comment
    if "/" in rest:
        v, comment = rest.split("/", 1)
    else:
        v, comment = rest, ""
    v = v.strip()
    comment = comment.strip()
    if v == "T":
        return key, True, comment
    if v == "F":
        return key, False, comment
    if v == "":
        return key, None, comment
    try:
        return key, int(v), comment
    except ValueError:
        pass
    try:
        return key, float(v.replace("D", "E").replace("d", "e")), comment
    except ValueError:
        return key, v, comment


_TFORM_RE = re.compile(r"^\s*(\d*)\s*([BIJKED])\s*$")
_DTYPES = {"B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


class NotSimple(Exception):
    """The file is valid FITS perhaps, but not of the simple layout: use astropy."""


def _card_text(card):
    try:
        return card.decode("ascii")
    except UnicodeDecodeError:
        return card.decode("latin-1")


def _parse_header(buf, offset, path):
    """Parse FITS header cards from ``offset``; return (values, comments, data offset)."""
    values, comments = {}, {}
    pos = offset
    n = len(buf)
    last_key = None
    while True:
        if pos + 80 > n:
            raise ClassXRFError(path, "file is truncated inside a header (no END card)",
                                key="END")
        card = buf[pos:pos + 80]
        pos += 80
        if card[:8] == b"END     ":
            break
        key8 = card[:8]
        if key8 in (b"COMMENT ", b"HISTORY ", b"        "):
            continue
        if key8 == b"CONTINUE" and last_key is not None and isinstance(values.get(last_key), str) \
                and values[last_key].endswith("&"):
            _, more, more_comment = parse_card_image("X       = " + _card_text(card)[10:])
            values[last_key] = values[last_key][:-1] + (more if isinstance(more, str) else "")
            if more_comment:           # a long string's comment rides on its CONTINUE cards
                comments[last_key] = " ".join(c for c in (comments.get(last_key) or "", more_comment) if c)
            continue
        hit = _CARDS.get(card)
        if hit is None:
            hit = parse_card_image(_card_text(card))
            if len(_CARDS) >= 8192:
                _CARDS.clear()
            _CARDS[card] = hit
        key, value, comment = hit
        last_key = key
        if key:
            values[key] = value
            comments[key] = comment
    data_start = offset + ((pos - offset + _BLOCK_BYTES - 1) // _BLOCK_BYTES) * _BLOCK_BYTES
    return values, comments, data_start


def fast_table(path, buf):
    """The first table of a FITS file of the simple layout (an empty primary HDU, then a binary table
    of scalar columns, no scaling, no heap), parsed from its bytes ``buf`` -> (header values,
    comments, structured array). :class:`NotSimple` when the layout is another (then read it
    with astropy). The CLASS L1 frames and the PHA files this plugin writes have this layout."""
    if not buf.startswith(b"SIMPLE  ="):
        raise ClassXRFError(path, "not a FITS file (it does not start with a SIMPLE card)",
                            key="SIMPLE")
    prim, _, pos = _parse_header(buf, 0, path)
    if int(prim.get("NAXIS", 0) or 0) != 0:
        raise NotSimple()
    hdr, comments, data_start = _parse_header(buf, pos, path)
    if str(hdr.get("XTENSION", "")).strip() != "BINTABLE":
        raise NotSimple()
    try:
        nrow = int(hdr["NAXIS2"])
        width = int(hdr["NAXIS1"])
        nf = int(hdr["TFIELDS"])
    except (KeyError, TypeError, ValueError):
        raise NotSimple() from None
    if int(hdr.get("PCOUNT", 0) or 0) != 0:
        raise NotSimple()
    names, formats = [], []
    for i in range(1, nf + 1):
        m = _TFORM_RE.match(str(hdr.get(f"TFORM{i}", "")))
        if not m or (m.group(1) not in ("", "1")):
            raise NotSimple()
        for k in (f"TSCAL{i}", f"TZERO{i}"):
            if k in hdr and float(hdr[k]) != (1.0 if k.startswith("TSCAL") else 0.0):
                raise NotSimple()
        names.append(str(hdr.get(f"TTYPE{i}", f"COL{i}")).strip().upper())
        formats.append(_DTYPES[m.group(2)])
    dtype = np.dtype({"names": names, "formats": formats})
    if dtype.itemsize != width:
        raise NotSimple()
    need = data_start + width * nrow
    if len(buf) < need:
        raise ClassXRFError(path, f"file is truncated: the table needs {need} bytes, the file "
                            f"has {len(buf)}", key="NAXIS2")
    table = np.frombuffer(buf, dtype=dtype, count=nrow, offset=data_start)
    return hdr, comments, table


def header_to_dict(header):
    """A plain ``dict`` of an astropy header's keyword values (no COMMENT/HISTORY/structure).

    Each card's value is taken from astropy when it parses it; otherwise the raw card image is
    parsed by :func:`parse_card_image`. Returns ``(values, comments)``.
    """
    values, comments = {}, {}
    for card in header.cards:
        try:
            key = card.keyword
        except Exception:  # pragma: no cover - astropy refuses even the keyword
            key = None
        if key in ("COMMENT", "HISTORY", ""):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = card.value
                comment = card.comment
            if hasattr(value, "__class__") and value.__class__.__name__ == "Undefined":
                value = None
        except Exception:
            try:
                image = card.image
            except Exception:
                image = str(card)
            key, value, comment = parse_card_image(image)
        if key is None:
            continue
        if isinstance(value, str):
            value = value.rstrip()
        if isinstance(value, (np.bool_,)):
            value = bool(value)
        values[key] = value
        comments[key] = comment
    return values, comments


def header_value(header, key, path=None, default=KeyError):
    """Value of ``key`` in ``header`` (a dict or astropy header), or ``default``.

    Raises :class:`ClassXRFError` naming ``path`` and ``key`` when the key is missing and no
    default is given.
    """
    try:
        return header[key]
    except (KeyError, IndexError):
        if default is KeyError:
            raise ClassXRFError(path, "required header key is missing", key=key) from None
        return default


def header_float(header, key, path=None, default=KeyError, allow_nan=False):
    """A header value as ``float``, robust to values written as strings.

    Accepts numbers, numeric strings, and strings with a comment embedded after the number
    (``'4.53672e-09 / Angle ...'``) as found on some CLASS cards. A missing key raises
    :class:`ClassXRFError` (unless ``default`` is given); a value that is not a number, or a
    non-finite number when ``allow_nan`` is false, raises it too, naming file and key.
    """
    value = header_value(header, key, path, default)
    if value is default and default is not KeyError:
        return default
    if isinstance(value, bool):
        raise ClassXRFError(path, f"value {value!r} is not a number", key=key)
    if isinstance(value, (int, float, np.integer, np.floating)):
        x = float(value)
    elif isinstance(value, str):
        s = value.strip()
        if s.lower() in ("nan", "+nan", "-nan"):
            x = float("nan")
        elif s.lower() in ("inf", "+inf", "-inf", "infinity"):
            x = float(s.lower().replace("infinity", "inf"))
        else:
            m = _NUM_RE.match(s)
            if not m:
                raise ClassXRFError(path, f"value {value!r} is not a number", key=key)
            x = float(m.group(1).replace("D", "E").replace("d", "e"))
    elif value is None:
        raise ClassXRFError(path, "key has no value", key=key)
    else:
        raise ClassXRFError(path, f"value {value!r} is not a number", key=key)
    if not allow_nan and not np.isfinite(x):
        raise ClassXRFError(path, f"value is not finite ({x})", key=key)
    return x


_MONTHS = {m: i + 1 for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}


def parse_utc(value, path=None, key=None):
    """Parse a UTC time string of a CLASS/XSM header into a timezone-aware ``datetime``.

    Accepts ISO 8601 (``2024-01-23T03:32:22.609``, with ``T`` or a blank, up to nanoseconds) and
    ``DD-Mon-YYYY`` (as in CLASS's long-term background file).
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value.strip():
        raise ClassXRFError(path, f"time value {value!r} is not a UTC time string", key=key)
    s = value.strip().replace(" ", "T", 1)
    if s.endswith("Z"):
        s = s[:-1]
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?$", s)
    if m:
        frac = (m.group(2) or ".0")[1:]
        us = int(round(float("0." + frac) * 1e6))
        base = datetime.fromisoformat(m.group(1))          # the same as strptime's "%Y-%m-%dT%H:%M:%S", 10x faster
        if us >= 1000000:  # rounding 0.9999997 s
            from datetime import timedelta
            base = base + timedelta(seconds=1)
            us -= 1000000
        return base.replace(microsecond=us, tzinfo=timezone.utc)
    m = re.match(r"^(\d{4}-\d{2}-\d{2})$", s)
    if m:
        return datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    m = re.match(r"^(\d{1,2})-([A-Za-z]{3})-(\d{4})$", s)
    if m and m.group(2).lower() in _MONTHS:
        return datetime(int(m.group(3)), _MONTHS[m.group(2).lower()], int(m.group(1)),
                        tzinfo=timezone.utc)
    raise ClassXRFError(path, f"time value {value!r} is not a UTC time string", key=key)


def format_utc(dt):
    """ISO 8601 with milliseconds, as CLASS headers write times (``2024-01-23T03:32:22.609``)."""
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


# --------------------------------------------------------------------------------------------
# FITS access with clear errors
# --------------------------------------------------------------------------------------------

def open_fits(path):
    """Open a FITS file; a missing, non-FITS or unreadable file raises :class:`ClassXRFError`."""
    from astropy.io import fits
    p = os.fspath(path)
    if not os.path.exists(p):
        raise ClassXRFError(p, "file not found")
    try:
        with open(p, "rb") as fh:
            head = fh.read(80)
    except OSError as exc:
        raise ClassXRFError(p, f"cannot read the file ({exc})") from None
    if not head.startswith(b"SIMPLE  ="):
        raise ClassXRFError(p, "not a FITS file (it does not start with a SIMPLE card)",
                            key="SIMPLE")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(p, memmap=False, lazy_load_hdus=False)
    except Exception as exc:
        raise ClassXRFError(p, f"not a readable FITS file ({exc})") from None
    return hdul


def _find_hdu(hdul, path, names, hduclas_key=None, hduclas_values=(), column=None):
    """First table HDU with EXTNAME in ``names`` (case-insensitive), else one whose HDUCLASn
    says so, else one that has ``column``."""
    names_u = [n.upper() for n in names]
    for hdu in hdul[1:]:
        if str(hdu.header.get("EXTNAME", "")).strip().upper() in names_u:
            return hdu
    if hduclas_key:
        for hdu in hdul[1:]:
            if str(hdu.header.get(hduclas_key, "")).strip().upper() in hduclas_values:
                return hdu
    if column:
        for hdu in hdul[1:]:
            cols = getattr(hdu, "columns", None)
            if cols is not None and column.upper() in [c.name.upper() for c in cols]:
                return hdu
    raise ClassXRFError(path, f"no {names[0]} extension found", key="EXTNAME")


def _read_table_data(hdu, path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = hdu.data
    except Exception as exc:
        raise ClassXRFError(path, f"table data cannot be read (truncated file?): {exc}",
                            key=hdu.header.get("EXTNAME", "data")) from None
    if data is None:
        raise ClassXRFError(path, "the table has no rows", key="NAXIS2")
    return data


def _colnames(data):
    return {n.upper(): n for n in data.columns.names}


def _column(data, name, path, required=True):
    names = _colnames(data)
    if name.upper() not in names:
        if required:
            raise ClassXRFError(path, "required column is missing", key=name)
        return None
    try:
        return np.asarray(data[names[name.upper()]])
    except Exception as exc:
        raise ClassXRFError(path, f"column cannot be read (truncated file?): {exc}",
                            key=name) from None


def atomic_fits_write(path, hdul):
    """Write an astropy ``HDUList`` to a temporary file beside ``path``, then ``os.replace``."""
    from .geo import atomic_output
    with atomic_output(os.fspath(path)) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul.writeto(tmp, overwrite=True, checksum=False, output_verify="silentfix")


# --------------------------------------------------------------------------------------------
# PHA
# --------------------------------------------------------------------------------------------

def spectrum_table(hdul, path):
    """The ``SPECTRUM`` table of an open PHA file: ``(header dict, comments, data, key, values)``
    where ``key`` is ``COUNTS`` or ``RATE`` and ``values`` that column."""
    hdu = _find_hdu(hdul, path, ["SPECTRUM"], "HDUCLAS1", ("SPECTRUM",), column="COUNTS")
    header, comments = header_to_dict(hdu.header)
    data = _read_table_data(hdu, path)
    names = _colnames(data)
    if "COUNTS" not in names and "RATE" not in names:
        raise ClassXRFError(path, "spectrum has neither a COUNTS nor a RATE column", key="COUNTS")
    key = "COUNTS" if "COUNTS" in names else "RATE"
    return header, comments, data, key, _column(data, key, path)


@dataclass
class PHA:
    """One OGIP spectrum. ``counts`` are counts per channel (RATE files are converted with
    EXPOSURE); ``stat_err`` is in counts too. ``quality``/``grouping``/``stat_err`` are ``None``
    when the file gives none (or gives the scalar 0 of "not specified")."""
    counts: np.ndarray
    channel: np.ndarray
    exposure: float
    stat_err: Optional[np.ndarray] = None
    quality: Optional[np.ndarray] = None
    grouping: Optional[np.ndarray] = None
    backscal: object = 1.0
    areascal: object = 1.0
    header: dict = field(default_factory=dict)
    path: Optional[str] = None
    sys_err: Optional[np.ndarray] = None
    comments: dict = field(default_factory=dict)
    tlmin: Optional[int] = None

    @property
    def n_channels(self):
        return int(np.size(self.counts))

    @property
    def legal_first_channel(self):
        """The first legal channel number (``TLMIN`` of the CHANNEL column). Without the key it
        is 0 when the first channel is numbered 0 and 1 otherwise, as XSPEC reads PHA files
        (``channelLimits(start ? 1 : 0, ...)`` in its OGIP reader)."""
        if self.tlmin is not None:
            return int(self.tlmin)
        return 0 if (np.size(self.channel) and int(np.min(self.channel)) == 0) else 1

    @property
    def response_index(self):
        """Zero-based response channel of each row: channel number - first legal channel (the
        response's column index, which is its F_CHAN - TLMIN)."""
        return np.asarray(self.channel, np.int64) - self.legal_first_channel

    def counts_on_response(self, n_chan, values=None):
        """``counts`` (or ``values``) placed on a response of ``n_chan`` channels by
        :attr:`response_index`. A spectrum must cover the response's channels one to one (as
        XSPEC requires: DETCHANS of data and response match); otherwise the error names the file
        and the channel numbers."""
        v = np.asarray(self.counts if values is None else values, float)
        idx = self.response_index
        if idx.size == n_chan and idx[0] == 0 and np.all(np.diff(idx) == 1):
            return v
        lo, hi = (int(idx.min()), int(idx.max())) if idx.size else (0, -1)
        raise ClassXRFError(self.path, f"channels {lo + self.legal_first_channel}.."
                            f"{hi + self.legal_first_channel} (first legal channel "
                            f"{self.legal_first_channel}) do not match the response's {n_chan} "
                            f"channels", key="CHANNEL")

    @property
    def rate(self):
        """Counts per second per channel."""
        return np.asarray(self.counts, float) / float(self.exposure)

    @property
    def first_channel(self):
        return int(self.channel[0]) if np.size(self.channel) else 0


def _scalar_or_column(data, header, name, path, default=None):
    """OGIP quantity given either as column (per channel) or as key."""
    col = _column(data, name, path, required=False)
    if col is not None:
        return col
    if name in header:
        return header[name]
    return default


def _optional_array(value, n, dtype, path, key):
    """Column array, or None for the 'not specified' scalar 0 of the key form, or a constant."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim == 0:
        if isinstance(value, str):
            return None
        if float(arr) == 0:
            return None
        return np.full(n, arr, dtype=dtype)
    if arr.size != n:
        raise ClassXRFError(path, f"has {arr.size} values for {n} channels", key=key)
    return arr.astype(dtype)


def _tlmin_of(header, data, name):
    """``TLMIN<n>`` of column ``name`` (n its 1-based position in ``data``), or None."""
    if data is None:
        return None
    for k, nm in enumerate(data.columns.names, start=1):
        if nm.upper() == name.upper():
            v = header.get(f"TLMIN{k}")
            return int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else None
    return None


def _pha_from_arrays(path, header, comments, channel, counts, rate, exposure, stat_err, sys_err,
                     quality, grouping, backscal, areascal, tlmin=None):
    n = counts.size if counts is not None else rate.size
    if exposure is None:
        raise ClassXRFError(path, "required key is missing", key="EXPOSURE")
    try:
        exposure = float(exposure)
    except (TypeError, ValueError):
        exposure = header_float({"EXPOSURE": exposure}, "EXPOSURE", path)
    if not np.isfinite(exposure) or exposure <= 0:
        raise ClassXRFError(path, f"exposure must be positive (got {exposure})", key="EXPOSURE")
    if counts is None:
        rate = np.asarray(rate, float)
        counts = rate * exposure
        se = _optional_array(stat_err, n, float, path, "STAT_ERR")
        stat_err = None if se is None else se * exposure
    else:
        counts = np.asarray(counts, float)
        stat_err = _optional_array(stat_err, n, float, path, "STAT_ERR")
    if not np.all(np.isfinite(counts)):
        raise ClassXRFError(path, "spectrum has non-finite values",
                            key="RATE" if rate is not None else "COUNTS")
    if channel is None:
        channel = np.arange(n) + (1 if tlmin is None else int(tlmin))
    channel = np.asarray(channel).astype(np.int64).ravel()
    if channel.size != n:
        raise ClassXRFError(path, f"has {channel.size} channels for {n} values", key="CHANNEL")

    def _scal(v, key):
        if v is None:
            return 1.0
        a = np.asarray(v, float)
        if a.ndim == 0:
            return float(a)
        if a.size != n:
            raise ClassXRFError(path, f"has {a.size} values for {n} channels", key=key)
        return a

    return PHA(counts=counts, channel=channel, exposure=exposure, stat_err=stat_err,
               quality=_optional_array(quality, n, np.int16, path, "QUALITY"),
               grouping=_optional_array(grouping, n, np.int16, path, "GROUPING"),
               backscal=_scal(backscal, "BACKSCAL"), areascal=_scal(areascal, "AREASCAL"),
               header=header, path=None if path is None else os.fspath(path),
               sys_err=_optional_array(sys_err, n, float, path, "SYS_ERR"), comments=comments,
               tlmin=tlmin)


class _Table:
    """A structured array seen as the readers see an astropy table (``columns.names``, ``[name]``)."""

    def __init__(self, arr):
        self.arr = arr
        self.columns = type("Columns", (), {"names": list(arr.dtype.names)})()

    def __getitem__(self, name):
        return self.arr[name]


def _fast_spectrum(path):
    """``(header, comments, data, key, values)`` of a type I PHA file of the simple layout
    (:func:`fast_table`) whose first table is the spectrum, else None (astropy reads it)."""
    try:
        with open(path, "rb") as fh:
            buf = fh.read()
        hdr, comments, arr = fast_table(path, buf)
    except (OSError, NotSimple, ClassXRFError):
        return None
    ext = str(hdr.get("EXTNAME", "")).strip().upper()
    if ext != "SPECTRUM" and str(hdr.get("HDUCLAS1", "")).strip().upper() != "SPECTRUM":
        return None
    names = {n.upper() for n in arr.dtype.names}
    key = "COUNTS" if "COUNTS" in names else "RATE" if "RATE" in names else None
    if key is None:
        return None
    data = _Table(arr)
    hdr = {k: v.rstrip() if isinstance(v, str) else v for k, v in hdr.items()}
    return hdr, comments, data, key, _column(data, key, path)


def read_pha(path):
    """Read an OGIP type I PHA file (``SPECTRUM`` extension) into a :class:`PHA`.

    Counts come from ``COUNTS`` or from ``RATE`` x ``EXPOSURE``. A type II file raises an error
    pointing to :func:`read_pha_typeii`. A file of the simple layout (the co-added spectra this
    plugin writes) is parsed from its bytes (:func:`fast_table`, ~20x astropy's time per file);
    any other through astropy, with the same result.
    """
    fast = _fast_spectrum(os.fspath(path)) if os.path.isfile(os.fspath(path)) else None
    hdul = None if fast is not None else open_fits(path)
    try:
        header, comments, data, key, values = fast if fast is not None else spectrum_table(hdul, path)
        if values.ndim > 1 or str(header.get("HDUCLAS4", "")).strip().upper() == "TYPE:II":
            raise ClassXRFError(path, "is a type II PHA file (one spectrum per row); "
                                "use read_pha_typeii", key=key)
        channel = _column(data, "CHANNEL", path, required=False)
        return _pha_from_arrays(
            path, header, comments, channel,
            values if key == "COUNTS" else None, values if key == "RATE" else None,
            _scalar_or_column(data, header, "EXPOSURE", path),
            _scalar_or_column(data, header, "STAT_ERR", path),
            _scalar_or_column(data, header, "SYS_ERR", path),
            _scalar_or_column(data, header, "QUALITY", path),
            _scalar_or_column(data, header, "GROUPING", path),
            _scalar_or_column(data, header, "BACKSCAL", path, default=1.0),
            _scalar_or_column(data, header, "AREASCAL", path, default=1.0),
            _tlmin_of(header, data, "CHANNEL"))
    finally:
        if hdul is not None:
            hdul.close()


def read_pha_typeii(path):
    """Read an OGIP type II PHA file: one :class:`PHA` per row of the ``SPECTRUM`` table.

    Per-row quantities (``EXPOSURE``, ``BACKSCAL``, ...) may be columns (scalar per row, or a
    vector per channel) or header keys shared by all rows. A type I file gives a one-item list.
    """
    hdul = open_fits(path)
    try:
        header, comments, data, key, values = spectrum_table(hdul, path)
        if values.ndim == 1:
            hdul.close()
            return [read_pha(path)]
        out = []
        n_rows = values.shape[0]
        names = _colnames(data)
        chan_col = _column(data, "CHANNEL", path, required=False)
        for r in range(n_rows):
            row_header = dict(header)
            if "SPEC_NUM" in names:
                row_header["SPEC_NUM"] = int(_column(data, "SPEC_NUM", path)[r])
            channel = None
            if chan_col is not None:
                channel = chan_col[r] if chan_col.ndim > 1 else chan_col
            v = values[r]

            def rowval(name, default=None):
                col = _column(data, name, path, required=False)
                if col is not None:
                    return col[r]
                return header.get(name, default)

            pha = _pha_from_arrays(
                path, row_header, comments, channel,
                v if key == "COUNTS" else None, v if key == "RATE" else None,
                rowval("EXPOSURE"), rowval("STAT_ERR"), rowval("SYS_ERR"), rowval("QUALITY"),
                rowval("GROUPING"), rowval("BACKSCAL", 1.0), rowval("AREASCAL", 1.0),
                _tlmin_of(header, data, "CHANNEL"))
            pha.header["EXPOSURE"] = pha.exposure
            out.append(pha)
        return out
    finally:
        hdul.close()


_PHA_MANAGED = {"EXPOSURE", "BACKSCAL", "AREASCAL", "STAT_ERR", "SYS_ERR", "QUALITY", "GROUPING",
                "POISSERR", "DETCHANS", "HDUCLASS", "HDUCLAS1", "HDUCLAS3", "HDUCLAS4", "HDUVERS",
                "HDUVERS1", "CHANTYPE", "TLMIN1", "TLMAX1", "SPEC_NUM"}


def _counts_column(counts):
    counts = np.asarray(counts, float)
    if np.all(np.isfinite(counts)) and np.all(counts == np.round(counts)) and \
            np.all(np.abs(counts) < 2 ** 31 - 1):
        return "J", counts.astype(np.int32)
    return "D", counts


def _fmt_value(value):
    if isinstance(value, (bool, np.bool_)):
        return ("T" if value else "F").rjust(20)
    if isinstance(value, (int, np.integer)):
        return str(int(value)).rjust(20)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        text = repr(v).upper()
        if "E" in text and "." not in text.split("E")[0]:
            m, e = text.split("E")
            text = m + ".0E" + e
        elif "E" not in text and "." not in text:
            text += "."
        if len(text) > 20:
            text = f"{v:.12E}"
        return text.rjust(20)
    s = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in str(value)).replace("'", "''")
    return "'" + s.ljust(8) + "'"


def _long_string_cards(key, value, comment):
    """OGIP 1.0 long-string convention: pieces ending in '&' continued on CONTINUE cards."""
    s = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in value)
    pieces = []
    while s:
        take = 67
        piece = s[:take]
        while len(piece.replace("'", "''")) > 67:
            take -= 1
            piece = s[:take]
        s = s[take:]
        pieces.append(piece)
    cards = []
    for k, piece in enumerate(pieces):
        text = piece.replace("'", "''") + ("&" if k < len(pieces) - 1 else "")
        head = key.ljust(8) + "= " if k == 0 else "CONTINUE  "
        cards.append((head + "'" + text + "'")[:80].ljust(80))
    if comment:
        cards[-1] = (cards[-1].rstrip() + " / " + str(comment))[:80].ljust(80)
    return "".join(cards)


_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def _card(key, value, comment=""):
    """One 80-character FITS card image (several, with CONTINUE cards of the OGIP long-string
    convention, for a string longer than 68 characters)."""
    if isinstance(value, str) and len(value.replace("'", "''")) > 68:
        return _long_string_cards(key, value, comment)
    if value is None:
        text = key.ljust(8) + "= "
    else:
        text = key.ljust(8) + "= " + _fmt_value(value)
    if comment:
        text += " / " + _NOT_PRINTABLE.sub("?", str(comment))
    return text[:80].ljust(80)


def _header_block(cards):
    text = "".join(cards) + "END".ljust(80)
    pad = (-len(text)) % _BLOCK_BYTES
    return (text + " " * pad).encode("ascii")


_BLOCK_BYTES = 2880
_FITS_CODES = {"I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


def write_simple_bintable(path, extname, columns, keys):
    """Write a FITS file with an empty primary HDU and one binary table of scalar columns,
    directly from NumPy (fast), atomically.

    ``columns``: list of ``(name, code, array, unit)`` with code one of I, J, K, E, D;
    ``keys``: list of ``(key, value, comment)`` cards written after the table structure.
    """
    n = len(columns[0][2]) if columns else 0
    dtype = np.dtype({"names": [c[0] for c in columns],
                      "formats": [_FITS_CODES[c[1]] for c in columns]})
    table = np.empty(n, dtype=dtype)
    for name, code, arr, _ in columns:
        a = np.asarray(arr)
        if a.shape != (n,):
            raise ClassXRFError(path, f"column has shape {a.shape}, expected ({n},)", key=name)
        table[name] = a
    primary = [_card("SIMPLE", True, "conforms to FITS standard"),
               _card("BITPIX", 8, "array data type"), _card("NAXIS", 0, "number of array dimensions"),
               _card("EXTEND", True)]
    ext = [_card("XTENSION", "BINTABLE", "binary table extension"),
           _card("BITPIX", 8, "array data type"),
           _card("NAXIS", 2, "number of array dimensions"),
           _card("NAXIS1", dtype.itemsize, "length of dimension 1"),
           _card("NAXIS2", n, "length of dimension 2"),
           _card("PCOUNT", 0, "number of group parameters"),
           _card("GCOUNT", 1, "number of groups"),
           _card("TFIELDS", len(columns), "number of table fields")]
    for i, (name, code, _, unit) in enumerate(columns, start=1):
        ext.append(_card(f"TTYPE{i}", name))
        ext.append(_card(f"TFORM{i}", "1" + code))
        if unit:
            ext.append(_card(f"TUNIT{i}", unit))
    ext.append(_card("EXTNAME", extname, "name of this binary table extension"))
    if any(isinstance(v, str) and len(v) > 68 for _, v, _ in keys):
        ext.append(_card("LONGSTRN", "OGIP 1.0", "The OGIP long string convention may be used"))
    seen = {"EXTNAME"}
    for key, value, comment in keys:
        if key in seen:
            continue
        seen.add(key)
        ext.append(_card(key, value, comment))
    data = table.tobytes()
    data += b"\0" * ((-len(data)) % _BLOCK_BYTES)
    blob = _header_block(primary) + _header_block(ext) + data
    from .geo import atomic_output
    with atomic_output(os.fspath(path)) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(blob)


def _plain_keys(values, comments, skip):
    """(key, value, comment) for the plain scalar FITS keywords of a header dict."""
    out = []
    for key, value in values.items():
        if key in skip or _STRUCTURAL.match(key):
            continue
        if not re.match(r"^[A-Z0-9_-]{1,8}$", key):
            continue  # non-standard keys ('GAIN USE', HIERARCH) are not carried over
        if isinstance(value, np.bool_):
            value = bool(value)
        elif isinstance(value, np.integer):
            value = int(value)
        elif isinstance(value, np.floating):
            value = float(value)
        if value is not None and not isinstance(value, (str, bool, int, float)):
            continue
        if isinstance(value, float) and not np.isfinite(value):
            continue
        out.append((key, value, (comments or {}).get(key, "")))
    return out


def write_pha(path, pha):
    """Write a :class:`PHA` as an OGIP type I file (``COUNTS`` column; integer counts are
    written as 32-bit integers, others as double), atomically.

    Keys of ``pha.header`` that are plain FITS keywords are carried over (geometry, times,
    RESPFILE/ANCRFILE/BACKFILE, ...); the OGIP keys are set from the dataclass fields. The file
    is written directly with NumPy (no astropy), so writing thousands of spectra is fast.
    """
    counts = np.asarray(pha.counts, float).ravel()
    n = counts.size
    channel = np.asarray(pha.channel, dtype=np.int64).ravel()
    if channel.size != n:
        raise ClassXRFError(pha.path, f"has {channel.size} channels for {n} values",
                            key="CHANNEL")
    exposure = float(pha.exposure)
    if not np.isfinite(exposure) or exposure <= 0:
        raise ClassXRFError(path, f"exposure must be positive (got {exposure})", key="EXPOSURE")
    fmt, cvals = _counts_column(counts)
    cols = [("CHANNEL", "J", channel.astype(np.int32), ""),
            ("COUNTS", fmt, cvals, "count")]
    if pha.stat_err is not None:
        cols.append(("STAT_ERR", "D", np.asarray(pha.stat_err, float).ravel(), "count"))
    if pha.sys_err is not None:
        cols.append(("SYS_ERR", "D", np.asarray(pha.sys_err, float).ravel(), ""))
    if pha.quality is not None:
        cols.append(("QUALITY", "I", np.asarray(pha.quality).astype(np.int16).ravel(), ""))
    if pha.grouping is not None:
        cols.append(("GROUPING", "I", np.asarray(pha.grouping).astype(np.int16).ravel(), ""))
    for name in ("BACKSCAL", "AREASCAL"):
        v = np.asarray(getattr(pha, name.lower()), float)
        if v.ndim > 0:
            cols.append((name, "D", v.ravel(), ""))
    hdr, com = pha.header or {}, pha.comments or {}

    def get(key, default):
        v = hdr.get(key, default)
        return default if v is None or (isinstance(v, str) and not v.strip()) else v

    det = hdr.get("DETCHANS", n)
    keys = [("TLMIN1", int(pha.tlmin) if pha.tlmin is not None else (int(channel.min()) if n else 0),
             "Lowest legal channel number"),
            ("TLMAX1", int(channel.max()) if n else 0, "Highest legal channel number"),
            ("HDUCLASS", "OGIP", "format conforms to OGIP standard"),
            ("HDUCLAS1", "SPECTRUM", "PHA dataset (OGIP memo OGIP-92-007)"),
            ("HDUVERS1", "1.2.1", "Obsolete - included for backwards compatibility"),
            ("HDUVERS", "1.2.1", "Version of format (OGIP memo OGIP-92-007a)"),
            ("HDUCLAS2", str(get("HDUCLAS2", "TOTAL")).strip(), "TOTAL, NET or BKG spectrum"),
            ("HDUCLAS3", "COUNT", "PHA data stored as counts (not count/s)"),
            ("TELESCOP", str(get("TELESCOP", "UNKNOWN")), "mission/satellite name"),
            ("INSTRUME", str(get("INSTRUME", "UNKNOWN")), "instrument/detector name"),
            ("FILTER", str(get("FILTER", "none")), "filter in use"),
            ("EXPOSURE", exposure, "exposure (in seconds)")]
    for name in ("BACKSCAL", "AREASCAL"):
        v = np.asarray(getattr(pha, name.lower()), float)
        if v.ndim == 0:
            keys.append((name, float(v), f"{name.lower()[:-4]} scaling factor"))
    for key, text in (("BACKFILE", "associated background filename"),
                      ("CORRFILE", "associated correction filename"),
                      ("RESPFILE", "associated redistrib matrix filename"),
                      ("ANCRFILE", "associated ancillary response filename")):
        keys.append((key, str(get(key, "NONE")).strip(), text))
    corr = hdr.get("CORRSCAL", 1.0)
    keys += [("CORRSCAL", float(corr) if isinstance(corr, (int, float)) and
              not isinstance(corr, bool) else 1.0, "correction file scaling factor"),
             ("DETCHANS", int(det) if isinstance(det, (int, np.integer)) and
              not isinstance(det, bool) else n, "total number possible channels"),
             ("CHANTYPE", str(get("CHANTYPE", "PHA")).strip(), "channel type (PHA, PI etc)"),
             ("POISSERR", pha.stat_err is None, "Poissonian errors to be assumed")]
    if pha.stat_err is None:
        keys.append(("STAT_ERR", 0, "no statistical error specified"))
    if pha.sys_err is None:
        keys.append(("SYS_ERR", 0, "no systematic error specified"))
    if pha.grouping is None:
        keys.append(("GROUPING", 0, "no grouping of the data has been defined"))
    if pha.quality is None:
        keys.append(("QUALITY", 0, "no data quality information specified"))
    managed = {k for k, _, _ in keys}
    keys += _plain_keys(hdr, com, _PHA_MANAGED | managed)
    write_simple_bintable(path, "SPECTRUM", cols, keys)


# --------------------------------------------------------------------------------------------
# RMF
# --------------------------------------------------------------------------------------------

@dataclass
class RMF:
    """A redistribution matrix: ``matrix[i, j]`` is the probability that a photon of energy bin
    ``i`` (``energ_lo[i]..energ_hi[i]`` keV) is recorded in channel ``first_channel + j``
    (whose nominal bounds are ``e_min[j]..e_max[j]``)."""
    energ_lo: np.ndarray
    energ_hi: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    matrix: np.ndarray
    first_channel: int = 1
    header: dict = field(default_factory=dict)
    path: Optional[str] = None
    notes: list = field(default_factory=list)

    @property
    def n_channels(self):
        return int(self.matrix.shape[1])

    @property
    def n_energies(self):
        return int(self.matrix.shape[0])

    @property
    def channel(self):
        return self.first_channel + np.arange(self.n_channels)

    @property
    def energy_mid(self):
        return 0.5 * (np.asarray(self.energ_lo, float) + np.asarray(self.energ_hi, float))

    def fold(self, photons_per_energy_bin):
        """Fold photons (or counts after the ARF) per energy bin, shape ``(..., n_e)``, into
        expected counts per channel, shape ``(..., n_chan)``."""
        x = np.asarray(photons_per_energy_bin, dtype=float)
        if x.shape[-1] != self.n_energies:
            raise ClassXRFError(self.path, f"fold expects {self.n_energies} energy bins, got "
                                f"{x.shape[-1]}", key="ENERG_LO")
        return x @ self.matrix


def _as_list_of_arrays(col):
    """A column that may be scalar-per-row, fixed vector or variable-length, as a list."""
    if col.dtype == object:
        return [np.atleast_1d(np.asarray(c)) for c in col]
    if col.ndim == 1:
        return [np.atleast_1d(c) for c in col]
    return [np.asarray(c) for c in col]


def read_rmf(path):
    """Read an OGIP RMF (``EBOUNDS`` + ``MATRIX``/``SPECRESP MATRIX``) into a dense :class:`RMF`.

    Handles variable-length ``F_CHAN``/``N_CHAN``/``MATRIX`` and ``N_GRP`` > 1. Channels follow
    OGIP CAL/GEN/92-002 as XSPEC and sherpa apply it: the first channel is ``TLMIN<n>`` of the
    ``F_CHAN`` column (n its position), 1 when that key is absent (a bare ``TLMIN`` key, as the
    CLASS RMFs carry, is not that key: XSPEC prints "No TLMIN keyword value for response matrix
    FCHAN column. Will assume TLMIN = 1"); matrix column ``j`` is channel ``first + j`` and pairs
    with EBOUNDS row ``j``. Matrix elements whose channel falls outside ``first .. first +
    DETCHANS - 1`` are dropped, as XSPEC drops them (``DataUtility::groupArrays``); what was
    dropped is said in :attr:`RMF.notes`.
    """
    hdul = open_fits(path)
    try:
        eb = _find_hdu(hdul, path, ["EBOUNDS"], "HDUCLAS2", ("EBOUNDS",), column="E_MIN")
        mx = _find_hdu(hdul, path, ["MATRIX", "SPECRESP MATRIX"], "HDUCLAS2",
                       ("RSP_MATRIX",), column="F_CHAN")
        eb_data = _read_table_data(eb, path)
        e_min = _column(eb_data, "E_MIN", path).astype(float)
        e_max = _column(eb_data, "E_MAX", path).astype(float)
        n_chan = e_min.size
        hdr, _ = header_to_dict(mx.header)
        data = _read_table_data(mx, path)
        names = _colnames(data)
        elo = _column(data, "ENERG_LO", path).astype(float)
        ehi = _column(data, "ENERG_HI", path).astype(float)
        n_e = elo.size
        for k in ("N_GRP", "F_CHAN", "N_CHAN", "MATRIX"):
            if k not in names:
                raise ClassXRFError(path, "required column is missing", key=k)
        notes = []
        first = _tlmin_of(mx.header, data, "F_CHAN")
        if first is None:
            first = 1
            bare = f" (the bare TLMIN = {hdr['TLMIN']} is not that key)" if "TLMIN" in hdr else ""
            notes.append(f"no TLMIN keyword for the F_CHAN column{bare}: first channel taken as "
                         f"1, the OGIP default that XSPEC and sherpa assume")
        det = hdr.get("DETCHANS")
        if isinstance(det, (int, np.integer)) and det > n_chan:
            n_chan = int(det)
        n_grp = _column(data, "N_GRP", path).astype(np.int64).ravel()
        fch = _as_list_of_arrays(_column(data, "F_CHAN", path))
        nch = _as_list_of_arrays(_column(data, "N_CHAN", path))
        mat = _as_list_of_arrays(_column(data, "MATRIX", path))
        dense = np.zeros((n_e, n_chan), dtype=float)
        dropped = np.zeros(n_e)
        for i in range(n_e):
            g = int(n_grp[i])
            if g == 0:
                continue
            f = fch[i].astype(np.int64)[:g]
            nn = nch[i].astype(np.int64)[:g]
            row = np.asarray(mat[i], float).ravel()
            src = 0  # MATRIX holds the values of the groups one after another (compressed)
            for gi in range(g):
                start = int(f[gi]) - first
                cnt = int(nn[gi])
                if cnt < 0 or src + cnt > row.size:
                    raise ClassXRFError(path, f"row {i}: MATRIX has {row.size} values, "
                                        f"N_CHAN needs more", key="MATRIX")
                a, b = max(start, 0), min(start + cnt, n_chan)
                vals = row[src:src + cnt]
                if b > a:
                    dense[i, a:b] = vals[a - start:b - start]
                dropped[i] += vals.sum() - (vals[a - start:b - start].sum() if b > a else 0.0)
                src += cnt
        if np.any(dropped != 0):
            rows = np.flatnonzero(dropped != 0)
            notes.append(f"matrix elements outside channels {first}..{first + n_chan - 1} dropped "
                         f"(as XSPEC does) in {rows.size} energy rows, at most "
                         f"{dropped.max():.3g} of a row's probability")
        return RMF(energ_lo=elo, energ_hi=ehi, e_min=e_min[:n_chan] if e_min.size >= n_chan
                   else np.concatenate([e_min, np.full(n_chan - e_min.size, np.nan)]),
                   e_max=e_max[:n_chan] if e_max.size >= n_chan
                   else np.concatenate([e_max, np.full(n_chan - e_max.size, np.nan)]),
                   matrix=dense, first_channel=first, header=dict(hdr), path=os.fspath(path),
                   notes=notes)
    finally:
        hdul.close()


def _groups_of_row(row, threshold):
    """Runs of channels with ``row > threshold`` as (starts, lengths)."""
    nz = row > threshold
    if not nz.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    d = np.diff(np.concatenate([[0], nz.astype(np.int8), [0]]))
    starts = np.flatnonzero(d == 1)
    stops = np.flatnonzero(d == -1)
    return starts, stops - starts


def write_rmf(path, rmf, lo_thres=0.0, telescop="CHANDRAYAAN-2", instrume="CLASS"):
    """Write an :class:`RMF` as an OGIP RMF (``MATRIX`` with variable-length ``F_CHAN``,
    ``N_CHAN`` and ``MATRIX``; a row gets one group per run of values above ``lo_thres``),
    atomically."""
    from astropy.io import fits
    m = np.asarray(rmf.matrix, float)
    n_e, n_chan = m.shape
    first = int(rmf.first_channel)
    f_list, n_list, m_list, ngrp = [], [], [], np.zeros(n_e, np.int32)
    for i in range(n_e):
        s, ln = _groups_of_row(m[i], lo_thres)
        ngrp[i] = s.size
        f_list.append((s + first).astype(np.int32))
        n_list.append(ln.astype(np.int32))
        m_list.append(np.concatenate([m[i, a:a + b] for a, b in zip(s, ln)]).astype(np.float32)
                      if s.size else np.zeros(0, np.float32))

    def vla(lst, dtype):
        arr = np.empty(len(lst), dtype=object)
        for k, x in enumerate(lst):
            arr[k] = np.asarray(x, dtype=dtype)
        return arr

    maxlen = max([x.size for x in m_list] + [1])
    maxg = max(int(ngrp.max()) if n_e else 1, 1)
    cols = _energy_columns(rmf.energ_lo, rmf.energ_hi) + [
            fits.Column(name="N_GRP", format="I", array=ngrp.astype(np.int16)),
            fits.Column(name="F_CHAN", format=f"PJ({maxg})", array=vla(f_list, np.int32)),
            fits.Column(name="N_CHAN", format=f"PJ({maxg})", array=vla(n_list, np.int32)),
            fits.Column(name="MATRIX", format=f"PE({maxlen})", array=vla(m_list, np.float32))]
    mhdu = fits.BinTableHDU.from_columns(cols, name="MATRIX")
    h = mhdu.header
    h["TLMIN4"] = (first, "first legal channel number")
    h["TLMAX4"] = (first + n_chan - 1, "last legal channel number")
    for key, val in (("TELESCOP", telescop), ("INSTRUME", instrume), ("FILTER", "none"),
                     ("CHANTYPE", "PHA"), ("DETCHANS", n_chan), ("HDUCLASS", "OGIP"),
                     ("HDUCLAS1", "RESPONSE"), ("HDUCLAS2", "RSP_MATRIX"),
                     ("HDUVERS", "1.3.0"), ("LO_THRES", float(lo_thres))):
        v = rmf.header.get(key, val) if key in ("TELESCOP", "INSTRUME", "CHANTYPE") else val
        h[key] = v
    ecols = [fits.Column(name="CHANNEL", format="J",
                         array=(first + np.arange(n_chan)).astype(np.int32)),
             fits.Column(name="E_MIN", format="E", unit="keV",
                         array=np.asarray(rmf.e_min, np.float32)),
             fits.Column(name="E_MAX", format="E", unit="keV",
                         array=np.asarray(rmf.e_max, np.float32))]
    ehdu = fits.BinTableHDU.from_columns(ecols, name="EBOUNDS")
    eh = ehdu.header
    eh["TLMIN1"] = first
    eh["TLMAX1"] = first + n_chan - 1
    for key, val in (("TELESCOP", h["TELESCOP"]), ("INSTRUME", h["INSTRUME"]),
                     ("FILTER", "none"), ("CHANTYPE", h["CHANTYPE"]), ("DETCHANS", n_chan),
                     ("HDUCLASS", "OGIP"), ("HDUCLAS1", "RESPONSE"), ("HDUCLAS2", "EBOUNDS"),
                     ("HDUVERS", "1.2.0")):
        eh[key] = val
    atomic_fits_write(path, fits.HDUList([fits.PrimaryHDU(), mhdu, ehdu]))


# --------------------------------------------------------------------------------------------
# ARF
# --------------------------------------------------------------------------------------------

@dataclass
class ARF:
    """An ancillary response: effective area ``specresp`` (cm^2) per energy bin (keV)."""
    energ_lo: np.ndarray
    energ_hi: np.ndarray
    specresp: np.ndarray
    header: dict = field(default_factory=dict)
    path: Optional[str] = None

    @property
    def energy_mid(self):
        return 0.5 * (np.asarray(self.energ_lo, float) + np.asarray(self.energ_hi, float))



def arf_on_rmf(arf, rmf):
    """Effective area (cm^2) for each energy row of ``rmf``, paired as XSPEC pairs them, and a
    note (or None) for the output.

    XSPEC reads the ARF's SPECRESP by row: row ``i`` of the ARF goes with row ``i`` of the RMF
    whatever the ARF's energy labels say (``OGIP_92aResponse::readAuxResponse``), and it refuses
    an ARF with another number of rows. The same is done here when the row counts agree; the note
    says when the labels differ (the CLASS ARF's run one row below the RMF's). An ARF on another
    grid, which XSPEC refuses, is interpolated linearly at bin centres onto the RMF's rows (0
    outside), and the note says so. ``arf``/``rmf`` may be objects or dicts with the fields of
    :class:`ARF` (``energ_lo``/``e_low``, ``energ_hi``/``e_high``, ``specresp``) and :class:`RMF`."""
    def get(obj, *names):
        for n in names:
            if isinstance(obj, dict) and n in obj:
                return np.asarray(obj[n], float)
            if hasattr(obj, n):
                return np.asarray(getattr(obj, n), float)
        raise ClassXRFError(getattr(obj, "path", None), f"response object has no {names[0]}",
                            key=names[0].upper())
    rlo, rhi = get(rmf, "energ_lo"), get(rmf, "energ_hi")
    alo, ahi = get(arf, "energ_lo", "e_low"), get(arf, "energ_hi", "e_high")
    val = get(arf, "specresp")
    name = os.path.basename(str(getattr(arf, "path", None) or "ARF"))
    if val.size == rlo.size:
        if np.allclose(alo, rlo, atol=1e-5, rtol=0) and np.allclose(ahi, rhi, atol=1e-5, rtol=0):
            return val.copy(), None
        step = np.median(np.diff(rlo)) if rlo.size > 1 else 0.0
        shift = np.median(rlo - alo)
        rows = shift / step if step > 0 else np.nan
        how = (f"labelled {abs(rows):.0f} row(s) {'below' if rows > 0 else 'above'} the RMF's"
               if np.isfinite(rows) and abs(rows - round(rows)) < 0.05 and round(rows) != 0
               else "labelled on other energies than the RMF's")
        return val.copy(), (f"{name}: effective area paired with the RMF by row, as XSPEC does "
                            f"(its energy columns are {how})")
    keep = ahi > alo
    mid = 0.5 * (alo + ahi)[keep]
    order = np.argsort(mid)
    area = np.interp(0.5 * (rlo + rhi), mid[order], val[keep][order], left=0.0, right=0.0)
    return area, (f"{name}: {val.size} rows for the RMF's {rlo.size} (XSPEC refuses this "
                  f"pair); effective area interpolated onto the RMF's energies")


def read_arf(path):
    """Read an OGIP ARF (``SPECRESP`` extension). Energy columns ``ENERG_LO``/``ENERG_HI`` or
    CLASS's ``E_LOW``/``E_HIGH``."""
    hdul = open_fits(path)
    try:
        hdu = _find_hdu(hdul, path, ["SPECRESP"], "HDUCLAS2", ("SPECRESP",), column="SPECRESP")
        header, _ = header_to_dict(hdu.header)
        data = _read_table_data(hdu, path)
        names = _colnames(data)
        if "ENERG_LO" in names:
            lo_key, hi_key = "ENERG_LO", "ENERG_HI"
        elif "E_LOW" in names:
            lo_key, hi_key = "E_LOW", "E_HIGH"
        else:
            raise ClassXRFError(path, "no energy column (ENERG_LO or E_LOW)", key="ENERG_LO")
        lo = _column(data, lo_key, path).astype(float)
        hi = _column(data, hi_key, path).astype(float)
        sr = _column(data, "SPECRESP", path).astype(float)
        if not np.all(np.isfinite(sr)):
            raise ClassXRFError(path, "effective area has non-finite values", key="SPECRESP")
        return ARF(energ_lo=lo, energ_hi=hi, specresp=sr, header=header, path=os.fspath(path))
    finally:
        hdul.close()


def _energy_columns(energ_lo, energ_hi):
    """The ``ENERG_LO`` / ``ENERG_HI`` columns (keV, float32) of an RMF's MATRIX or an ARF."""
    from astropy.io import fits
    return [fits.Column(name=name, format="E", unit="keV", array=np.asarray(v, np.float32))
            for name, v in (("ENERG_LO", energ_lo), ("ENERG_HI", energ_hi))]


def write_arf(path, arf, telescop="CHANDRAYAAN-2", instrume="CLASS"):
    """Write an :class:`ARF` with standard ``ENERG_LO``/``ENERG_HI``/``SPECRESP``, atomically."""
    from astropy.io import fits
    cols = _energy_columns(arf.energ_lo, arf.energ_hi) + [
        fits.Column(name="SPECRESP", format="E", unit="cm**2", array=np.asarray(arf.specresp, np.float32))]
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECRESP")
    h = hdu.header
    for key, val in (("TELESCOP", arf.header.get("TELESCOP", telescop)),
                     ("INSTRUME", arf.header.get("INSTRUME", instrume)), ("FILTER", "none"),
                     ("HDUCLASS", "OGIP"), ("HDUCLAS1", "RESPONSE"), ("HDUCLAS2", "SPECRESP"),
                     ("HDUVERS", "1.1.0")):
        h[key] = val
    atomic_fits_write(path, fits.HDUList([fits.PrimaryHDU(), hdu]))
