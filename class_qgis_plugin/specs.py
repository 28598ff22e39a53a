"""Stage specs: every parameter of every stage, with its default, its check and its help, once.

One dataclass per stage (:class:`SimulateParams`, :class:`CoaddParams`, :class:`SolarFitParams`,
:class:`InvertParams`, :class:`PopulateParams`, :class:`SuperResParams`, :class:`BasemapParams`,
:class:`ArchiveParams`).
Each field carries, in its metadata (:func:`param`), the label and help the QGIS algorithm and the
command line show, the parameter key of the Processing algorithm (``key``), its kind (what sort of
QGIS parameter and command-line argument it is), its choices and bounds. The stages
(:mod:`tasks`) take a spec; the QGIS algorithms build their parameters from it and turn the values
a user gave back into it (``to_spec``); the command line (:mod:`cli`) is generated from it; the
worker process receives it as a plain dict (:meth:`Spec.to_dict` / :meth:`Spec.from_dict`).

Imports nothing heavier than the standard library: the QGIS glue reads the specs when the plugin
loads, where the science packages may be missing.
"""
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields

from .choices import (DEFAULT_REGION, ELEMENTS, GAIN_FIT_MODES, MOSAIC_HALO_PX, N_REGION_COLS, N_REGION_ROWS,
                      OXYGEN_MODES, STATISTICS)
from .errors import ClassXRFError

#: kinds of parameter: inputs (``layer``: a vector layer's file; ``file``, ``folder``, ``files``:
#: a list of files), values (``float``, ``int``, ``bool``, ``enum``, ``string``, ``json``, ``extent``:
#: west, south, east, north in lunar degrees) and outputs (``vector_out``, ``raster_out``,
#: ``folder_out``, ``file_out``)
KINDS = ("layer", "file", "folder", "files", "float", "int", "bool", "enum", "string", "json", "extent",
         "vector_out", "raster_out", "folder_out", "file_out")
PATH_KINDS = ("layer", "file", "folder", "vector_out", "raster_out", "folder_out", "file_out")


def param(default=None, label="", help="", *, key, kind, choices=None, minimum=None, maximum=None,
          required=False, positional=False, advanced=False, multiple=False, extension=None, geometry="polygon",
          qgis=True):
    """A spec field: ``default`` and the metadata the glue and the command line build from.

    ``key``: the Processing parameter name (``processing.run("classxrf:...", {key: value})``);
    ``positional``: a positional argument of the command line (else ``--field-name``);
    ``required``: the stage cannot run without it; ``multiple``: an enum of several values (a tuple);
    ``extension``: the file type of a file input or output; ``geometry``: ``"polygon"`` or
    ``"point"``, of a layer; ``qgis=False``: not a parameter of the algorithm (the command line and
    scripts only)."""
    if kind not in KINDS:
        raise ValueError(f"unknown parameter kind {kind!r}")
    meta = dict(label=label, help=help, key=key, kind=kind, choices=None if choices is None else tuple(choices),
                minimum=minimum, maximum=maximum, required=required, positional=positional, advanced=advanced,
                multiple=multiple, extension=extension, geometry=geometry, qgis=qgis)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def default_of_field(f):
    """The default of a spec field."""
    return f.default_factory() if f.default is MISSING else f.default


def default_of(spec_cls, name):
    """The default of field ``name`` of a spec class (or any dataclass)."""
    return default_of_field(spec_cls.__dataclass_fields__[name])


def _as_float(spec, name, v):
    try:
        return float(v)
    except (TypeError, ValueError):
        raise spec.error(name, f"must be a number, got {v!r}") from None


def _as_int(spec, name, v):
    f = _as_float(spec, name, v)
    if not math.isfinite(f) or f != int(f):
        raise spec.error(name, f"must be a whole number, got {v!r}")
    return int(f)


def _as_bool(spec, name, v):
    if isinstance(v, str):
        t = v.strip().lower()
        if t in ("1", "true", "yes", "on"):
            return True
        if t in ("0", "false", "no", "off", ""):
            return False
        raise spec.error(name, f"must be true or false, got {v!r}")
    return bool(v)


