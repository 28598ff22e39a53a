"""Choices the stages offer, importable without numpy (the QGIS glue reads them at plugin load,
where the science packages may be missing)."""

#: XSPEC-style gain fit of the inversion: none, one gain per spectrum, one gain shared by all
#: spectra of a run
GAIN_FIT_MODES = ("none", "spectrum", "shared")

#: statistics the inversion can minimise: the Poisson likelihood (C-stat) or XSPEC's chi
STATISTICS = ("cstat", "chi")
