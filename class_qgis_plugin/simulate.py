"""A synthetic but physically modelled CLASS data set with known truth: the embedded default.

Every other stage runs on its output without a download:

* an albedo raster of one GIB region (342 x 682 pixels of about 2 km, ``ESRI:104903``) with
  dark mare and bright highland units (a smooth random field thresholded softly, plus crater-like
  texture);
* the truth abundance raster (8 bands, wt% of O, Na, Mg, Al, Si, Ca, Ti, Fe): each pixel a mix of
  the mean mare and highland soils of :mod:`composition` (Lunar Sourcebook Tab. 7.15, Prettyman et
  al. 2006) by its mare fraction, with spatially correlated variation (Ti and Fe richer in some
  mare flows, Al and Ca varying in the highlands), oxygen by oxide stoichiometry, summing to 100;
* near-polar orbit tracks of 8-s CLASS frames. Footprint geometry follows the paper's numbers:
  12.5 km across track, 12.5 km along track per instantaneous field of view, and the boresight
  advancing so that 12 frames (96 s) span about 100 km; a few frames drop out at random (as in
  real data) so that co-add has gaps to respect;
* solar flares of the chosen GOES classes: the optically thin thermal continuum (free-free,
  free-bound and two-photon, :func:`solar.thermal_continuum`) of a representative temperature and
  emission measure per class (lines are left out: the simulated truth only needs a known I0), with
  I0(E) written as a solar table (the format of ISRO's ``modelop_*.txt``);
* 8-s CLASS L1 spectra (2048 channels of 13.5 eV) drawn with Poisson noise from the FP forward
  model (:mod:`fpmodel`) of each footprint's mean truth composition plus the instrument
  background, written as OGIP PHA files with the CLASS header keys (times, corners, boresight,
  SOLARANG, EMISNANG, PHASEANG, SAT_ALT);
* XSM spectra of the same flares (one per track, 512 PI channels, an XSM-like ARF and the
  approximate XSM response), so the solar fit runs on the simulated set too;
* the response: the real CLASS RMF/ARF when given, otherwise a CLASS-like one (Gaussian
  redistribution with Fano-limited resolution, an effective area of 16 SCDs behind a thin Al/Be
  filter), written as OGIP RMF/ARF; and a long night-side background PHA.

Everything is seeded: the same seed gives the same files.
"""
import csv
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from . import composition, geo
from .choices import DEFAULT_REGION
from .errors import ClassXRFError
from .progress import as_progress, subrange
from .specs import SimulateParams, default_of

# GOES class -> (temperature MK, emission measure cm^-3) of a representative flare plateau.
# Typical peak values of flares of that class (Feldman et al. 1996, ApJ 460, 1034: T-EM relation
# of GOES flares; Warmuth and Mann 2016): B ~ 8 MK / 2e47, C ~ 12 MK / 2e48, M ~ 16 MK / 1e49.
FLARE_PLASMA = {"A": (5.0, 4e46), "B": (8.0, 2e47), "C": (12.0, 2e48), "M": (16.0, 1e49),
                "X": (20.0, 7e49)}

FRAME_S = 8.0
CLASS_CHANNELS = 2048
CLASS_GAIN_KEV = 0.0135


@dataclass
class SimulationConfig:
    """Settings of :func:`simulate` (all have defaults: the embedded default data set)."""

    seed: int = 42
    region: tuple = DEFAULT_REGION    # GIB region (i, j): 0..22.5 N, 0..45 E by default
    regions_across: int = 1           # neighbouring regions eastwards from ``region`` the surface and tracks cover
    flare_classes: tuple = ("C",)     # one class per track, cycled
    n_tracks: int = 24
    lat_fraction: float = 1.0         # fraction of the region's latitude span each track covers
    across_km: float = default_of(SimulateParams, "frame_across_km")
    along_km: float = default_of(SimulateParams, "frame_along_km")
    step_km: float = default_of(SimulateParams, "frame_step_km")    # boresight advance per 8-s frame
    dropout: float = 0.02             # probability that a frame is missing
    start_utc: str = "2024-03-15T00:00:00"
    orbit_gap_s: float = default_of(SimulateParams, "track_gap_s")   # time between successive tracks
    sat_alt_km: float = 100.0
    subsolar_lat: float = 0.0
    subsolar_lon_offset: float = -25.0  # subsolar longitude relative to the region's centre
    background_exposure_s: float = 50000.0
    rmf: str = None
    arf: str = None

    def to_json(self):
        d = asdict(self)
        d["region"] = list(self.region)
        d["flare_classes"] = list(self.flare_classes)
        return d


