"""Co-adding CLASS 8-s L1 spectra into longer spectra, and the night-side background.

Strategies (``strategy=``):

``"sliding"``
    ISRO's rule (``CLASS_add_L1_files_time.pro``): windows of ``window`` consecutive frames
    (default 12 = 96 s), moved by ``stride`` frames. A window is only made of frames that really
    follow each other in time.
``"running"``
    The running check of the paper: starting at a frame, keep adding the following frames; after
    each addition fit three Gaussians (Mg, Al, Si K-alpha) and a linear continuum to the running
    sum and stop as soon as the reduced chi-square lies in [0.8, 2] (``chi2_range``); that sum is
    one spectrum and the next one starts at the following frame. A chi-square below 0.8 means the
    counts are still too few to constrain the lines, so frames keep being added. A sum whose
    chi-square is already above 2 (a bright flare: enough counts, more structure than the simple
    model) is also closed there, since adding frames only raises the chi-square; its value is
    kept in ``CHI2_RED``/``chi2_red`` so it can be told apart. Frames left when a contiguous run
    ends (or after ``max_frames``) without reaching 0.8 are not written.
``"combined"``
    Sliding windows as above; a window whose running sum is not yet good enough (reduced
    chi-square below the range) is extended frame by frame by the running check, up to
    ``max_frames`` or the end of its contiguous run; a window whose chi-square is above the range
    (a bright spectrum the simple model does not describe) is kept as it is. Windows that never
    reach the range are not written.

Contiguity: frame ``k+1`` follows frame ``k`` when its ``STARTIME`` equals the ``ENDTIME`` of
frame ``k`` within ``gap_tolerance`` seconds (0.5 s). No co-added spectrum ever spans a gap:
its ``EXPOSURE`` is the sum of the exposures of the frames actually summed (8 s each) and its
counts the exact channel-by-channel sum.

Header conventions (checked against ISRO's co-added files of 2024-01-01): ``STARTIME`` of the
first and ``ENDTIME`` of the last frame; ``SAT_ALT``, ``SOLARANG``, ``PHASEANG``, ``EMISNANG``
the means over the frames; the merged corners span the strip from the first to the last frame.
In ISRO's files ``V0``/``V3`` lie on the north edge and ``V1``/``V2`` on the south edge for
southbound passes (05:23:36, lat -71.5 -> -77.1) and northbound passes alike (05:31:36, the same
orbit after the pole), and in the L1 frames ``V0``/``V3`` are the north edge too; so the merged
``V0``/``V3`` come from the first frame and ``V1``/``V2`` from the last frame on a southbound
pass, and the reverse on a northbound pass. We pick the assignment whose ``V0``-``V1`` distance
is larger, which is that rule and stays well defined near the poles. We add ``BORE_LAT``/
``BORE_LON`` (means), ``MID_UTC``, ``NFRAMES``, our ``PROGRAM`` and ``RESPFILE``/``ANCRFILE``/
``BACKFILE`` when given. The footprint polygon of the observation layer is the union of the
frames' footprints (correct across the 180 deg meridian).
"""
import contextlib
import glob
import os
from dataclasses import dataclass, field
from datetime import timezone
from typing import List, Optional

import numpy as np

from . import obslayer
from .class_l1 import read_class_l1, rebin_channels
from .errors import ClassXRFError
from .ogip import PHA, format_utc, read_pha, write_pha
from .progress import as_progress, subrange
from .specs import STRATEGIES
from .specs import CoaddParams as _P

__all__ = ["CoaddResult", "Window", "coadd_folder", "coadd_frames", "list_l1_files",
           "read_frames", "contiguous_runs", "plan_windows", "line_fit_chi2", "merge_header", "mean_direction",
           "build_background", "merged_corners", "PROGRAM_NAME", "STRATEGIES"]

PROGRAM_NAME = "class_qgis_plugin.coadd"

#: line energies (keV) of the running check: Mg, Al, Si K-alpha (xraylib LineEnergy values)
LINE_KEV = (1.2536, 1.4866, 1.7398)
#: energy band of the running-check fit (keV)
FIT_BAND_KEV = (0.9, 2.3)
#: Si K absorption edge (keV), where the CLASS effective area steps down
SI_EDGE_KEV = 1.839

