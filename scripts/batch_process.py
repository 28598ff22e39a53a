"""PyQGIS batch example: a folder of 8-s CLASS L1 files -> maps, end to end, with processing.run.

    QT_QPA_PLATFORM=offscreen python3 scripts/batch_process.py CLASS_FOLDER OUT_FOLDER \
        --rmf class.rmf --arf class.arf (--background bkg.pha | --build-background) \
        (--xsm XSM_FOLDER | --solar modelop.txt) [--albedo albedo.tif|moon.jpg] [--element Al]
        [--gain SLOPE OFFSET] [--gain-fit none|spectrum|shared]

    # or on the simulated data set, with no download:
    QT_QPA_PLATFORM=offscreen python3 scripts/batch_process.py --simulate OUT_FOLDER

Every sub-folder of CLASS_FOLDER holding CLASS L1 FITS files (e.g. one per day) is one run:
co-add (96-s windows) -> solar fit from XSM (or one solar table for all) -> FP inversion ->
track population into one GIB shared by all runs -> PNG map of the chosen element over the basemap.
The same calls work in QGIS's Python console (without the QgsApplication lines).
"""
import argparse
import gc
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "class_qgis"


def start_qgis():
    """A headless QGIS with Processing and the classxrf provider (as installed: package ``class_qgis``)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.insert(0, "/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing

    Processing.initialize()
    import importlib

    try:  # the plugin installed in the profile
        module = importlib.import_module(PACKAGE)
    except ImportError:  # this checkout, linked under the installed name
        tmp = Path(tempfile.mkdtemp(prefix="classxrf_pkg_"))
        os.symlink(ROOT, tmp / PACKAGE)
        sys.path.insert(0, str(tmp))
        module = importlib.import_module(PACKAGE)
    plugin = module.classFactory(None)
    plugin.initProcessing()
    return app, plugin


def class_folders(root):
    """Folders under ``root`` that hold CLASS L1 FITS files (``root`` itself included)."""
    root = Path(root)
    folders = sorted({p.parent for p in root.rglob("*.fits")} | {p.parent for p in root.rglob("*.fits.gz")})
    if not folders:
        raise SystemExit(f"{root}: no CLASS L1 .fits files found")
    return folders


def process_folder(folder, out, args, feedback, basemap=None):
    """One folder of 8-s frames -> abundance layer (+ GIB update, + PNG map). Returns the result dict."""
    import processing

    out.mkdir(parents=True, exist_ok=True)
    co = processing.run("classxrf:coadd", {
        "INPUT": str(folder), "STRATEGY": "sliding", "WINDOW": 12, "STRIDE": args.stride,
        "RMF": args.rmf, "ARF": args.arf, "BACKGROUND": args.background,
        "BUILD_BACKGROUND": args.build_background,
        "OUTPUT_FOLDER": str(out / "pha"), "OUTPUT": str(out / "observations.gpkg")}, feedback=feedback)
    if co["N_SPECTRA"] == 0:
        print(f"{folder}: no co-added spectrum (gaps or flare filter); skipped")
        return None
    obs = co["OUTPUT"]
    if args.xsm:
        obs = processing.run("classxrf:solarfit", {
            "INPUT": obs, "XSM_FOLDER": args.xsm, "OUTPUT_FOLDER": str(out / "solar"),
            "OUTPUT": str(out / "observations_solar.gpkg")}, feedback=feedback)["OUTPUT"]
    background = args.background or co.get("NIGHT_BACKGROUND")
    inv = processing.run("classxrf:invert", {
        "INPUT": obs, "RMF": args.rmf, "ARF": args.arf, "BACKGROUND": background, "SOLAR": args.solar,
        "GAIN_SLOPE": args.gain[0], "GAIN_OFFSET": args.gain[1], "GAIN_FIT": args.gain_fit,
        "STYLE_ELEMENT": args.element, "OUTPUT": str(out / "abundances.gpkg")}, feedback=feedback)
    result = {"abundances": inv["OUTPUT"]}
    if args.albedo:
        pop = processing.run("classxrf:populate", {
            "INPUT": inv["OUTPUT"], "ALBEDO": args.albedo, "GIB_FOLDER": str(Path(args.out) / "gib"),
            "OUTPUT": str(out / "sub_footprints.gpkg")}, feedback=feedback)
        result["sub_footprints"] = pop["N_SUB"]
    png = processing.run("classxrf:exportmap", {
        "INPUT": inv["OUTPUT"], "ELEMENT": args.element, "BASEMAP": basemap, "DPI": 120,
        "OUTPUT": str(out / f"map_{args.element}.png")}, feedback=feedback)
    result["map"] = png["OUTPUT"]
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", nargs="?", help="folder of CLASS L1 files (searched recursively)")
    ap.add_argument("out")
    ap.add_argument("--simulate", action="store_true", help="make the simulated data set first and use it")
    ap.add_argument("--rmf")
    ap.add_argument("--arf")
    ap.add_argument("--background")
    ap.add_argument("--build-background", action="store_true")
    ap.add_argument("--xsm", help="folder of XSM spectra for the solar fit")
    ap.add_argument("--solar", help="one solar table (modelop format) for every observation")
    ap.add_argument("--albedo", help="albedo raster or whole-Moon image: basemap and mare/highland split")
    ap.add_argument("--element", default="Al", choices=["O", "Na", "Mg", "Al", "Si", "Ca", "Ti", "Fe"])
    ap.add_argument("--gain", type=float, nargs=2, default=(1.0, 0.0), metavar=("SLOPE", "OFFSET"),
                    help="gain (XSPEC reading), the start of a fitted gain")
    ap.add_argument("--gain-fit", choices=["none", "spectrum", "shared"],
                    help="gain fit of the inversion; default: one gain shared by each folder's spectra (a day "
                         "of one calibration) for real data, none for --simulate")
    ap.add_argument("--stride", type=int, default=12, help="co-add stride in frames (12: disjoint 96-s windows)")
    ap.add_argument("--tracks", type=int, default=6, help="tracks of the simulated set (--simulate)")
    args = ap.parse_args(argv)
    if not args.simulate and not args.input:
        ap.error("give a CLASS folder, or --simulate")
    app, plugin = start_qgis()
    import processing
    from qgis.core import QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    out_root = Path(args.out)
    if args.simulate:
        sim = processing.run("classxrf:simulate", {"TRACKS": args.tracks, "OUTPUT_FOLDER": str(out_root / "simulated")},
                             feedback=feedback)
        args.input, args.rmf, args.arf, args.background = sim["FRAMES"], sim["RMF_OUT"], sim["ARF_OUT"], sim["BACKGROUND"]
        args.xsm, args.solar, args.albedo = sim["XSM"], sim["SOLAR"], sim["ALBEDO"]
        args.gain_fit = args.gain_fit or "none"      # the simulated instrument's gain is exact
    args.gain_fit = args.gain_fit or "shared"
    if not (args.rmf and args.arf):
        raise SystemExit("--rmf and --arf are needed")
    if not (args.background or args.build_background):
        raise SystemExit("--background or --build-background is needed")
    basemap = None
    if args.albedo:
        basemap = processing.run("classxrf:basemap", {"INPUT": args.albedo,
                                                      "OUTPUT": str(out_root / "basemap.tif")}, feedback=feedback)["OUTPUT"]
    summary = []
    for folder in class_folders(args.input):
        name = folder.name if folder != Path(args.input) else "all"
        print(f"== {folder}")
        res = process_folder(folder, out_root / name, args, feedback, basemap)
        if res:
            summary.append((name, res))
            print(f"   {res}")
    print(f"{len(summary)} folder(s) processed -> {out_root}")
    plugin.unload()
    del plugin
    gc.collect()
    app.exitQgis()
    return summary


if __name__ == "__main__":
    main()