class Spec:
    """Base of the stage specs: conversion, generic checks, dict round trip."""

    #: the stage (the task of :mod:`tasks` and the worker request's ``task``)
    STAGE = ""

    @classmethod
    def params(cls):
        """The fields with their metadata, in declaration order."""
        return fields(cls)

    @classmethod
    def error(cls, name, problem):
        """The error of a bad value of field ``name``: names the field and its Processing key."""
        return ClassXRFError(None, problem, key=f"{name} ({cls.key(name)})")

    @classmethod
    def key(cls, name):
        """The Processing parameter key of field ``name``."""
        return cls.__dataclass_fields__[name].metadata["key"]

    def outputs(self):
        """``{Processing key: path}`` of the outputs given (the algorithm's results)."""
        return {f.metadata["key"]: getattr(self, f.name) for f in fields(self)
                if f.metadata["kind"].endswith("_out") and getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, values):
        """A checked spec from a dict of field names (unknown names are refused, naming them)."""
        if isinstance(values, cls):
            return values
        names = {f.name for f in fields(cls)}
        unknown = [k for k in values if k not in names]
        if unknown:
            raise ClassXRFError(None, f"unknown parameter of {cls.STAGE} (known: {', '.join(sorted(names))})",
                                key=unknown[0])
        spec = cls(**values)
        spec.check()
        return spec

    def to_dict(self):
        """Plain JSON-serialisable dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    def _convert(self):
        for f in fields(self):
            m, v = f.metadata, getattr(self, f.name)
            kind = m["kind"]
            if kind in PATH_KINDS or kind == "string":
                v = None if v is None or str(v).strip() in ("", "None") else str(v)
            elif v is None or (isinstance(v, str) and not v.strip() and kind != "enum"):
                v = None
            elif kind == "float":
                v = _as_float(self, f.name, v)
            elif kind == "int":
                v = _as_int(self, f.name, v)
            elif kind == "bool":
                v = _as_bool(self, f.name, v)
            elif kind == "enum" and m["multiple"]:
                v = tuple(str(x).strip() for x in (v.split(",") if isinstance(v, str) else v) if str(x).strip())
            elif kind == "enum":
                v = str(v)
            elif kind == "files":
                v = [str(x) for x in ([v] if isinstance(v, str) else v) if str(x).strip()] or None
            elif kind == "extent":
                v = tuple(_as_float(self, f.name, x) for x in v)
                if len(v) != 4:
                    raise self.error(f.name, "an extent is four numbers: west, south, east, north")
            elif kind == "json":
                if isinstance(v, str):
                    try:
                        v = json.loads(v) if v.strip() else {}
                    except ValueError as exc:
                        raise self.error(f.name, f"is not valid JSON: {exc}") from None
                if not isinstance(v, dict):
                    raise self.error(f.name, "must be a JSON object of names and values")
            object.__setattr__(self, f.name, v)

    def check(self):
        """Convert the values to their kinds and check them (choices, bounds, required values);
        then :meth:`check_stage`. A bad value raises :class:`ClassXRFError` naming the parameter."""
        self._convert()
        for f in fields(self):
            m, v = f.metadata, getattr(self, f.name)
            if v is None:
                if m["required"]:
                    raise self.error(f.name, f"{m['label'] or f.name} is required")
                continue
            if m["choices"] is not None:
                bad = [x for x in (v if m["multiple"] else (v,)) if x not in m["choices"]]
                if bad:
                    raise self.error(f.name, f"must be one of {', '.join(m['choices'])}, got {bad[0]!r}")
            if m["kind"] in ("float", "int"):
                if not math.isfinite(v):
                    raise self.error(f.name, f"must be finite, got {v!r}")
                if m["minimum"] is not None and v < m["minimum"]:
                    raise self.error(f.name, f"must be at least {m['minimum']:g}, got {v:g}")
                if m["maximum"] is not None and v > m["maximum"]:
                    raise self.error(f.name, f"must be at most {m['maximum']:g}, got {v:g}")
        self.check_stage()
        return self

    def check_stage(self):
        """Checks that involve several parameters (overridden by the stages that have them)."""


def _region_fields(label_i, label_j):
    return (param(DEFAULT_REGION[0], label_i, "Row of the 8 x 8 partition: 0 is 67.5..90 N, 7 is 90..67.5 S.",
                  key="REGION_I", kind="int", minimum=0, maximum=N_REGION_ROWS - 1),
            param(DEFAULT_REGION[1], label_j, "Column of the 8 x 8 partition: 0 is 180..135 W, 7 is 135..180 E.",
                  key="REGION_J", kind="int", minimum=0, maximum=N_REGION_COLS - 1))


_SIM_I, _SIM_J = _region_fields("Region row i (0 = 67.5..90 N)", "Region column j (0 = 180..135 W)")
_SR_I, _SR_J = _region_fields("Region row i", "Region column j")

#: GOES classes the simulation can light a track with
FLARE_CLASSES = ("A", "B", "C", "M", "X")


@dataclass
class SimulateParams(Spec):
    """classxrf:simulate: the synthetic data set with known truth (the embedded default)."""

    STAGE = "simulate"
    folder: str = param(None, "Output folder", "Folder the data set is written into (whole or not at all).",
                        key="OUTPUT_FOLDER", kind="folder_out", required=True, positional=True)
    seed: int = param(42, "Random seed", "Seed of every random draw: the same seed gives the same data set.",
                      key="SEED", kind="int")
    region_i: int = _SIM_I
    region_j: int = _SIM_J
    tracks: int = param(24, "Number of orbit tracks", "North-south tracks across the region, one flare each.",
                        key="TRACKS", kind="int", minimum=1, maximum=400)
    flare_classes: tuple = param(("C",), "Flare class",
                                 "GOES class of the flare lighting each track (several: cycled over the tracks).",
                                 key="FLARE_CLASS", kind="enum", choices=FLARE_CLASSES, multiple=True)
    rmf: str = param(None, "Real CLASS RMF (optional)", "Use this CLASS RMF instead of the simulated one "
                     "(with the ARF).", key="RMF", kind="file")
    arf: str = param(None, "Real CLASS ARF (optional)", "Use this CLASS ARF instead of the simulated one "
                     "(with the RMF).", key="ARF", kind="file")
    frame_across_km: float = param(12.5, "Frame footprint across track (km)", "Width of one 8-s frame's footprint.",
                                   key="FRAME_ACROSS_KM", kind="float", minimum=0.5, maximum=500.0, advanced=True)
    frame_along_km: float = param(12.5, "Frame footprint along track (km)", "Length of one 8-s frame's footprint.",
                                  key="FRAME_ALONG_KM", kind="float", minimum=0.5, maximum=500.0, advanced=True)
    frame_step_km: float = param(100.0 / 12.0, "Boresight advance per frame (km)", "12 frames of the default make "
                                 "a 100 + 12.5 km strip; the real CLASS co-added strips of 177 x 31 km are frames of "
                                 "31 x 31 km advancing 13.3 km.", key="FRAME_STEP_KM", kind="float", minimum=0.1,
                                 maximum=500.0, advanced=True)
    regions_across: int = param(1, "Regions across (eastwards)", "The surface, its truth and the tracks cover this "
                                "many neighbouring regions eastwards from the region (one continuous surface: a "
                                "test of the mosaic's seams).", key="REGIONS_ACROSS", kind="int", minimum=1,
                                maximum=8, advanced=True)
    track_gap_s: float = param(7080.0, "Time between tracks (s)", "One orbit (118 min) by default; longer gaps "
                               "spread the tracks over more days (a small archive of day folders).",
                               key="TRACK_GAP_S", kind="float", minimum=60.0, advanced=True)

    def _convert(self):
        super()._convert()
        self.flare_classes = tuple(c.upper() for c in self.flare_classes or ())

    def check_stage(self):
        if not self.flare_classes:
            raise self.error("flare_classes", "give at least one flare class")
        if bool(self.rmf) != bool(self.arf):
            raise self.error("arf" if self.rmf else "rmf", "a real response needs both the RMF and the ARF")
        if self.region_j + self.regions_across > N_REGION_COLS:
            raise self.error("regions_across", f"{self.regions_across} regions eastwards from column "
                             f"{self.region_j} leave the 8 x 8 partition (no wrap at 180 deg)")


#: co-add strategies (see :mod:`coadd`)
STRATEGIES = ("sliding", "running", "combined")


@dataclass
class CoaddParams(Spec):
    """classxrf:coadd: co-added PHA files and the observation layer."""

    STAGE = "coadd"
    inputs: list = param(None, "Input folder of 8-s CLASS L1 files",
                         "A folder searched recursively for CLASS L1 FITS files, or a list of files.",
                         key="INPUT", kind="files", required=True, positional=True)
    out_folder: str = param(None, "Co-added PHA folder", "Folder of the co-added OGIP PHA files.",
                            key="OUTPUT_FOLDER", kind="folder_out", required=True, positional=True)
    out_layer: str = param(None, "Observation layer", "The observation layer (GeoPackage or Shapefile by "
                           "extension): one footprint per co-added spectrum.", key="OUTPUT", kind="vector_out",
                           required=True, positional=True)
    strategy: str = param("sliding", "Strategy", "sliding: fixed windows moved by the stride; running: frames "
                          "added until the line fit's reduced chi-square lies in [0.8, 2]; combined: sliding "
                          "windows extended by the running check.", key="STRATEGY", kind="enum",
                          choices=STRATEGIES)
    window: int = param(12, "Window (frames of 8 s)", "Frames per window (12 frames = 96 s, ISRO's convention).",
                        key="WINDOW", kind="int", minimum=1)
    stride: int = param(1, "Stride (frames)", "Frames between window starts.", key="STRIDE", kind="int", minimum=1)
    min_frames: int = param(0, "Fewest frames of a run shorter than the window (0: the window; 1: every frame)",
                            "A contiguous run shorter than the window still gives one spectrum when it has at "
                            "least this many frames.", key="MIN_FRAMES", kind="int", minimum=0)
    flare_catalog: str = param(None, "XSM flare catalogue (CSV)", "Only frames inside flares of the allowed "
                               "classes are co-added (e.g. SD-CH2.csv).", key="FLARE_CATALOG", kind="file",
                               extension="csv")
    allowed_classes: tuple = param(("B", "C", "M"), "Allowed flare classes",
                                   "GOES classes kept with a flare catalogue.", key="FLARE_CLASSES", kind="enum",
                                   choices=FLARE_CLASSES, multiple=True)
    rmf: str = param(None, "CLASS RMF (RESPFILE)", "Written as RESPFILE of every co-added file.", key="RMF",
                     kind="file")
    arf: str = param(None, "CLASS ARF (ANCRFILE)", "Written as ANCRFILE of every co-added file.", key="ARF",
                     kind="file")
    background: str = param(None, "Background PHA (BACKFILE)", "Written as BACKFILE of every co-added file.",
                            key="BACKGROUND", kind="file")
    make_background: bool = param(False, "Build a night-side background (SOLARANG > 90 deg)",
                                  "Without a background file: co-add the night-side frames into "
                                  "background_night.pha and name it in every BACKFILE.", key="BUILD_BACKGROUND",
                                  kind="bool")

    def _convert(self):
        super()._convert()
        self.allowed_classes = tuple(c.upper() for c in self.allowed_classes or ())


@dataclass
class SolarFitParams(Spec):
    """classxrf:solarfit: the incident solar spectrum of every observation, from XSM data."""

    STAGE = "solarfit"
    layer: str = param(None, "Observation layer (output of co-add)", "Its t_start and t_end choose the XSM data.",
                       key="INPUT", kind="layer", required=True, positional=True)
    xsm: str = param(None, "XSM data", "A folder of XSM type I spectra, a type II level-2 file, or one type I "
                     "spectrum for all observations.", key="XSM", kind="file", required=True, positional=True)
    out_folder: str = param(None, "Solar spectra folder", "Folder of the I0 tables, fit records and plots.",
                            key="OUTPUT_FOLDER", kind="folder_out", required=True, positional=True)
    out_layer: str = param(None, "Observation layer with solar fit", "The layer with the solar columns added.",
                           key="OUTPUT", kind="vector_out", required=True, positional=True)
    xsm_arf: str = param(None, "XSM ARF (default: as named by each file)", "", key="ARF", kind="file")
    xsm_rmf: str = param(None, "XSM RMF (default: approximate response)", "", key="RMF", kind="file")
    two_temp: bool = param(False, "Two temperatures", "Fit a second thermal component.", key="TWO_TEMP",
                           kind="bool")
    plots: bool = param(False, "Write a fit plot per spectrum", "", key="PLOTS", kind="bool")


#: oxygen treatments of the inversion: by the oxide stoichiometry of the cations, or fixed at
#: the wt% X2ABUNDANCE used
FIXED_OXYGEN_WT = 45.0


@dataclass
class InvertParams(Spec):
    """classxrf:invert: the fundamental-parameters inversion of every spectrum of a layer."""

    STAGE = "invert"
    layer: str = param(None, "Observation layer", "The co-add output, with solar_file from the solar fit.",
                       key="INPUT", kind="layer", required=True, positional=True)
    out_layer: str = param(None, "Abundance layer", "The observation layer with the abundance columns added.",
                           key="OUTPUT", kind="vector_out", required=True, positional=True)
    rmf: str = param(None, "CLASS RMF", "", key="RMF", kind="file", required=True)
    arf: str = param(None, "CLASS ARF", "", key="ARF", kind="file", required=True)
    background: str = param(None, "Background PHA", "Scaled to each spectrum's exposure and BACKSCAL.",
                            key="BACKGROUND", kind="file", required=True)
    solar: str = param(None, "Solar table for rows without solar_file (modelop format)", "", key="SOLAR",
                       kind="file")
    e_min: float = param(0.9, "Lowest energy (keV)", "Lower edge of the fitted energy range.", key="E_MIN",
                         kind="float", minimum=0.1)
    e_max: float = param(4.2, "Highest energy (keV)", "Upper edge of the fitted energy range.", key="E_MAX",
                         kind="float", minimum=0.2)
    gain_slope: float = param(1.0, "Gain slope", "XSPEC gain: matrix rows move to E/slope - offset (start of "
                              "a fitted gain).", key="GAIN_SLOPE", kind="float")
    gain_offset: float = param(0.0, "Gain offset (keV)", "XSPEC gain offset (start of a fitted gain).",
                               key="GAIN_OFFSET", kind="float")
    gain_fit: str = param("none", "Gain fit (XSPEC gain fit: none, per spectrum, shared by all spectra)",
                          "none: the gain given; spectrum: fitted per spectrum; shared: one gain for all "
                          "spectra of the layer.", key="GAIN_FIT", kind="enum", choices=GAIN_FIT_MODES)
    statistic: str = param("cstat", "Statistic minimised (cstat: Poisson; chi: XSPEC's chi)",
                           "Both are written; cstat is unbiased at low counts.", key="STATISTIC", kind="enum",
                           choices=STATISTICS)
    fit_norm: bool = param(True, "Fit the fluorescence normalisation (recommended for real CLASS data)",
                           "Real CLASS spectra are about 3 times fainter than the absolute model.",
                           key="FIT_NORM", kind="bool")
    oxygen: str = param("stoichiometric", "Oxygen", f"stoichiometric: from the cations' oxides; fixed45: "
                        f"{FIXED_OXYGEN_WT:g} wt% as X2ABUNDANCE.", key="OXYGEN", kind="enum", choices=OXYGEN_MODES)
    plot_dir: str = param(None, "Fit plot folder", "When given, a fit plot per spectrum (data, model, "
                          "residuals).", key="PLOT_FOLDER", kind="folder_out")

    def check_stage(self):
        if self.e_max <= self.e_min:
            raise self.error("e_max", f"the energy range {self.e_min:g}..{self.e_max:g} keV is empty")

    @property
    def e_range(self):
        return (self.e_min, self.e_max)

    @property
    def oxygen_model(self):
        """What the inversion core takes: ``"stoichiometric"`` or a fixed wt%."""
        return FIXED_OXYGEN_WT if self.oxygen == "fixed45" else "stoichiometric"


#: priors of the population's sub-footprints (see :mod:`population`)
PRIORS = ("fraction", "binary")


@dataclass
class PopulateParams(Spec):
    """classxrf:populate: the GIB updated from an abundance layer."""

    STAGE = "populate"
    layer: str = param(None, "Abundance layer (output of FP inversion)", "", key="INPUT", kind="layer",
                       required=True, positional=True)
    albedo: str = param(None, "Albedo raster / image, or a mare polygon layer", "Splits each footprint into mare "
                        "and highland.", key="ALBEDO", kind="file", required=True, positional=True)
    gib_folder: str = param(None, "GIB folder", "Created or updated (only the regions the layer touches).",
                            key="GIB_FOLDER", kind="folder_out", required=True, positional=True)
    points_output: str = param(None, "Populated sub-footprints", "This run's sub-footprints as points.",
                               key="OUTPUT", kind="vector_out", required=True, positional=True, geometry="point")
    sub_size_km: float = param(0.0, "Sub-footprint length (km, 0 = footprint width)", "", key="SUB_SIZE_KM",
                               kind="float", minimum=0.0)
    prior: str = param("fraction", "Sub-footprint prior", "fraction: the mix of the mare and highland means by "
                       "the mare fraction; binary: the paper's, the mean of the majority unit.", key="PRIOR",
                       kind="enum", choices=PRIORS)

    def _convert(self):
        classifier = self.albedo if hasattr(self.albedo, "mare_flag") else None
        super()._convert()
        if classifier is not None:      # in Python: any object with mare_flag(lat, lon) -> 0/1
            self.albedo = classifier


def _training_default(name):
    from .superres.settings import SuperResSettings
    return default_of(SuperResSettings, name)


DEVICES = ("cpu", "cuda")


@dataclass
class SuperResParams(Spec):
    """classxrf:superresolve: the GATv2 + CNN hybrid map of one GIB region."""

    STAGE = "superresolve"
    gib: str = param(None, "GIB folder", "The GIB folder (its region raster is used) or one region raster.",
                     key="GIB", kind="folder", required=True, positional=True)
    albedo: str = param(None, "Albedo raster / image", "", key="ALBEDO", kind="file", required=True,
                        positional=True)
    output: str = param(None, "Super-resolved abundances", "GeoTIFF: 8 element bands and support_km.",
                        key="OUTPUT", kind="raster_out", required=True, positional=True)
    region_i: int = _SR_I
    region_j: int = _SR_J
    extent: tuple = param(None, "Extent (its centre picks the region; overrides i, j)",
                          "West, south, east, north in lunar degrees.", key="EXTENT", kind="extent")
    curve_output: str = param(None, "Training curve", "CSV of the training curve.", key="CURVE", kind="file_out",
                              extension="csv")
    k: int = param(_training_default("k"), "Top-k neighbours", "Similarity neighbours per node (the paper used 100; 16 trains "
                   "in minutes on a laptop CPU).",
                   key="K", kind="int", minimum=1, maximum=200)
    sweeps: int = param(_training_default("sweeps"), "Sweeps over the subgraphs", "", key="SWEEPS", kind="int",
                        minimum=1)
    steps_per_subgraph: int = param(_training_default("steps_per_subgraph"), "Optimiser steps per subgraph", "",
                                    key="STEPS", kind="int", minimum=1)
    seed: int = param(_training_default("seed"), "Seed", "", key="SEED", kind="int")
    device: str = param("cpu", "Device", "cuda where a GPU is present.", key="DEVICE", kind="enum", choices=DEVICES)
    settings: dict = param({}, "Further training settings (JSON, e.g. {\"stride\": 50, \"hidden\": 32})",
                           "Further fields of the training settings as a JSON object (subgraph stride and size, "
                           "number of features, hidden sizes, loss weights, drift, residual_kriging, kriging_points, "
                           "variogram_lags, net_validation, net_min_gain, footprint_loss, footprint_kriging); unknown "
                           "names are refused.", key="SETTINGS",
                           kind="json", advanced=True)

    def check_stage(self):
        from .superres.settings import SuperResSettings
        if self.extent is not None:
            w, s, e, n = self.extent
            if not (-90.0 <= s <= n <= 90.0) or w > e:
                raise self.error("extent", f"the extent ({w:g}, {s:g}, {e:g}, {n:g}) is not on the Moon: latitudes "
                                          f"must lie in -90..90 and west <= east")
        SuperResSettings.from_dict(self.training_settings())
        _require_geotiff(self, "output")

    @property
    def region(self):
        """(i, j): the region whose cell holds the extent's centre, else (region_i, region_j)."""
        if self.extent is None:
            return (self.region_i, self.region_j)
        from .geo import region_of
        w, s, e, n = self.extent
        i, j = region_of(0.5 * (s + n), 0.5 * (w + e))
        return (int(i), int(j))

    def training_settings(self):
        """The training settings (a dict of :class:`superres.settings.SuperResSettings` fields)."""
        return dict(self.settings, k=self.k, sweeps=self.sweeps, steps_per_subgraph=self.steps_per_subgraph,
                    seed=self.seed)