_PER_FRAME_KEYS = {"LST_HR", "LST_MIN", "LST_SEC", "DATASET", "TEMP", "SAT_LAT", "SAT_LON",
                   "MID_UTC", "DATE", "CHECKSUM", "DATASUM", "NFRAMES", "COADDSTR", "CHI2_RED"}


@dataclass
class Window:
    """Indices (into the sorted frame list) of one co-added spectrum and its running check."""
    frames: List[int]
    chi2_red: float = float("nan")


@dataclass
class CoaddResult:
    """Outcome of :func:`coadd_folder`: the PHA files written, one footprint geometry per file,
    the observation-layer attributes (the co-add's columns of :mod:`obslayer` -> lists), the
    background PHA (if any) and bookkeeping: ``unused`` lists every frame no
    spectrum uses as ``(path, reason)``."""
    pha_paths: List[str]
    geometries: list
    attributes: dict
    background_path: Optional[str] = None
    n_frames_read: int = 0
    n_frames_rejected: int = 0
    skipped: list = field(default_factory=list)
    unused: list = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------

def list_l1_files(inputs):
    """CLASS L1 files of ``inputs``: a folder (searched recursively for ``*.fits``, ``*.fit``,
    ``*.pha``), one file, or a list of files and folders. Sorted, without duplicates."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out = []
    for item in inputs:
        p = os.fspath(item)
        if os.path.isdir(p):
            for ext in ("fits", "fit", "pha", "FITS", "FIT", "PHA"):
                out.extend(glob.glob(os.path.join(p, "**", f"*.{ext}"), recursive=True))
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise ClassXRFError(p, "input file or folder not found")
    out = sorted(set(os.path.abspath(x) for x in out))
    if not out:
        raise ClassXRFError(None, "no CLASS L1 files (*.fits) found in the input", key="INPUT")
    return out


def read_frames(paths, progress=None, skip_bad=False):
    """Read L1 files into frames sorted by start time (exact duplicates of a start dropped).

    With ``skip_bad`` a file that cannot be read is left out and listed in the second return
    value as ``(path, message)``; otherwise its :class:`ClassXRFError` propagates. Two files of
    the same interval with the same counts are one frame (the second is listed as a duplicate);
    with different counts they are an error naming both.
    """
    p = as_progress(progress)
    frames, skipped = [], []
    n = len(paths)
    for k, path in enumerate(paths):
        if k % 64 == 0:
            p.check()
            p.set(k / max(n, 1), f"reading {k}/{n} L1 files")
        try:
            frames.append(read_class_l1(path))
        except ClassXRFError as exc:
            if not skip_bad:
                raise
            skipped.append((path, str(exc)))
    p.set(1.0, f"read {len(frames)} L1 files")
    frames.sort(key=lambda f: (f.start, f.path))
    unique = []
    for f in frames:
        if unique and f.start == unique[-1].start and f.end == unique[-1].end:
            prev = unique[-1]
            if f.counts.shape == prev.counts.shape and np.array_equal(f.counts, prev.counts):
                skipped.append((f.path, f"the same 8 s and the same counts as {os.path.basename(prev.path)}: "
                                        f"a duplicate, left out"))
                continue
            raise ClassXRFError(f.path, f"covers the same interval ({format_utc(f.start)} to {format_utc(f.end)}) "
                                        f"as {prev.path} with different counts: remove one of the two files")
        unique.append(f)
    return unique, skipped


def contiguous_runs(frames, gap_tolerance=0.5):
    """Split time-sorted frames into runs of contiguous frames (lists of indices).

    Frame ``k+1`` continues the run when ``|start[k+1] - end[k]| <= gap_tolerance`` seconds and
    both have the same number of channels.
    """
    runs = []
    for k, f in enumerate(frames):
        if runs:
            prev = frames[runs[-1][-1]]
            dt = (f.start - prev.end).total_seconds()
            if abs(dt) <= gap_tolerance and f.n_channels == prev.n_channels:
                runs[-1].append(k)
                continue
        runs.append([k])
    return runs


# --------------------------------------------------------------------------------------------
# running check: three Gaussians + a continuum
# --------------------------------------------------------------------------------------------

def _channel_energy_keV(n_channels, gain_ev):
    return (np.arange(n_channels) + 0.5) * gain_ev / 1000.0


def line_fit_chi2(counts, gain_ev=None, band=FIT_BAND_KEV, lines=LINE_KEV, edge=SI_EDGE_KEV,
                  shifts=np.linspace(-0.06, 0.06, 13), sigmas=np.linspace(0.03, 0.10, 8)):
    """Reduced chi-square of the best fit of three Gaussians (at the Mg, Al, Si K-alpha
    energies, with a common gain shift and a common width) plus a continuum to ``counts`` in
    ``band`` keV.

    The continuum is linear on each side of the Si K edge of the detector (1.839 keV, where the
    CLASS effective area drops from about 30 to 23 cm^2), so it can step there. Amplitudes and
    continuum are non-negative and solved exactly by NNLS for each (shift, width) of a small
    grid: no local minimum to fall into. Weights are Neyman's (variance = max(counts, 1)), so a
    spectrum with too few counts gives a reduced chi-square well below 1 (the running check then
    asks for more frames). Returns ``(chi2_red, dof)``; NaN when the band holds too few bins.
    """
    from scipy.optimize import nnls
    c = np.asarray(counts, float)
    n = c.size
    if gain_ev is None:
        gain_ev = 13.5 * 2048 / n
    e = _channel_energy_keV(n, gain_ev)
    sel = (e >= band[0]) & (e <= band[1])
    y = c[sel]
    x = e[sel]
    n_par = 9  # 3 amplitudes, 4 continuum nodes, shift, width
    dof = y.size - n_par
    if dof <= 0 or not (x[0] < edge < x[-1]):
        return float("nan"), dof
    w = 1.0 / np.sqrt(np.maximum(y, 1.0))
    lo = x < edge
    cont = [np.where(lo, (edge - x) / (edge - x[0]), 0.0), np.where(lo, (x - x[0]) / (edge - x[0]), 0.0),
            np.where(~lo, (x[-1] - x) / (x[-1] - edge), 0.0),
            np.where(~lo, (x - edge) / (x[-1] - edge), 0.0)]
    width = gain_ev / 1000.0  # a unit-area Gaussian integrated over a channel ~ density x width
    yw = y * w
    best = np.inf
    for s in shifts:
        for sig in sigmas:
            cols = cont + [width * np.exp(-0.5 * ((x - el - s) / sig) ** 2) /
                           (sig * np.sqrt(2 * np.pi)) for el in lines]
            _, rnorm = nnls(np.column_stack(cols) * w[:, None], yw)
            best = min(best, rnorm * rnorm)
    return float(best / dof), dof


# --------------------------------------------------------------------------------------------
# window planning
# --------------------------------------------------------------------------------------------

def plan_windows(frames, runs, strategy=_P.strategy, window=_P.window, stride=_P.stride, min_frames=None,
                 max_frames=None, chi2_range=(0.8, 2.0), progress=None):
    """The co-added spectra to make: a list of :class:`Window` (indices into ``frames``).

    ``min_frames`` (default ``window``): the fewest frames a sliding window may hold when its
    contiguous run is shorter than ``window`` (runs shorter than that give nothing).
    ``max_frames`` (default ``4 * window``): the most frames the running check may add.
    """
    if strategy not in STRATEGIES:
        raise ClassXRFError(None, f"unknown strategy {strategy!r}; one of {STRATEGIES}",
                            key="STRATEGY")
    window = int(window)
    stride = int(stride)
    if window < 1:
        raise ClassXRFError(None, f"window must be at least 1 frame (got {window})", key="WINDOW")
    if stride < 1:
        raise ClassXRFError(None, f"stride must be at least 1 frame (got {stride})", key="STRIDE")
    min_frames = window if min_frames is None else max(1, min(int(min_frames), window))
    max_frames = 4 * window if max_frames is None else max(int(max_frames), 1)
    p = as_progress(progress)
    out = []
    total = max(sum(len(r) for r in runs), 1)
    done = 0
    for run in runs:
        p.check()
        p.set(done / total, "planning windows")
        done += len(run)
        L = len(run)
        if strategy == "sliding":
            if L >= window:
                for k in range(0, L - window + 1, stride):
                    out.append(Window(run[k:k + window]))
            elif L >= min_frames:
                out.append(Window(list(run)))
        elif strategy == "running":
            k = 0
            while k < L:
                p.check()
                acc = np.zeros_like(frames[run[k]].counts)
                gain = _gain(frames[run[k]])
                found = None
                for j in range(k, min(L, k + max_frames)):
                    acc = acc + frames[run[j]].counts
                    chi2, _ = line_fit_chi2(acc, gain)
                    if np.isfinite(chi2) and chi2 >= chi2_range[0]:
                        # in range, or above it: enough counts (more frames only raise it)
                        found = (j, chi2)
                        break
                if found is None:
                    # nothing from frame k reaches the range: try from the next frame
                    k += 1 if L - k > max_frames else L
                    continue
                out.append(Window(run[k:found[0] + 1], found[1]))
                k = found[0] + 1
        else:  # combined
            starts = range(0, L - window + 1, stride) if L >= window else \
                ([0] if L >= min_frames else [])
            for k in starts:
                p.check()
                stop = min(k + window, L)
                acc = np.sum([frames[i].counts for i in run[k:stop]], axis=0)
                gain = _gain(frames[run[k]])
                chi2, _ = line_fit_chi2(acc, gain)
                j = stop
                while chi2 < chi2_range[0] and j < L and j - k < max_frames:
                    acc = acc + frames[run[j]].counts
                    j += 1
                    chi2, _ = line_fit_chi2(acc, gain)
                if not np.isfinite(chi2) or chi2 < chi2_range[0]:
                    continue
                out.append(Window(run[k:j], chi2))
    p.set(1.0, f"{len(out)} spectra to make")
    return out


def _gain(frame):
    g = frame.header.get("GAIN")
    if isinstance(g, (int, float)) and not isinstance(g, bool) and g > 0:
        return float(g)
    return 13.5 * 2048 / frame.n_channels


# --------------------------------------------------------------------------------------------
# merged header and footprint
# --------------------------------------------------------------------------------------------

def merged_corners(first, last):
    """Corners (lat (4,), lon (4,)) of a co-added strip from its first and last frames, by
    ISRO's convention (see the module docstring): V0/V3 from one end frame and V1/V2 from the
    other, choosing the assignment that spans the strip (larger V0-V1 distance)."""
    from .geo import haversine_km
    a_lat = np.array([first.corner_lat[0], last.corner_lat[1], last.corner_lat[2],
                      first.corner_lat[3]])
    a_lon = np.array([first.corner_lon[0], last.corner_lon[1], last.corner_lon[2],
                      first.corner_lon[3]])
    b_lat = np.array([last.corner_lat[0], first.corner_lat[1], first.corner_lat[2],
                      last.corner_lat[3]])
    b_lon = np.array([last.corner_lon[0], first.corner_lon[1], first.corner_lon[2],
                      last.corner_lon[3]])
    da = haversine_km(a_lat[0], a_lon[0], a_lat[1], a_lon[1])
    db = haversine_km(b_lat[0], b_lon[0], b_lat[1], b_lon[1])
    return (a_lat, a_lon) if da >= db else (b_lat, b_lon)


def mean_direction(lats, lons):
    """Mean of directions on the sphere (deg): the mean of their unit vectors, as latitude and
    longitude. Right across the 180 deg meridian and around the poles, where averaging latitude
    and longitude apart is not (frames around the north pole at longitudes -90 and 90 average to
    the pole, not to latitude 89.6 at longitude 0)."""
    from .geo import to_latlon, to_xyz
    lat, lon = to_latlon(to_xyz(np.asarray(lats, float), np.asarray(lons, float)).mean(axis=0))
    return float(lat), float(lon)


def merge_header(frames, strategy=_P.strategy, respfile=None, ancrfile=None, backfile=None,
                 chi2_red=float("nan")):
    """Header dict (values, comments) of the co-added spectrum of ``frames`` (time-ordered)."""
    first, last = frames[0], frames[-1]
    values = {k: v for k, v in first.header.items() if k not in _PER_FRAME_KEYS}
    comments = {}
    n = len(frames)
    start, end = first.start, last.end
    mid = start + (end - start) / 2
    values["STARTIME"] = first.header.get("STARTIME") or format_utc(start)
    values["ENDTIME"] = last.header.get("ENDTIME") or format_utc(end)
    values["MID_UTC"] = format_utc(mid)
    comments.update(STARTIME="Start time in UTC (first frame)",
                    ENDTIME="End time in UTC (last frame)", MID_UTC="Mid window UTC")
    for key, attr, text in (("SAT_ALT", "sat_alt", "Sub-satellite point altitude - Mean (km)"),
                            ("SOLARANG", "solar_angle", "Angle surface normal, sun - Mean (deg)"),
                            ("PHASEANG", "phase_angle", "Angle boresight, sun - Mean (deg)"),
                            ("EMISNANG", "emission_angle",
                             "Angle boresight, emitted X-rays - Mean (deg)")):
        values[key] = float(np.mean([getattr(f, attr) for f in frames]))
        comments[key] = text
    values["BORE_LAT"], values["BORE_LON"] = mean_direction([f.bore_lat for f in frames],
                                                            [f.bore_lon for f in frames])
    comments["BORE_LAT"] = "Boresight latitude - Mean direction (deg)"
    comments["BORE_LON"] = "Boresight longitude - Mean direction (deg)"
    lat, lon = merged_corners(first, last)
    for i in range(4):
        values[f"V{i}_LAT"] = float(lat[i])
        values[f"V{i}_LON"] = float(lon[i])
        comments[f"V{i}_LAT"] = f"Pixel corner {i} latitude (deg)"
        comments[f"V{i}_LON"] = f"Pixel corner {i} longitude (deg)"
    values["NFRAMES"] = n
    comments["NFRAMES"] = "Number of L1 frames added"
    values["PROGRAM"] = PROGRAM_NAME
    comments["PROGRAM"] = "Program that created the file"
    values["COADDSTR"] = strategy
    comments["COADDSTR"] = "Co-add strategy (sliding, running, combined)"
    if np.isfinite(chi2_red):
        values["CHI2_RED"] = float(chi2_red)
        comments["CHI2_RED"] = "Reduced chi2 of the running check"
    values["HDUCLAS2"] = "TOTAL"
    for key, val in (("RESPFILE", respfile), ("ANCRFILE", ancrfile), ("BACKFILE", backfile)):
        if val:
            values[key] = os.fspath(val)
    from datetime import datetime
    values["DATE"] = format_utc(datetime.now(timezone.utc))
    comments["DATE"] = "file creation date (UTC)"
    return values, comments


def _footprint(frames):
    from .geo import union_footprint_corners
    return union_footprint_corners([f.corner_lat for f in frames], [f.corner_lon for f in frames])


def _stamp(dt):
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y%m%dT%H%M%S") + f"{dt.microsecond // 1000:03d}"


# --------------------------------------------------------------------------------------------
# main entry points
# --------------------------------------------------------------------------------------------

def coadd_frames(frames, windows, output_folder, strategy=_P.strategy, respfile=None,
                 ancrfile=None, backfile=None, channels=None, progress=None, place=None):
    """Write one PHA per window and return ``(paths, geometries, attributes)``.

    ``channels=1024`` rebins 2048-channel sums to 1024 channels (pairs summed). ``place(path)``
    gives where to write the file whose final path is ``path`` (a :class:`transact.Transaction`'s
    staging path); the paths returned and written in the layer are the final ones.
    """
    p = as_progress(progress)
    place = place or (lambda path: path)
    os.makedirs(output_folder, exist_ok=True)
    attrs = {k: [] for k in obslayer.columns("coadd")}
    paths, geoms = [], []
    for k, win in enumerate(windows):
        if k % 16 == 0:
            p.check()
            p.set(k / max(len(windows), 1), f"writing spectrum {k + 1}/{len(windows)}")
        fr = [frames[i] for i in win.frames]
        counts = np.sum([f.counts for f in fr], axis=0) if len(fr) > 1 else fr[0].counts.copy()
        exposure = float(sum(f.exposure for f in fr))
        values, comments = merge_header(fr, strategy, respfile, ancrfile, backfile, win.chi2_red)
        first_ch = fr[0].first_channel
        if channels is not None and int(channels) != counts.size:
            if counts.size % int(channels):
                raise ClassXRFError(fr[0].path, f"{counts.size} channels cannot be rebinned to "
                                    f"{channels}", key="CHANNELS")
            factor = counts.size // int(channels)
            counts = rebin_channels(counts, factor)
            values["GAIN"] = float(_gain(fr[0]) * factor)
        values["DETCHANS"] = int(counts.size)
        values["EXPOSURE"] = exposure
        name = f"ch2_cla_L1_time_added_{_stamp(fr[0].start)}-{_stamp(fr[-1].end)}.fits"
        out = os.path.join(output_folder, name)
        pha = PHA(counts=counts, channel=first_ch + np.arange(counts.size), exposure=exposure,
                  header=values, comments=comments, path=out)
        write_pha(place(out), pha)
        paths.append(out)
        geoms.append(_footprint(fr))
        mid = fr[0].start + (fr[-1].end - fr[0].start) / 2
        attrs["obs_id"].append(k + 1)
        attrs["pha_path"].append(out)
        attrs["t_start"].append(format_utc(fr[0].start))
        attrs["t_end"].append(format_utc(fr[-1].end))
        attrs["t_mid"].append(format_utc(mid))
        attrs["exposure"].append(exposure)
        attrs["n_frames"].append(len(fr))
        attrs["counts"].append(float(counts.sum()))
        attrs["solar_ang"].append(values["SOLARANG"])
        attrs["emis_ang"].append(values["EMISNANG"])
        attrs["phase_ang"].append(values["PHASEANG"])
        attrs["sat_alt"].append(values["SAT_ALT"])
        attrs["bore_lat"].append(values["BORE_LAT"])
        attrs["bore_lon"].append(values["BORE_LON"])
        attrs["chi2_red"].append(float(win.chi2_red))
    p.set(1.0, f"wrote {len(paths)} spectra")
    return paths, geoms, attrs


def build_background(output_path, frames=None, background_file=None, min_solar_angle=90.0,
                     channels=None, progress=None):
    """The background PHA for the inversion, written to ``output_path``.

    With ``background_file`` that file is read (checked as an OGIP PHA) and written as the
    background (``HDUCLAS2 = 'BKG'``). Otherwise the night-side frames (``SOLARANG`` >
    ``min_solar_angle``) are summed (exposure = sum of their exposures; they need not be
    contiguous: a background is an average) into the background. Returns the path, or ``None``
    when there are no night-side frames and no file.
    """
    p = as_progress(progress)
    if background_file:
        bkg = read_pha(background_file)
        counts = bkg.counts
        if channels is not None and counts.size != int(channels):
            if counts.size % int(channels):
                raise ClassXRFError(background_file, f"{counts.size} channels cannot be "
                                    f"rebinned to {channels}", key="DETCHANS")
            counts = rebin_channels(counts, counts.size // int(channels))
        header = dict(bkg.header)
        header["HDUCLAS2"] = "BKG"
        header["DETCHANS"] = int(counts.size)
        out = PHA(counts=counts, channel=bkg.first_channel + np.arange(counts.size),
                  exposure=bkg.exposure, backscal=bkg.backscal if counts.size == bkg.counts.size
                  else 1.0, header=header, comments=bkg.comments, path=output_path)
        write_pha(output_path, out)
        p.set(1.0, "background copied")
        return os.fspath(output_path)
    night = [f for f in (frames or []) if f.solar_angle > min_solar_angle]
    if not night:
        return None
    sizes = {f.n_channels for f in night}
    if len(sizes) > 1:
        # sum the majority channel count only
        size = max(sizes, key=lambda s: sum(f.n_channels == s for f in night))
        night = [f for f in night if f.n_channels == size]
    counts = np.sum([f.counts for f in night], axis=0)
    exposure = float(sum(f.exposure for f in night))
    values = {k: v for k, v in night[0].header.items() if k not in _PER_FRAME_KEYS}
    for key in ("STARTIME", "ENDTIME"):
        values.pop(key, None)
    values["STARTIME"] = format_utc(min(f.start for f in night))
    values["ENDTIME"] = format_utc(max(f.end for f in night))
    for key, attr in (("SOLARANG", "solar_angle"), ("PHASEANG", "phase_angle"),
                      ("EMISNANG", "emission_angle"), ("SAT_ALT", "sat_alt")):
        values[key] = float(np.mean([getattr(f, attr) for f in night]))
    for key in [k for k in values if k.startswith("V") and k[1:2].isdigit()] + \
            ["BORE_LAT", "BORE_LON"]:
        values.pop(key, None)
    values["NFRAMES"] = len(night)
    values["PROGRAM"] = PROGRAM_NAME
    values["HDUCLAS2"] = "BKG"
    values["BGSOLANG"] = float(min_solar_angle)
    comments = {"NFRAMES": "Number of night-side L1 frames added",
                "BGSOLANG": "Frames with SOLARANG above this (deg) were added"}
    first_ch = night[0].first_channel
    if channels is not None and int(channels) != counts.size:
        counts = rebin_channels(counts, counts.size // int(channels))
    values["DETCHANS"] = int(counts.size)
    pha = PHA(counts=counts, channel=first_ch + np.arange(counts.size), exposure=exposure,
              header=values, comments=comments, path=output_path)
    write_pha(output_path, pha)
    p.set(1.0, f"background from {len(night)} night-side frames")
    return os.fspath(output_path)


def _unused_frames(frames, keep, runs, windows, strategy, min_frames, reasons):
    """Why each frame that no spectrum uses was left out (path -> reason), in ``reasons``."""
    used = [i for i, k in enumerate(keep) if k]
    in_window = {i for w in windows for i in w.frames}
    sizes = [frames[i].n_channels for i in used]
    major = max(set(sizes), key=sizes.count) if sizes else None
    for run in runs:
        for j in run:
            if j in in_window:
                continue
            f = frames[used[j]]
            odd = (f" ({f.n_channels} channels among {major}-channel frames: a change of channel count "
                   f"breaks a run)") if f.n_channels != major else ""
            if strategy == "sliding":
                reasons[f.path] = (f"in a contiguous run of {len(run)} frame(s){odd}, fewer than MIN_FRAMES = "
                                   f"{min_frames}")
            else:
                reasons[f.path] = f"the running check did not reach the chi-square range in its run of {len(run)}{odd}"


def coadd_folder(inputs, output_folder, strategy=_P.strategy, window=_P.window, stride=_P.stride,
                 flare_catalog=None, allowed_classes=_P.allowed_classes, respfile=None,
                 ancrfile=None, backfile=None, progress=None, place=None,
                 gap_tolerance=0.5, min_frames=None, max_frames=None, chi2_range=(0.8, 2.0),
                 channels=None, make_background=False, min_solar_angle_bkg=90.0,
                 max_solar_angle=None, skip_bad=False):
    """Co-add a folder (or list) of CLASS 8-s L1 files into OGIP PHA files.

    ``flare_catalog``: path of the XSM flare CSV (or a :class:`~.flares.FlareCatalog`); only
    frames whose mid time lies inside a flare of ``allowed_classes`` are used (a rejected frame
    breaks contiguity). ``max_solar_angle``: leave out frames with a larger ``SOLARANG`` (e.g.
    90 for day side only). ``min_frames`` (default ``window``): a contiguous run shorter than the
    window still gives one spectrum when it has at least this many frames (1: every frame counts,
    with its true exposure). ``make_background``: when ``backfile`` is not given, build one from
    the night-side frames into ``output_folder/background_night.pha`` (and name it in BACKFILE).

    Every output appears whole or not at all: the PHA files and the background are staged and
    moved into place together (:mod:`transact`), so a cancel or a failure leaves the output folder
    as it was; what a killed run left is cleaned (or completed) by the next run. ``place``: the
    staging path function of the caller's :class:`transact.Transaction` (the co-add stage's, which
    commits the files with the observation layer); without it the files are committed here.
    Every frame that no spectrum uses is in :attr:`CoaddResult.unused` with the reason.
    """
    from . import transact
    p = as_progress(progress)
    if strategy not in STRATEGIES:
        raise ClassXRFError(None, f"unknown strategy {strategy!r}; one of {STRATEGIES}",
                            key="STRATEGY")
    output_folder = transact.output_folder(output_folder)
    if place is None:
        transact.recover(output_folder)
    paths = list_l1_files(inputs)
    frames, skipped = read_frames(paths, subrange(p, 0.0, 0.5), skip_bad=skip_bad)
    n_read = len(frames)
    if not frames:
        raise ClassXRFError(None, "no readable CLASS L1 file in the input", key="INPUT")
    reasons = dict(skipped)
    keep = np.ones(len(frames), bool)
    for k, f in enumerate(frames):        # corners all (0, 0), or all the same point: no footprint
        if np.ptp(f.corner_lat) == 0 and np.ptp(f.corner_lon) == 0:
            keep[k] = False
            reasons[f.path] = (f"its corners V0..V3 are all ({f.corner_lat[0]:g}, {f.corner_lon[0]:g}): the frame "
                               f"has no footprint")
    if max_solar_angle is not None:
        for k, f in enumerate(frames):
            if f.solar_angle > max_solar_angle:
                keep[k] = False
                reasons[f.path] = f"SOLARANG {f.solar_angle:.1f} deg above the maximum {max_solar_angle:g}"
    if flare_catalog is not None:
        from .flares import FlareCatalog, read_flare_catalog
        cat = flare_catalog if isinstance(flare_catalog, FlareCatalog) else \
            read_flare_catalog(flare_catalog)
        inside = cat.in_allowed_flare([f.mid for f in frames], allowed_classes)
        for k, f in enumerate(frames):
            if keep[k] and not inside[k]:
                keep[k] = False
                reasons[f.path] = f"not inside a flare of class {'/'.join(allowed_classes)} of the catalogue"
    used = [f for f, k in zip(frames, keep) if k]
    runs = contiguous_runs(used, gap_tolerance)
    windows = plan_windows(used, runs, strategy, window, stride, min_frames, max_frames,
                           chi2_range, subrange(p, 0.5, 0.6))
    mf = int(window) if min_frames is None else max(1, min(int(min_frames), int(window)))
    _unused_frames(frames, keep, runs, windows, strategy, mf, reasons)
    if not windows:
        longest = max((len(r) for r in runs), default=0)
        where = inputs if isinstance(inputs, (str, os.PathLike)) else f"{len(paths)} files"
        advice = (f"lower MIN_FRAMES to {longest} or less (a single frame is a valid spectrum)" if longest else
                  "every frame was filtered out: check the flare catalogue and the solar-angle filter")
        raise ClassXRFError(where, f"no co-added spectrum: {n_read} frames read, {int((~keep).sum())} filtered "
                                   f"out, the longest run of contiguous frames has {longest} (WINDOW {window}, "
                                   f"MIN_FRAMES {mf}); {advice}")
    with (transact.open_transaction(output_folder) if place is None else contextlib.nullcontext()) as tx:
        place = place if tx is None else tx.path
        background_path = None
        if backfile or make_background:
            bpath = os.path.join(output_folder, "background_night.pha") if not backfile else \
                os.fspath(backfile)
            if make_background and not backfile:
                background_path = build_background(place(bpath), frames, None, min_solar_angle_bkg, channels)
                background_path = bpath if background_path else None
            else:
                background_path = bpath
        pha_paths, geoms, attrs = coadd_frames(used, windows, output_folder, strategy, respfile,
                                               ancrfile, background_path, channels,
                                               subrange(p, 0.6, 0.97), place=place)
        p.check()
    p.set(1.0, f"{len(pha_paths)} co-added spectra")
    return CoaddResult(pha_paths=pha_paths, geometries=geoms, attributes=attrs,
                       background_path=background_path,
                       n_frames_read=n_read, n_frames_rejected=int((~keep).sum()),
                       skipped=skipped,
                       unused=sorted(reasons.items()))
