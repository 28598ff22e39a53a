"""QGIS desktop under Xvfb with the plugin installed in a temporary profile: a screenshot a person can look at.

    .venv/bin/python scripts/screenshot.py [--out screenshot.png] [--element Al] [--keep]

1. makes the simulated data set (simulate -> co-add -> solar fit -> invert, core functions, ~5 s);
2. installs the plugin (the working tree's plugin files, as the zip would hold them) into a fresh profile
   and enables it;
3. starts ``qgis`` under ``xvfb-run`` with ``--code``: inside QGIS the basemap algorithm makes the basemap,
   the abundance layer is loaded graduated by the element on the lunar classes, the project CRS is
   ESRI:104903, the provider's algorithms are looked up in the Processing registry; the main window
   is grabbed to the PNG and QGIS quits;
4. checks the report QGIS wrote (every classxrf algorithm registered, layers valid, no warning or
   error in the message bar, which stays in the picture) and exits non-zero otherwise.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "class_qgis"
PLUGIN_PARTS = ("metadata.txt", "LICENSE", "__init__.py", "plugin.py", "class_qgis_plugin/", "processing_provider/",
                "resources/", "requirements.txt", "README.md")

INSIDE = r'''
import json, traceback
from qgis.utils import iface
from qgis.core import QgsApplication, QgsProject, QgsVectorLayer, QgsCoordinateReferenceSystem
from qgis.PyQt.QtCore import QTimer

CFG = json.loads(%(cfg)r)
report = {"ok": False}
EXTENT = []

def finish():
    try:
        if QgsProject.instance().crs().authid() != "ESRI:104903":
            report["crs_changed_to"] = QgsProject.instance().crs().authid()
            QgsProject.instance().setCrs(QgsCoordinateReferenceSystem("ESRI:104903"))
            iface.mapCanvas().setExtent(EXTENT[0])
            QgsApplication.processEvents()
        report["crs"] = QgsProject.instance().crs().authid()
        # what the message bar shows (left there, in the picture): level 0 info, 1 warning, 2 critical, 3 success
        report["messages"] = [[int(w.level()), w.title(), w.text()] for w in iface.messageBar().items()]
        iface.mapCanvas().refreshAllLayers()
        QgsApplication.processEvents()
        QTimer.singleShot(0, lambda: None)
        import time
        t0 = time.time()
        while time.time() - t0 < 3.0:  # let the canvas redraw in the lunar CRS
            QgsApplication.processEvents()
            time.sleep(0.05)
        iface.mainWindow().grab().save(CFG["png"])
        report["saved"] = True
    except Exception:
        report["error"] = traceback.format_exc()
    with open(CFG["report"], "w") as f:
        json.dump(report, f)
    QgsApplication.exit(0)

def setup():
    try:
        import processing
        import class_qgis.processing_provider.styles as styles
        reg = QgsApplication.processingRegistry()
        prov = reg.providerById("classxrf")
        report["algorithms"] = sorted(a.id() for a in prov.algorithms()) if prov else []
        base = processing.runAndLoadResults("classxrf:basemap", {"INPUT": CFG["albedo"], "OUTPUT": CFG["basemap"]})
        project = QgsProject.instance()
        project.setCrs(QgsCoordinateReferenceSystem("ESRI:104903"))
        vec = QgsVectorLayer(CFG["layer"], "Abundances", "ogr")
        styles.apply_element_style(vec, CFG["element"])
        project.addMapLayer(vec)
        project.setCrs(QgsCoordinateReferenceSystem("ESRI:104903"))  # again: the first layer may have set it
        report["layers"] = {l.name(): l.isValid() for l in project.mapLayers().values()}
        report["crs"] = project.crs().authid()
        report["renderer"] = vec.renderer().type()
        ext = vec.extent()
        ext.scale(1.2)
        iface.mapCanvas().setExtent(ext)
        EXTENT.append(ext)
        iface.mainWindow().showMaximized()
        report["ok"] = True
    except Exception:
        report["error"] = traceback.format_exc()
    QTimer.singleShot(6000, finish)

QTimer.singleShot(1500, setup)
'''


def install_plugin(plugins_dir):
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    for f in files:
        if f and f.startswith(PLUGIN_PARTS) and (ROOT / f).is_file() and "__pycache__" not in f:
            dst = plugins_dir / PACKAGE / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "screenshot.png"))
    ap.add_argument("--element", default="Al")
    ap.add_argument("--tracks", type=int, default=6)
    ap.add_argument("--keep", action="store_true", help="keep the temporary profile and data")
    args = ap.parse_args(argv)
    if not shutil.which("xvfb-run") or not shutil.which("qgis"):
        raise SystemExit("needs xvfb-run and qgis (apt-get install qgis xvfb)")
    sys.path.insert(0, str(ROOT))
    from class_qgis_plugin.cli import run_demo

    work = Path(tempfile.mkdtemp(prefix="classxrf_shot_"))
    demo = run_demo(work / "demo", tracks=args.tracks, progress=False)
    profiles = work / "profiles"
    plugins = profiles / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    install_plugin(plugins)
    ini = profiles / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(f"[PythonPlugins]\n{PACKAGE}=true\n\n[qgis]\ncheckVersion=false\nshowTips=false\n"
                   "projections\\defaultBehavior=useProject\n[UI]\nhidebrowser=true\n")
    out = Path(args.out).resolve()
    cfg = dict(png=str(work / "shot.png"), report=str(work / "report.json"), albedo=str(demo["simulation"]["albedo"]),
               basemap=str(work / "basemap.tif"), layer=str(demo["layer"]), element=args.element)
    code = work / "inside.py"
    code.write_text(INSIDE % {"cfg": json.dumps(cfg)})
    env = dict(os.environ, HOME=str(work / "home"), QT_QPA_PLATFORM="xcb", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
    (work / "home").mkdir()
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", "qgis", "--profiles-path", str(work),  # QGIS adds /profiles
           "--nologo", "--noversioncheck", "--code", str(code)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    report_path = Path(cfg["report"])
    if not report_path.exists():
        raise SystemExit(f"QGIS wrote no report (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    report = json.loads(report_path.read_text())

    expected = {"classxrf:simulate", "classxrf:coadd", "classxrf:solarfit", "classxrf:invert", "classxrf:populate",
                "classxrf:basemap", "classxrf:exportmap", "classxrf:dependencies"}
    problems = []
    if not report.get("ok"):
        problems.append(report.get("error", "setup failed"))
    missing = expected - set(report.get("algorithms", []))
    if missing:
        problems.append(f"algorithms not in the Processing registry: {sorted(missing)}")
    if not report.get("layers") or not all(report["layers"].values()):
        problems.append(f"layers: {report.get('layers')}")
    if report.get("crs") != "ESRI:104903":
        problems.append(f"project CRS {report.get('crs')}")
    bad = [m for m in report.get("messages", []) if m[0] in (1, 2)]
    if bad:
        problems.append(f"warnings or errors in the message bar: {bad}")
    if not report.get("saved") or not Path(cfg["png"]).exists():
        problems.append("no screenshot saved")
    else:
        shutil.copyfile(cfg["png"], out)
    print(json.dumps(report, indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work}")
    if problems:
        raise SystemExit("screenshot check failed: " + "; ".join(problems))
    print(f"wrote {out} ({len(report['algorithms'])} classxrf algorithms registered; QGIS exit {proc.returncode})")


if __name__ == "__main__":
    main()
