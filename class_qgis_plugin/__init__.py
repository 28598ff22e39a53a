"""Science core of the CLASS lunar XRF plugin.

Never imports qgis: everything here runs (and is tested) in any Python with the packages of
``requirements.txt``, and serves the QGIS Processing algorithms, the command line and batch runs.
"""
__version__ = "0.4.0"
