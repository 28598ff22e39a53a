"""The observation layer: the thread between the stages, its columns in one place, its reader and writer.

One polygon per co-added spectrum (its footprint, in the plugin's lunar CRS), written by the co-add
and extended by each later stage with the columns of :data:`COLUMNS`:

========  ============================================================================================
stage     columns it adds
========  ============================================================================================
coadd     obs_id, pha_path, t_start, t_end, t_mid, exposure, n_frames, counts, solar_ang, emis_ang,
          phase_ang, sat_alt, bore_lat, bore_lon, chi2_red
solarfit  solar_file, sol_T_MK, sol_EM, flare_cls, goes_flux, sol_stat
invert    X, X_err, X_ok for the 8 elements, X_prior for the fitted cations, chi2, dof, cstat, red_stat,
          converged, n_iter, scat_norm, fl_norm, gain_slope, gain_off, gslope_err, goff_err, fit_flag,
          fit_note
========  ============================================================================================

:func:`read` reads a layer for a stage and checks that the columns the stage needs (:data:`NEEDS`)
are there, naming the layer, the column and the stage that writes it; :func:`write` writes it
(schema columns first, in schema order, each cast to its type; columns the schema does not know,
e.g. a user's own, follow unchanged). :func:`add` puts a stage's new columns into the attributes,
refusing a column that is not the stage's.

The schema itself imports nothing heavy (the QGIS glue lists the columns in the algorithms' help).
"""
from collections import namedtuple

from .choices import ELEMENTS, FITTED_CATIONS
from .errors import ClassXRFError

Column = namedtuple("Column", "name type stage unit description")

def _element_columns():
    cols = []
    for el in ELEMENTS:
        cols += [Column(el, "float", "invert", "wt%", f"{el} weight percentage (NULL where not constrained)"),
                 Column(f"{el}_err", "float", "invert", "wt%", f"1-sigma error of {el}"),
                 Column(f"{el}_ok", "int", "invert", "", f"1 where the spectrum constrains {el}")]
    cols += [Column(f"{el}_prior", "float", "invert", "wt%", f"prior-dominated value of an unconstrained {el}")
             for el in FITTED_CATIONS]
    return cols


COLUMNS = tuple([
    Column("obs_id", "int", "coadd", "", "number of the co-added spectrum"),
    Column("pha_path", "str", "coadd", "", "its OGIP PHA file (relative paths: from the layer's folder)"),
    Column("t_start", "str", "coadd", "UTC", "start of the first frame (ISO)"),
    Column("t_end", "str", "coadd", "UTC", "end of the last frame (ISO)"),
    Column("t_mid", "str", "coadd", "UTC", "middle of the window (ISO)"),
    Column("exposure", "float", "coadd", "s", "exposure: 8 s times the frames summed"),
    Column("n_frames", "int", "coadd", "", "frames summed"),
    Column("counts", "int", "coadd", "", "total counts"),
    Column("solar_ang", "float", "coadd", "deg", "mean solar incidence angle (SOLARANG)"),
    Column("emis_ang", "float", "coadd", "deg", "mean emission angle (EMISNANG)"),
    Column("phase_ang", "float", "coadd", "deg", "mean phase angle (PHASEANG)"),
    Column("sat_alt", "float", "coadd", "km", "mean spacecraft altitude"),
    Column("bore_lat", "float", "coadd", "deg", "boresight latitude (mean direction)"),
    Column("bore_lon", "float", "coadd", "deg", "boresight longitude (mean direction)"),
    Column("chi2_red", "float", "coadd", "", "reduced chi-square of the running check's line fit"),
    Column("solar_file", "str", "solarfit", "", "the I0 table of the solar spectrum (modelop format)"),
    Column("sol_T_MK", "float", "solarfit", "MK", "fitted coronal temperature"),
    Column("sol_EM", "float", "solarfit", "cm^-3", "fitted emission measure"),
    Column("flare_cls", "str", "solarfit", "", "GOES class of the fitted spectrum"),
    Column("goes_flux", "float", "solarfit", "W m^-2", "GOES 1-8 A flux of the fitted spectrum"),
    Column("sol_stat", "float", "solarfit", "", "C-stat per degree of freedom of the solar fit"),
] + _element_columns() + [
    Column("chi2", "float", "invert", "", "XSPEC's chi (data variance) at the best fit"),
    Column("dof", "int", "invert", "", "degrees of freedom"),
    Column("cstat", "float", "invert", "", "Cash statistic at the best fit"),
    Column("red_stat", "float", "invert", "", "minimised statistic per degree of freedom (poor-fit test)"),
    Column("converged", "int", "invert", "", "1 where the fit converged"),
    Column("n_iter", "int", "invert", "", "Levenberg-Marquardt iterations"),
    Column("scat_norm", "float", "invert", "", "scatter normalisation"),
    Column("fl_norm", "float", "invert", "", "fluorescence normalisation"),
    Column("gain_slope", "float", "invert", "", "gain slope (fitted or given)"),
    Column("gain_off", "float", "invert", "keV", "gain offset (fitted or given)"),
    Column("gslope_err", "float", "invert", "", "1-sigma error of a fitted gain slope"),
    Column("goff_err", "float", "invert", "keV", "1-sigma error of a fitted gain offset"),
    Column("fit_flag", "int", "invert", "", "0 ok, else why the fit is not trusted (invert.FIT_FLAGS)"),
    Column("fit_note", "str", "invert", "", "the reason, in words"),
])
_BY_NAME = {c.name: c for c in COLUMNS}
STAGES = ("coadd", "solarfit", "invert")