@dataclass
class SimulationResult:
    folder: Path
    albedo: Path
    truth: Path
    frames_folder: Path
    rmf: Path
    arf: Path
    background: Path
    solar_tables: dict
    frames_csv: Path
    n_frames: int
    xsm_folder: Path = None
    config: SimulationConfig = field(default=None)


# --------------------------------------------------------------------------- random fields
def _smooth_field(rng, shape, scale_px):
    """Zero-mean, unit-variance Gaussian random field with correlation length ``scale_px``."""
    noise = rng.standard_normal(shape)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    filt = np.exp(-2.0 * (np.pi * scale_px) ** 2 * (kx ** 2 + ky ** 2))
    f = np.fft.irfft2(np.fft.rfft2(noise) * filt, s=shape)
    f -= f.mean()
    return f / (f.std() + 1e-12)


def make_surface(rng, shape=(geo.REGION_ROWS, geo.REGION_COLS)):
    """Albedo (rows, cols), mare fraction in [0, 1] and the truth wt% (8, rows, cols)."""
    rows, cols = shape
    base = _smooth_field(rng, shape, 40.0)
    mare = 1.0 / (1.0 + np.exp(-(base - 0.3) / 0.15))         # ~35 % mare, soft contacts
    # Crater-like texture: bright rims on a few hundred small bowls.
    yy, xx = np.mgrid[0:rows, 0:cols]
    texture = np.zeros(shape)
    for _ in range(300):
        cy, cx = rng.uniform(0, rows), rng.uniform(0, cols)
        r = rng.uniform(2.0, 9.0)
        d = np.hypot(yy - cy, xx - cx) / r
        near = d < 2.0
        texture[near] += 0.012 * np.exp(-((d[near] - 1.0) ** 2) / 0.05) - 0.008 * np.exp(-(d[near] ** 2) / 0.3)
    albedo = 0.075 * mare + 0.165 * (1.0 - mare) + texture + 0.004 * rng.standard_normal(shape)
    albedo = np.clip(albedo, 0.02, 0.35)

    # Truth composition: mixture of the mare and highland soils with correlated variations.
    cat_mare = composition.MARE_WT[1:].copy()
    cat_high = composition.HIGHLAND_WT[1:].copy()
    cations = mare[None] * cat_mare[:, None, None] + (1.0 - mare[None]) * cat_high[:, None, None]
    vary = {  # (element index among cations Na..Fe, relative amplitude, correlation length px)
        "Ti": (5, 0.45, 25.0), "Fe": (6, 0.12, 30.0), "Mg": (1, 0.15, 35.0),
        "Al": (2, 0.08, 35.0), "Ca": (4, 0.06, 35.0), "Na": (0, 0.15, 50.0),
    }
    for name, (k, amp, scale) in vary.items():
        f = _smooth_field(rng, shape, scale)
        weight = mare if name in ("Ti", "Fe", "Mg") else (1.0 - mare) if name in ("Al", "Ca") else 1.0
        cations[k] *= np.clip(1.0 + amp * f * weight, 0.3, 2.0)
    oxygen = composition.oxygen_from_cations(np.moveaxis(cations, 0, -1))
    wt = np.concatenate([oxygen[None], cations], axis=0)
    wt *= 100.0 / wt.sum(axis=0, keepdims=True)
    return albedo.astype(np.float32), mare.astype(np.float32), wt.astype(np.float32)


def extent(cfg):
    """(west, south, east, north) and the pixel-centre latitude and longitude axes of the simulated
    surface: ``cfg.region`` and ``cfg.regions_across - 1`` neighbours east of it, on the GIB's pixels."""
    west, south, east, north = geo.region_bounds(*cfg.region)
    n = int(cfg.regions_across)
    if n < 1 or cfg.region[1] + n > geo.N_REGION_COLS:
        raise ClassXRFError(None, f"{n} regions eastwards from region {tuple(cfg.region)} leave the 8 x 8 "
                            "partition (no wrap at 180 deg)", key="regions_across")
    east = west + geo.REGION_DLON * n
    lat, _ = geo.region_grid(*cfg.region)
    lon = west + geo.PIXEL_DLON * (np.arange(geo.REGION_COLS * n) + 0.5)
    return (west, south, east, north), lat, lon


