"""Write resources/styles/<element>.qml (one graduated style per element) from processing_provider/styles.py.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/make_styles.py [OUT_DIR]

The styles are the plugin's fixed lunar classes (see styles.ELEMENT_BREAKS), so the .qml files and the
styles applied by the algorithms never drift apart: re-run this script after changing the classes.
"""
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "class_qgis"


def import_plugin_package():
    """Import the checkout as the installed package ``class_qgis`` (its glue uses relative imports)."""
    tmp = Path(tempfile.mkdtemp(prefix="classxrf_pkg_"))
    os.symlink(ROOT, tmp / PACKAGE)
    sys.path.insert(0, str(tmp))
    import importlib

    return importlib.import_module(f"{PACKAGE}.processing_provider.styles")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out_dir = Path(argv[0]) if argv else ROOT / "resources" / "styles"
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    styles = import_plugin_package()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for element in styles.ELEMENT_BREAKS:
        path = out_dir / f"{element}.qml"
        tmp = out_dir / f".{element}.part.qml"  # saveNamedStyle wants a .qml name
        styles.write_element_qml(element, str(tmp))
        os.replace(tmp, path)
        written.append(path)
        print(f"wrote {path}: " + "; ".join(styles.class_labels(element)))
    del styles
    app.exitQgis()
    return written


if __name__ == "__main__":
    main()
