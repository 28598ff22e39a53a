"""Thin QGIS glue: the Processing provider and one module per algorithm. No science lives here."""