# --------------------------------------------------------------------------- orbit tracks
def make_tracks(cfg, rng):
    """Frames of the orbit tracks: a dict of arrays (one row per frame, dropped frames removed)."""
    (west, south, east, north), _, _ = extent(cfg)
    span = (north - south) * cfg.lat_fraction
    lat0 = 0.5 * (north + south) - 0.5 * span
    km_per_deg = np.pi * geo.MOON_RADIUS_KM / 180.0
    step_deg = cfg.step_km / km_per_deg
    n_frames = int(np.floor((span - cfg.along_km / km_per_deg) / step_deg)) + 1
    lons = west + (east - west) * (np.arange(cfg.n_tracks) + rng.uniform(0.2, 0.8, cfg.n_tracks)) / cfg.n_tracks
    order = rng.permutation(cfg.n_tracks)             # tracks are not flown west to east
    t0 = datetime.fromisoformat(cfg.start_utc).replace(tzinfo=timezone.utc)
    rows = []
    for t_index, k in enumerate(order):
        ascending = t_index % 2 == 0
        tilt = rng.uniform(-0.02, 0.02)                  # deg of longitude per deg of latitude
        klass = cfg.flare_classes[t_index % len(cfg.flare_classes)]
        for f in range(n_frames):
            s = f if ascending else n_frames - 1 - f     # frame index along the flight direction
            clat = lat0 + 0.5 * cfg.along_km / km_per_deg + s * step_deg
            clon = lons[k] + tilt * (clat - lat0)
            rows.append((t_index, f, klass, clat, clon, ascending,
                         t0 + timedelta(seconds=t_index * cfg.orbit_gap_s + f * FRAME_S)))
    keep = rng.uniform(size=len(rows)) >= cfg.dropout
    cols = list(zip(*[r for r, k in zip(rows, keep) if k]))
    out = dict(track=np.array(cols[0]), frame=np.array(cols[1]), flare=np.array(cols[2]),
               lat=np.array(cols[3]), lon=np.array(cols[4]), ascending=np.array(cols[5]),
               start=list(cols[6]))
    return out


def frame_corners(lat, lon, ascending, across_km, along_km):
    """Corner latitudes/longitudes (n, 4) in the order of the CLASS files: V0 and V3 lead the
    frame along the flight direction, V1 and V2 trail it (V0/V1 on one side of the track)."""
    km_per_deg = np.pi * geo.MOON_RADIUS_KM / 180.0
    dlat = 0.5 * along_km / km_per_deg
    dlon = 0.5 * across_km / (km_per_deg * np.cos(np.radians(lat)))
    sign = np.where(ascending, 1.0, -1.0)
    lead, trail = lat + sign * dlat, lat - sign * dlat
    clat = np.stack([lead, trail, trail, lead], axis=1)
    clon = np.stack([lon - dlon, lon - dlon, lon + dlon, lon + dlon], axis=1)
    return clat, clon


def footprint_means(wt, lat_c, lon_c, clat, clon):
    """Mean truth composition (n, 8) of the pixels (centres ``lat_c`` x ``lon_c``) whose centres
    fall inside each footprint."""
    out = np.empty((clat.shape[0], wt.shape[0]))
    for n in range(clat.shape[0]):
        rsel = (lat_c >= clat[n].min()) & (lat_c <= clat[n].max())
        csel = (lon_c >= clon[n].min()) & (lon_c <= clon[n].max())
        if not rsel.any() or not csel.any():
            r = np.argmin(np.abs(lat_c - clat[n].mean()))
            c = np.argmin(np.abs(lon_c - clon[n].mean()))
            out[n] = wt[:, r, c]
        else:
            out[n] = wt[:, rsel][:, :, csel].reshape(wt.shape[0], -1).mean(axis=1)
    return out


def solar_angles(lat, lon, subsolar_lat, subsolar_lon):
    """Solar incidence angle (deg from the surface normal) at lat/lon for a subsolar point."""
    p1, p2 = np.radians(lat), np.radians(subsolar_lat)
    dl = np.radians(lon - subsolar_lon)
    c = np.sin(p1) * np.sin(p2) + np.cos(p1) * np.cos(p2) * np.cos(dl)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