#: the columns each stage reads (the others it uses when present: obs_id, solar_file, phase_ang)
NEEDS = {
    "solarfit": ("t_start", "t_end"),
    "invert": ("pha_path", "solar_ang", "emis_ang", "exposure"),
    "populate": tuple(c for el in ELEMENTS for c in (el, f"{el}_err", f"{el}_ok")),
}


def columns(stage):
    """Names of the columns ``stage`` adds, in schema order."""
    if stage not in STAGES:
        raise ValueError(f"no stage {stage!r} adds observation-layer columns (stages: {', '.join(STAGES)})")
    return [c.name for c in COLUMNS if c.stage == stage]


def require(path, attrs, names, stage=None):
    """Raise a clear error naming the layer, the first missing column and the stage that writes it."""
    for name in names:
        if name not in attrs:
            by = _BY_NAME.get(name)
            origin = f" (written by the {by.stage} stage)" if by is not None else ""
            need = f" that {stage} needs" if stage else ""
            raise ClassXRFError(path, f"column{need} missing from the observation layer{origin}; it has: "
                                      f"{', '.join(sorted(attrs)) or 'none'}", key=name)


def _typed(path, name, values):
    import numpy as np
    col = _BY_NAME.get(name)
    arr = np.asarray(values)
    if col is None:
        return arr
    if col.type == "str":
        return np.array(["" if v is None else str(v) for v in arr.tolist()], dtype=object) if arr.size else \
            np.zeros(0, dtype=object)
    try:
        f = np.asarray(arr, dtype=np.float64) if arr.dtype != object else np.array(
            [np.nan if v is None else float(v) for v in arr.tolist()], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ClassXRFError(path, f"column is not numeric ({col.description})", key=name) from exc
    if col.type == "int":
        if np.any(np.isfinite(f) & (f != np.round(f))):
            raise ClassXRFError(path, "column is not a whole number", key=name)
        return f if np.any(~np.isfinite(f)) else f.astype(np.int64)
    return f


def read(path, stage=None):
    """``(geometries, attrs)`` of an observation layer; with ``stage`` the columns it needs
    (:data:`NEEDS`) must be there. Schema columns come back with their types (numbers as float64 or
    int64, NULL numbers as NaN, text as str)."""
    from . import geo
    geoms, attrs, _ = geo.read_vector(path)
    if stage is not None:
        require(path, attrs, NEEDS.get(stage, ()), stage)
    return geoms, {name: _typed(path, name, v) for name, v in attrs.items()}


def write(path, geoms, attrs):
    """Write the observation layer atomically (:func:`geo.write_vector`): schema columns first in
    schema order, cast to their types; other columns after them, as given."""
    from . import geo
    known = [c.name for c in COLUMNS if c.name in attrs]
    other = [k for k in attrs if k not in _BY_NAME]
    ordered = {k: _typed(path, k, attrs[k]) for k in known}
    ordered.update({k: attrs[k] for k in other})
    return geo.write_vector(path, geoms, ordered)


def add(attrs, stage, new):
    """``attrs`` with the columns ``new`` of ``stage`` added (replacing earlier values of them);
    a column that is not the stage's is a programming error (ValueError)."""
    own = set(columns(stage))
    stray = [k for k in new if k not in own]
    if stray:
        raise ValueError(f"{stray[0]!r} is not a column of the {stage} stage (obslayer.COLUMNS)")
    out = dict(attrs)
    out.update(new)
    return out