#: left edge of an equirectangular basemap image (degrees of longitude)
WEST_EDGES = ("-180", "0")


@dataclass
class BasemapParams(Spec):
    """classxrf:basemap: a lunar GeoTIFF basemap from an albedo raster or an equirectangular image."""

    STAGE = "basemap"
    source: str = param(None, "Image or albedo raster (PNG/JPG whole-Moon image, or GeoTIFF)", "", key="INPUT",
                        kind="file", required=True, positional=True)
    output: str = param(None, "Basemap", "A GeoTIFF.", key="OUTPUT", kind="raster_out", required=True,
                        positional=True)
    west: str = param("-180", "Left edge of an equirectangular image (degrees of longitude)",
                      "-180 (default) or 0; ignored for a georeferenced GeoTIFF.", key="WEST", kind="enum", choices=WEST_EDGES)

    def check_stage(self):
        _require_geotiff(self, "output")


def _require_geotiff(spec, name):
    path = getattr(spec, name)
    if path is not None and not path.lower().endswith((".tif", ".tiff")):
        raise ClassXRFError(path, "the output must be a GeoTIFF (.tif)", key=f"{name} ({spec.key(name)})")


@dataclass
class ArchiveParams(Spec):
    """classxrf:archive: the mission archive, day by day on a Dask cluster, resumable (:mod:`archive`)."""

    STAGE = "archive"
    inputs: list = param(None, "CLASS L1 days", "Folders searched for day folders (YYYYMMDD) of 8-s CLASS L1 FITS "
                         "files and dated zip files, as PRADAN ships them.", key="INPUT", kind="files", required=True,
                         positional=True)
    xsm: str = param(None, "XSM data", "A folder of XSM type I spectra (searched recursively), a type II file, or "
                     "one spectrum for all: what the solar fit of every day uses.", key="XSM", kind="file",
                     required=True, positional=True)
    workspace: str = param(None, "Workspace folder", "Holds the manifest, each day's layers, the GIB; a run in the "
                           "same folder finishes only what is missing.", key="WORKSPACE", kind="folder_out",
                           required=True, positional=True)
    rmf: str = param(None, "CLASS RMF", "", key="RMF", kind="file", required=True)
    arf: str = param(None, "CLASS ARF", "", key="ARF", kind="file", required=True)
    background: str = param(None, "CLASS background PHA", "", key="BACKGROUND", kind="file", required=True)
    albedo: str = param(None, "Albedo raster / image, or a mare polygon layer", "For the GIB's sub-footprints (as in "
                        "track population).", key="ALBEDO", kind="file", required=True)
    flare_catalog: str = param(None, "XSM flare catalogue (CSV)", "Only frames inside flares of the allowed classes "
                               "are co-added.", key="FLARE_CATALOG", kind="file", extension="csv")
    allowed_classes: tuple = param(("B", "C", "M"), "Allowed flare classes", "GOES classes kept with a flare "
                                   "catalogue.", key="FLARE_CLASSES", kind="enum", choices=FLARE_CLASSES,
                                   multiple=True)
    window: int = param(12, "Window (frames of 8 s)", "Frames per co-added spectrum.", key="WINDOW", kind="int",
                        minimum=1)
    stride: int = param(12, "Stride (frames)", "Frames between window starts (the window: spectra that do not "
                        "overlap).", key="STRIDE", kind="int", minimum=1)
    fit_norm: bool = param(True, "Fit the fluorescence normalisation", "As in FP inversion.", key="FIT_NORM",
                           kind="bool")
    scheduler: str = param("", "Dask scheduler", "Empty: a local cluster on this machine; an address "
                           "(tcp://host:8786) for a cluster (dask-jobqueue on SLURM: see the README); 'serial': the "
                           "days one after another in this process.", key="SCHEDULER", kind="string")
    workers: int = param(0, "Local workers (0 = the cores)", "Worker processes of the local cluster, one thread "
                         "each.", key="WORKERS", kind="int", minimum=0, advanced=True)
    memory_limit: str = param("", "Memory limit per local worker", "e.g. 4GB; empty: Dask's share of the "
                              "machine's memory.", key="MEMORY_LIMIT", kind="string", advanced=True)
    superres: bool = param(True, "Super-resolve every region and build the mosaic", "Each GIB region super-resolved "
                           "with a halo of its neighbours' data (one task each), then one cloud-optimised GeoTIFF "
                           "per element, blended across region borders.", key="SUPERRES", kind="bool")
    halo_px: int = param(MOSAIC_HALO_PX, "Halo (pixels of 2 km)", "Neighbours' GIB pixels around each region that its "
                         "super-resolution sees; the mosaic cross-fades regions over twice this width (0: plain "
                         "tiling, which steps at the borders).", key="HALO_PX", kind="int", minimum=0, maximum=341,
                         advanced=True)
    training: dict = param({}, "Super-resolution training settings (JSON)", "Fields of the training settings, as in "
                           "super-resolve region (e.g. {\"sweeps\": 3}); empty: its defaults.", key="TRAINING",
                           kind="json", advanced=True)
    device: str = param("cpu", "Device", "cuda where a GPU is present.", key="DEVICE", kind="enum", choices=DEVICES,
                        advanced=True)

    def _convert(self):
        super()._convert()
        self.allowed_classes = tuple(c.upper() for c in self.allowed_classes or ())
        self.scheduler = (self.scheduler or "").strip()
        self.memory_limit = (self.memory_limit or "").strip()

    def check_stage(self):
        from .superres.settings import SuperResSettings
        SuperResSettings.from_dict(self.training or {})


SPECS = {cls.STAGE: cls for cls in (SimulateParams, CoaddParams, SolarFitParams, InvertParams, PopulateParams,
                                    SuperResParams, BasemapParams, ArchiveParams)}

__all__ = ["Spec", "param", "default_of", "default_of_field", "SPECS", "KINDS"] + [c.__name__ for c in SPECS.values()] + [
    "ELEMENTS", "STRATEGIES", "PRIORS", "FLARE_CLASSES", "DEVICES", "WEST_EDGES", "FIXED_OXYGEN_WT"]