# --------------------------------------------------------------------------- instrument
def class_like_response(n_channels=CLASS_CHANNELS, gain_kev=CLASS_GAIN_KEV):
    """A CLASS-like response: (RMF, ARF) on a 0.01 keV-wide energy grid from 0.5 to 15 keV.

    Redistribution: a Gaussian of FWHM(E) = sqrt(FWHM_0^2 + (2.355)^2 F w E) with the Fano factor
    F = 0.115 and w = 3.65 eV of silicon, and FWHM_0 = 0.115 keV of electronic noise, giving about
    160 eV at 5.9 keV (CLASS swept-charge devices: 145-170 eV at 5.9 keV early in the mission,
    Pillai et al. 2021, Icarus 363, 114436). Effective area: a geometric area of 53.6 cm^2 (16 SCDs)
    behind 0.40 um of Al, 1.74 um of polyimide and a 0.80 um Si dead layer, absorbed in 38.5 um of
    depleted silicon, with xraylib attenuation coefficients: the layer thicknesses are a fit to the
    shape of the CLASS ARF (``class_arf_v1.arf``, within 15 % from 0.8 to 10 keV, its Al and Si edges
    included), so a user without the real response still gets realistic count rates.
    """
    import xraylib

    from .ogip import ARF, RMF

    energ_lo = np.round(np.arange(0.5, 15.0, 0.01), 6)
    energ_hi = energ_lo + 0.01
    emid = 0.5 * (energ_lo + energ_hi)
    chan = np.arange(n_channels)
    e_min, e_max = chan * gain_kev, (chan + 1) * gain_kev
    fwhm = np.sqrt(0.115 ** 2 + 2.355 ** 2 * 0.115 * 3.65e-3 * emid)
    sig = fwhm / 2.355
    from scipy.special import erf
    upper = erf((e_max[None, :] - emid[:, None]) / (np.sqrt(2) * sig[:, None]))
    lower = erf((e_min[None, :] - emid[:, None]) / (np.sqrt(2) * sig[:, None]))
    matrix = 0.5 * (upper - lower)
    matrix[matrix < 1e-7] = 0.0
    mu_al = np.array([xraylib.CS_Total(13, float(e)) for e in emid])
    mu_si = np.array([xraylib.CS_Total(14, float(e)) for e in emid])
    mu_pi = np.array([xraylib.CS_Total_CP("C22H10N2O5", float(e)) for e in emid])
    trans = np.exp(-mu_al * 2.699 * 0.40e-4 - mu_pi * 1.42 * 1.74e-4 - mu_si * 2.33 * 0.80e-4)
    absorb = 1.0 - np.exp(-mu_si * 2.33 * 38.5e-4)
    area = 53.6 * trans * absorb
    rmf = RMF(energ_lo=energ_lo, energ_hi=energ_hi, e_min=e_min, e_max=e_max, matrix=matrix,
              first_channel=0, header={"TELESCOP": "CHANDRAYAAN-2", "INSTRUME": "CLASS"})
    arf = ARF(energ_lo=energ_lo, energ_hi=energ_hi, specresp=area,
              header={"TELESCOP": "CHANDRAYAAN-2", "INSTRUME": "CLASS"})
    return rmf, arf


def background_rate(n_channels=CLASS_CHANNELS, gain_kev=CLASS_GAIN_KEV):
    """Instrument background of the CLASS detectors, counts/s/channel (all 16 SCDs, 13.5 eV channels).

    A smooth curve through the long-term CLASS background of 2019-09 to 2020-05 (441,000 s,
    ``background_allevents.fits``): about 0.10 counts/s/channel at 0.9 keV falling to 0.045 at
    4 keV and flat near 0.04 above, i.e. about 15 counts/s in 0.9 to 4.2 keV; a ramp below 0.5 keV
    where the low-level threshold cuts in.
    """
    e = (np.arange(n_channels) + 0.5) * gain_kev
    rate = 0.038 + 0.075 * np.exp(-(e - 0.75) / 1.3)
    rate *= np.clip((e - 0.25) / 0.25, 0.0, 1.0)
    return rate * (gain_kev / CLASS_GAIN_KEV)


