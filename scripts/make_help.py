"""Write resources/help/<algorithm>.html, the page each algorithm's Help button opens, from the
algorithms' help text (the ``HELP`` of each processing_provider/*_alg.py) and the shipped models.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/make_help.py [OUT_DIR]

Re-run it after editing a help text: tests/qgis/test_help.py fails while a page is out of date.
Pages of algorithms that no longer exist are removed.
"""
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "class_qgis"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out_dir = Path(argv[0]) if argv else ROOT / "resources" / "help"
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.insert(0, "/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing

    Processing.initialize()
    tmp = Path(tempfile.mkdtemp(prefix="classxrf_pkg_"))
    os.symlink(ROOT, tmp / PACKAGE)
    sys.path.insert(0, str(tmp))
    import importlib

    plugin = importlib.import_module(PACKAGE).classFactory(None)
    plugin.initProcessing()  # the models' child algorithms resolve against the registered provider
    helptext = importlib.import_module(f"{PACKAGE}.processing_provider.helptext")
    pages = helptext.help_pages()
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in pages.items():
        path = out_dir / name
        part = out_dir / f".{name}.part"
        part.write_text(text, encoding="utf-8")
        os.replace(part, path)
        print(f"wrote {path} ({len(text)} characters)")
    for stale in sorted(set(p.name for p in out_dir.glob("*.html")) - set(pages)):
        (out_dir / stale).unlink()
        print(f"removed {out_dir / stale}")
    plugin.unload()
    app.exitQgis()
    return sorted(pages)


if __name__ == "__main__":
    main()
