"""Choices the stages offer, importable without numpy (the QGIS glue reads them at plugin load,
where the science packages may be missing)."""

#: The eight elements of the inversion, in the order of every column, band and array of the plugin
ELEMENTS = ("O", "Na", "Mg", "Al", "Si", "Ca", "Ti", "Fe")

#: the cations the inversion fits freely (Si closes the sum to 100 %, O follows the cations or is
#: fixed); the observation layer keeps their prior-dominated value where unconstrained (X_prior)
FITTED_CATIONS = ("Na", "Mg", "Al", "Ca", "Ti", "Fe")

#: The partition of the Moon into GIB regions: 8 rows of 22.5 deg latitude (row 0 at the north
#: pole) by 8 columns of 45 deg longitude (column 0 at 180 W)
N_REGION_ROWS, N_REGION_COLS = 8, 8

#: the region the simulated data set covers and the super-resolution picks by default (0..22.5 N,
#: 0..45 E)
DEFAULT_REGION = (3, 4)

#: oxygen treatments of the inversion: from the cations' oxide stoichiometry, or fixed (45 wt%,
#: as X2ABUNDANCE)
OXYGEN_MODES = ("stoichiometric", "fixed45")

#: XSPEC-style gain fit of the inversion: none, one gain per spectrum, one gain shared by all
#: spectra of a run
GAIN_FIT_MODES = ("none", "spectrum", "shared")

#: statistics the inversion can minimise: the Poisson likelihood (C-stat) or XSPEC's chi
STATISTICS = ("cstat", "chi")

#: elements in the order the layer styles prefer them when several are constrained equally often
#: (the best-measured lines first); the invert task's ``best_element`` and the glue's styles use it
STYLE_PREFERENCE = ("Al", "Mg", "Si", "Ca", "Fe", "Ti", "Na", "O")

#: The one CRS of every layer the plugin writes (GeoTIFF, GeoPackage, Shapefile, GeoJSON) and of the
#: project it sets up: ESRI:104903 "GCS_Moon_2000", geographic longitude/latitude (east positive) on
#: the 1,737,400 m lunar sphere. Measured with QGIS 3.22.16 / GDAL 3.6.2 / PROJ 9.1.1 reading files
#: written by rasterio and pyogrio: it reads back in every one of those formats as ESRI:104903,
#: while IAU_2015:30100 (the same sphere) reads back only from GeoTIFF: from a GeoPackage or GeoJSON
#: as an invalid CRS (its WKT1 carries AUTHORITY["IAU","30100"], which PROJ cannot find) and from a
#: Shapefile as an unidentified, non-geographic custom CRS. With one CRS everywhere QGIS never has
#: to transform between the plugin's layers and the project.
LUNAR_CRS = "ESRI:104903"

#: The ellipsoid of a project in :data:`LUNAR_CRS`, for QGIS's distances and areas (measure tool,
#: scale bar, $area): the explicit 1,737,400 m sphere. Measured in QGIS 3.22: a new project that
#: takes the CRS of its first lunar layer also takes that CRS's ellipsoid (ESRI:107903 for
#: ESRI:104903), with which every distance is NaN and QgsDistanceArea's transform to the ellipsoid's
#: CRS fails ("No transform available between ESRI:104903 and Custom CRS"); the IAU_2015:30100
#: ellipsoid gives NaN too. "PARAMETER:1737400:1737400" measures 1 degree as 30,323 m.
LUNAR_ELLIPSOID = "PARAMETER:1737400:1737400"

#: the halo (pixels of the GIB's grid) around each region that its super-resolution sees in the mosaic
#: (128 km): measured on the simulated two-region archive the seam ratio is 1.0-2.4 with 32 px, 0.9-1.3 with 64
#: (benchmarks/bench_archive.py)
MOSAIC_HALO_PX = 64