def xsm_like_arf():
    """An XSM-like ARF (``ogip.ARF``) on the 0.01 keV grid of the XSM ARFs (0.1 to 30.1 keV).

    A geometric area of 0.00268 cm^2 behind 12.8 um of Be, absorbed in 552 um of silicon, with
    xraylib attenuation: the thicknesses are a fit to the shape of XSMDAS's ARF for 2021-08-27
    (within 10 % from 1 to 15 keV); the XSM SDD has a 250 um-aperture-limited area of about
    0.3 mm^2 (Vadawale et al. 2014, Adv. Space Res. 54, 2021; Mithun et al. 2020, Sol. Phys. 295, 139).
    """
    import xraylib

    from .ogip import ARF

    lo = np.round(np.arange(0.1, 30.1, 0.01), 6)
    hi = lo + 0.01
    e = 0.5 * (lo + hi)
    mu_be = np.array([xraylib.CS_Total(4, float(x)) for x in e])
    mu_si = np.array([xraylib.CS_Total(14, float(x)) for x in e])
    area = 0.00268 * np.exp(-mu_be * 1.848 * 12.8e-4) * (1.0 - np.exp(-mu_si * 2.33 * 552e-4))
    return ARF(energ_lo=lo, energ_hi=hi, specresp=area,
               header={"TELESCOP": "CH-2_ORBITER", "INSTRUME": "CH2_XSM"})


XSM_MJDREF = 57754.0   # MJD of 2017-01-01T00:00:00 UTC, the XSM mission reference time


def _met(dt):
    ref = datetime(2017, 1, 1, tzinfo=timezone.utc)
    return (dt - ref).total_seconds()


def write_xsm_spectrum(path, counts, start, stop, arf_name):
    """Write one XSM type I spectrum (512 PI channels) with the keys of XSMDAS's ``xsmgenspec``."""
    from astropy.io import fits

    n = counts.size
    cols = [fits.Column(name="CHANNEL", format="J", array=np.arange(n, dtype=np.int32)),
            fits.Column(name="COUNTS", format="D", array=np.asarray(counts, float), unit="count"),
            fits.Column(name="STAT_ERR", format="D", array=np.sqrt(np.maximum(counts, 1.0))),
            fits.Column(name="SYS_ERR", format="D", array=np.zeros(n))]
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    h = hdu.header
    for k, v in (("HDUCLASS", "OGIP"), ("HDUCLAS1", "SPECTRUM"), ("HDUCLAS2", "TOTAL"), ("HDUCLAS3", "COUNT"),
                 ("TELESCOP", "CH-2_ORBITER"), ("INSTRUME", "CH2_XSM"), ("TLMIN1", 0), ("TLMAX1", n - 1),
                 ("DETCHANS", n), ("CHANTYPE", "PI"), ("POISSERR", False), ("EXPOSURE", (stop - start).total_seconds()),
                 ("TSTART", _met(start)), ("TSTOP", _met(stop)), ("TIMESYS", "UTC"), ("MJDREF", XSM_MJDREF),
                 ("DATE-OBS", start.strftime("%Y-%m-%d %H:%M:%S")), ("DATE-END", stop.strftime("%Y-%m-%d %H:%M:%S")),
                 ("ANCRFILE", arf_name), ("RESPFILE", "NONE"), ("BACKFILE", "NONE"),
                 ("CREATOR", "classxrf simulate")):
        h[k] = v
    with geo.atomic_output(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)


# --------------------------------------------------------------------------- writing
def _utc(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


def _fname(start, end):
    fmt = lambda d: d.strftime("%Y%m%dT%H%M%S") + f"{d.microsecond // 1000:03d}"  # noqa: E731
    return f"ch2_cla_l1_{fmt(start)}_{fmt(end)}.fits"


def class_header(start, lat, lon, clat, clon, solar_ang, emis_ang, sat_alt):
    end = start + timedelta(seconds=FRAME_S)
    mid = start + timedelta(seconds=FRAME_S / 2)
    h = {"TELESCOP": "CHANDRAYAAN-2", "INSTRUME": "CLASS", "FILTER": "none", "HDUCLAS2": "TOTAL",
         "PROGRAM": "classxrf simulate", "STARTIME": _utc(start), "ENDTIME": _utc(end),
         "MID_UTC": _utc(mid), "GAIN": CLASS_GAIN_KEV * 1000.0, "SAT_ALT": float(sat_alt),
         "SAT_LAT": float(lat), "SAT_LON": float(lon), "BORE_LAT": float(lat), "BORE_LON": float(lon),
         "SOLARANG": float(solar_ang), "PHASEANG": float(solar_ang), "EMISNANG": float(emis_ang),
         "DETCHANS": CLASS_CHANNELS, "CHANTYPE": "PHA", "POISSERR": True}
    for v in range(4):
        h[f"V{v}_LAT"] = float(clat[v])
        h[f"V{v}_LON"] = float(geo.wrap_lon(clon[v]))
    return h


def write_xsm_tracks(folder, tracks, solar_flux, energy, rng):
    """One XSM type I spectrum per track, spanning the track's frames, drawn with Poisson noise from
    the track's solar spectrum through an XSM-like ARF and the approximate XSM response of
    :func:`xsm.approximate_rmf` (PI = 0.5 keV + channel / 30). Returns the folder."""
    from . import ogip, xsm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arf = xsm_like_arf()
    arf_path = folder / "xsm_sim.arf"
    ogip.write_arf(arf_path, arf, telescop="CH-2_ORBITER", instrume="CH2_XSM")
    rmf = xsm.approximate_rmf(arf.energ_lo, arf.energ_hi)
    for t in np.unique(tracks["track"]):
        sel = np.flatnonzero(tracks["track"] == t)
        start = min(tracks["start"][i] for i in sel)
        stop = max(tracks["start"][i] for i in sel) + timedelta(seconds=FRAME_S)
        klass = tracks["flare"][sel[0]]
        flux = np.interp(arf.energy_mid, energy + 0.005, solar_flux[klass], left=0.0, right=0.0)
        rate = rmf.fold(flux * 0.01 * arf.specresp)
        counts = rng.poisson(rate * (stop - start).total_seconds()).astype(float)
        name = f"ch2_xsm_{start.strftime('%Y%m%dT%H%M%S')}_sim.pha"
        write_xsm_spectrum(folder / name, counts, start, stop, arf_path.name)
    return folder


def simulate(out_dir, config=None, progress=None):
    """Write the synthetic data set into ``out_dir``; returns a :class:`SimulationResult`.

    Layout: ``albedo.tif``, ``truth_abundance.tif``, ``class_l1/YYYYMMDD/*.fits`` (8-s frames),
    ``xsm/*.pha`` (one XSM spectrum per track, with ``xsm_sim.arf``),
    ``response/class_sim.rmf|arf`` (or copies of the given real response), ``background.pha``,
    ``solar/solar_<class>.txt``, ``frames.csv`` (per frame: file, centre, angles, flare class and
    the truth composition of its footprint) and ``simulation.json`` (the settings).
    """
    from . import fpmodel, ogip, solar_table

    cfg = config or SimulationConfig()
    p = as_progress(progress)
    rng = np.random.default_rng(cfg.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for k in cfg.flare_classes:
        if k not in FLARE_PLASMA:
            raise ClassXRFError(None, f"unknown flare class {k!r} (use A, B, C, M or X)", key="flare_classes")

    p.set(0.0, "albedo and truth abundance")
    (west, south, east, north), lat_axis, lon_axis = extent(cfg)
    albedo, mare, wt = make_surface(rng, (lat_axis.size, lon_axis.size))
    geo.write_geotiff(out / "albedo.tif", albedo[None], west, north, geo.PIXEL_DLON, geo.PIXEL_DLAT,
                      band_names=["albedo"], overviews=True)
    geo.write_geotiff(out / "truth_abundance.tif", wt, west, north, geo.PIXEL_DLON, geo.PIXEL_DLAT,
                      band_names=list(composition.ELEMENTS))
    geo.write_geotiff(out / "truth_mare_fraction.tif", mare[None], west, north, geo.PIXEL_DLON,
                      geo.PIXEL_DLAT, band_names=["mare_fraction"])
    p.check()

    p.set(0.05, "response and background")
    rdir = out / "response"
    rdir.mkdir(exist_ok=True)
    if cfg.rmf and cfg.arf:
        rmf, arf = ogip.read_rmf(cfg.rmf), ogip.read_arf(cfg.arf)
    else:
        rmf, arf = class_like_response()
    rmf_path, arf_path = rdir / "class_sim.rmf", rdir / "class_sim.arf"
    ogip.write_rmf(rmf_path, rmf)
    ogip.write_arf(arf_path, arf)
    bkg_rate = background_rate(rmf.n_channels, CLASS_GAIN_KEV)
    bkg_counts = rng.poisson(bkg_rate * cfg.background_exposure_s).astype(float)
    bkg_path = out / "background.pha"
    ogip.write_pha(bkg_path, ogip.PHA(counts=bkg_counts, channel=rmf.channel, exposure=cfg.background_exposure_s,
                                      header={"TELESCOP": "CHANDRAYAAN-2", "INSTRUME": "CLASS",
                                              "HDUCLAS2": "BKG", "PROGRAM": "classxrf simulate",
                                              "DETCHANS": rmf.n_channels}))

    p.set(0.1, "solar spectra")
    from . import solar
    sdir = out / "solar"
    sdir.mkdir(exist_ok=True)
    energy = np.round(np.arange(0.1, 30.1, 0.01), 6)
    solar_tables, solar_flux = {}, {}
    for k in dict.fromkeys(cfg.flare_classes):
        t_mk, em = FLARE_PLASMA[k]
        flux = em * solar.thermal_continuum(energy + 0.005, t_mk * 1e6)
        path = sdir / f"solar_{k}.txt"
        solar_table.write_solar_table(path, energy, flux)
        solar_tables[k], solar_flux[k] = path, flux

    p.set(0.15, "orbit tracks")
    tr = make_tracks(cfg, rng)
    n = tr["lat"].size
    clat, clon = frame_corners(tr["lat"], tr["lon"], tr["ascending"], cfg.across_km, cfg.along_km)
    truth = footprint_means(wt, lat_axis, lon_axis, clat, clon)
    c0 = 0.5 * (west + east)
    inc = solar_angles(tr["lat"], tr["lon"], cfg.subsolar_lat, c0 + cfg.subsolar_lon_offset)
    emis = np.abs(rng.normal(0.0, 0.5, n))
    p.check()

    p.set(0.2, "CLASS spectra")
    model = {}
    counts = np.empty((n, rmf.n_channels))
    for k in dict.fromkeys(cfg.flare_classes):
        sel = np.flatnonzero(tr["flare"] == k)
        if sel.size == 0:
            continue
        model[k] = fpmodel.ForwardModel(rmf, arf, energy, solar_flux[k])
        for b0 in range(0, sel.size, 256):
            idx = sel[b0:b0 + 256]
            counts[idx] = model[k].counts(truth[idx] / 100.0, inc[idx], emis[idx], FRAME_S)
            p.check()
    counts += bkg_rate[None, :] * FRAME_S
    observed = rng.poisson(np.clip(counts, 0, None)).astype(float)

    fdir = out / "class_l1"
    sub = subrange(p, 0.4, 0.95)
    rows = []
    for i in range(n):
        start = tr["start"][i]
        day = fdir / start.strftime("%Y%m%d")
        day.mkdir(parents=True, exist_ok=True)
        path = day / _fname(start, start + timedelta(seconds=FRAME_S))
        hdr = class_header(start, tr["lat"][i], geo.wrap_lon(tr["lon"][i]), clat[i], clon[i], inc[i], emis[i],
                           cfg.sat_alt_km)
        ogip.write_pha(path, ogip.PHA(counts=observed[i], channel=rmf.channel, exposure=FRAME_S, header=hdr))
        rows.append([str(path.relative_to(out)), int(tr["track"][i]), int(tr["frame"][i]), tr["flare"][i],
                     _utc(start), float(tr["lat"][i]), float(geo.wrap_lon(tr["lon"][i])), float(inc[i]),
                     float(emis[i])] + [float(x) for x in truth[i]])
        if i % 50 == 0:
            sub.set(i / n, f"frame {i + 1}/{n}")
            sub.check()
    frames_csv = out / "frames.csv"
    with geo.atomic_output(frames_csv) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "track", "frame", "flare", "start_utc", "lat", "lon", "solar_ang", "emis_ang"]
                       + [f"true_{e}" for e in composition.ELEMENTS])
            w.writerows(rows)
    p.set(0.96, "XSM spectra")
    xsm_dir = write_xsm_tracks(out / "xsm", tr, solar_flux, energy, rng)
    with geo.atomic_output(out / "simulation.json") as tmp:
        tmp.write_text(json.dumps(cfg.to_json(), indent=1))
    p.set(1.0, f"{n} frames written")
    return SimulationResult(folder=out, albedo=out / "albedo.tif", truth=out / "truth_abundance.tif",
                            frames_folder=fdir, rmf=rmf_path, arf=arf_path, background=bkg_path,
                            solar_tables=solar_tables, frames_csv=frames_csv, n_frames=n, config=cfg,
                            xsm_folder=xsm_dir)
