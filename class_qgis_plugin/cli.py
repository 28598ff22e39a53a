"""Command line of the science core (no QGIS needed): ``python -m class_qgis_plugin.cli STAGE ...``.

One subcommand per stage, generated from the stage's spec (:mod:`specs`: the same parameters,
defaults, choices and help as the QGIS algorithm) and running the same stage (:mod:`tasks`):
``simulate``, ``coadd``, ``solarfit``, ``invert``, ``populate``, ``superresolve``, ``basemap``;
``python -m class_qgis_plugin.cli STAGE --help`` lists its arguments. And ``demo OUT``: simulate,
co-add, solar fit (from the simulated XSM spectra), invert and populate the GIB, then print how far
the recovered abundances are from the truth and where the maps are.

A bad input is one line on standard error naming the file or parameter, and exit status 2.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .errors import Cancelled, ClassXRFError
from .progress import ConsoleProgress
from .specs import SPECS, CoaddParams, default_of_field


def add_stage_parser(sub, spec):
    """The subcommand of a stage: positional arguments for the spec's positional fields, ``--name``
    options for the others (``--flag/--no-flag`` for yes/no), each with the spec's default,
    choices and help."""
    doc = (spec.__doc__ or "").strip().splitlines()[0]
    p = sub.add_parser(spec.STAGE, help=doc.split(": ", 1)[-1], description=doc)
    for f in spec.params():
        m = f.metadata
        kw = dict(help=m["label"] + (f". {m['help']}" if m["help"] else ""))
        kind, default = m["kind"], default_of_field(f)
        if kind in ("float", "int"):
            kw["type"] = float if kind == "float" else int
        if kind == "enum":
            kw["choices"] = m["choices"]
        if kind == "files" or (kind == "enum" and m["multiple"]):
            kw["nargs"] = "+"
        if kind == "extent":
            kw.update(nargs=4, type=float, metavar=("WEST", "SOUTH", "EAST", "NORTH"))
        if m["positional"]:
            p.add_argument(f.name, **kw)
            continue
        if kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        if default not in (None, "", {}, ()) and kind != "bool":
            kw["help"] += f" (default: {' '.join(map(str, default)) if isinstance(default, tuple) else default})"
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=default, required=m["required"], **kw)
    p.set_defaults(stage=spec.STAGE)
    return p


def _print_summary(stage, r):
    """What a stage did, in a few lines."""
    if stage == "coadd":
        print(f"{r['n_spectra']} co-added spectra; layer {r['layer']}; {r['n_read']} frames read, "
              f"{r['n_unused']} not used")
        for why, v in r["unused"].items():
            print(f"  {v['n']} frames not used: {why} (e.g. {v['examples'][0]})")
    elif stage == "invert":
        red = r["median_redchi"]
        print(f"{r['n']} spectra inverted -> {r['layer']}; {r['n_fitted']} fitted, median reduced chi2 (XSPEC chi) "
              f"{red if red is None else round(red, 3)}")
        for note in r["notes"]:
            print(f"  response: {note}")
        for what, v in r["flagged"].items():
            print(f"  flagged {v['n']}: {what} (e.g. {v['example']})")
    else:
        for key, value in r.items():
            print(f"{key}: {value}")


def run_demo(out, seed=42, tracks=24, window=CoaddParams.window, stride=12, progress=True, fit_norm=False,
             superres=False, frames=None):
    """Simulate -> co-add -> solar fit -> invert -> populate on the embedded default, each by its
    stage (:func:`tasks.run`); returns the error table and the outputs (dict).

    ``stride=12``: windows that do not overlap (every frame in one spectrum). ``fit_norm=False``:
    the simulated instrument's absolute calibration is exact, so the demo keeps the fluorescence
    normalisation fixed (real data need it fitted: the inversion's default). ``superres``: also
    super-resolve the region (minutes on a laptop CPU) and compare the map with the truth raster.
    ``frames``: the simulated frames' geometry (``frame_across_km``, ``frame_along_km``,
    ``frame_step_km`` of :class:`specs.SimulateParams`)."""
    from . import composition, evaluate, geo, obslayer, tasks

    out = Path(out)
    prog = (lambda label: ConsoleProgress(label)) if progress else (lambda label: None)
    times = {}

    def stage(name, **params):
        t0 = time.perf_counter()
        r = tasks.run(name, params, progress=prog(name))
        times[name] = time.perf_counter() - t0
        return r

    sim = stage("simulate", folder=out / "simulated", seed=seed, tracks=tracks, **(frames or {}))
    stage("coadd", inputs=[sim["frames"]], out_folder=out / "coadded", out_layer=out / "observations.gpkg",
          window=window, stride=stride, rmf=sim["rmf"], arf=sim["arf"], background=sim["background"])
    sol = stage("solarfit", layer=out / "observations.gpkg", xsm=sim["xsm"], out_folder=out / "solar",
                out_layer=out / "observations_solar.gpkg")
    abund_layer = out / "abundances.gpkg"
    stage("invert", layer=sol["layer"], out_layer=abund_layer, rmf=sim["rmf"], arf=sim["arf"],
          background=sim["background"], fit_norm=fit_norm)
    summary = stage("populate", layer=abund_layer, albedo=sim["albedo"], gib_folder=out / "gib",
                    points_output=out / "sub_footprints.gpkg")

    # Truth of each co-added footprint: mean of the truth raster over its footprint polygon.
    geoms, attrs = obslayer.read(abund_layer)
    truth, meta = geo.read_geotiff(sim["truth"])
    true_fp = evaluate.footprint_truth(truth, meta, geoms)
    els = composition.ELEMENTS
    table = evaluate.error_table({e: attrs[e] for e in els}, {e: attrs[f"{e}_err"] for e in els},
                                 {e: attrs[f"{e}_ok"] for e in els}, true_fp, els)
    sr_table = None
    if superres:
        sr = stage("superresolve", gib=out / "gib", albedo=sim["albedo"], output=out / "superres.tif",
                   curve_output=out / "superres_curve.csv")
        data, _ = geo.read_geotiff(sr["output"])
        far = data[-1] > 10.0      # pixels more than 10 km from any observation
        sr_table = {el: dict(rmse_all=evaluate.rmse(data[k], truth[k]), rmse_far=evaluate.rmse(data[k][far], truth[k][far]),
                             truth_std=float(np.nanstd(truth[k])))
                    for k, el in enumerate(els) if np.isfinite(data[k]).any()}
    solar_t = np.asarray(attrs["sol_T_MK"], float)
    return dict(table=table, times=times, layer=abund_layer, simulation=sim, n_spectra=len(geoms), superres=sr_table,
                gib=summary, solar_T_MK=float(np.nanmedian(solar_t)), solar_class=sorted(set(attrs["flare_cls"])))


def run_demo_moon(out, seed=42, tracks=24, days=6, scheduler="", training="fast", progress=True):
    """The archive on a simulated archive: ``tracks`` tracks over ``days`` days across two
    neighbouring regions (one continuous surface; B, C and M flares; dropped frames; A-class
    spectra are left out: README, Known limits), run by
    ``classxrf:archive`` (a local Dask cluster by default: days, then one super-resolution task per
    region), and the mosaic compared with the truth. ``training``: ``"fast"`` (the short training of
    :data:`superres.settings.FAST_TRAINING`, about a minute a region), ``"default"`` (the
    super-resolution's defaults: each worker trains single-threaded, over 15 minutes a region here)
    or a dict of settings. Returns a dict of the outputs and figures."""
    from . import geo, tasks
    from .choices import ELEMENTS
    from .superres.settings import FAST_TRAINING

    training = FAST_TRAINING if training == "fast" else {} if training == "default" else dict(training)

    out = Path(out)
    sim = tasks.run("simulate", dict(folder=out / "simulated", seed=seed, tracks=tracks, regions_across=2,
                                     track_gap_s=86400.0 * days / tracks, flare_classes=("B", "C", "M")),
                    progress=ConsoleProgress("simulate") if progress else None)
    t0 = time.perf_counter()
    summary = tasks.run("archive", dict(inputs=[sim["frames"]], xsm=sim["xsm"], workspace=str(out / "workspace"),
                                        rmf=sim["rmf"], arf=sim["arf"], background=sim["background"],
                                        albedo=sim["albedo"], scheduler=scheduler, training=training),
                        progress=ConsoleProgress("archive") if progress else None)
    seconds = time.perf_counter() - t0
    truth, tmeta = geo.read_geotiff(sim["truth"])
    rmse = {}
    for el, path in zip(ELEMENTS, summary["mosaic"]):
        band, meta = geo.read_geotiff(path)
        r = int(round((meta["north"] - tmeta["north"]) / geo.PIXEL_DLAT))
        c = int(round((tmeta["west"] - meta["west"]) / geo.PIXEL_DLON))
        m = band[0, r:r + truth.shape[1], c:c + truth.shape[2]]
        rmse[el] = float(np.sqrt(np.nanmean((m - truth[ELEMENTS.index(el)]) ** 2))) if np.isfinite(m).any() else None
    return dict(simulation=sim, summary=summary, seconds=seconds, rmse=rmse)


def _cmd_demo_moon(args):
    r = run_demo_moon(args.out, seed=args.seed, tracks=args.tracks,
                      training="default" if args.superres else "fast")
    s = r["summary"]
    print(f"\nArchive of {s['n_days']} simulated days over regions {', '.join(s['regions_run'] + s['regions_skipped'])}"
          f" in {r['seconds']:.0f} s ({len(s['failed'])} days failed)")
    print(f"{'element':>8} {'seam ratio':>11} {'RMSE vs truth (wt%)':>20}")
    for el, ratio in s["seam_ratio"].items():
        e = r["rmse"][el]
        print(f"{el:>8} {ratio:11.2f} {'' if e is None else f'{e:.3f}':>20}")
    print(f"\nmosaic (one COG per element): {Path(s['workspace']) / 'mosaic'}\nworkspace: {s['workspace']}"
          f"\ntruth raster {r['simulation']['truth']}\nalbedo basemap {r['simulation']['albedo']}")


def _cmd_demo(args):
    from .simulate import FLARE_PLASMA
    from .specs import SimulateParams

    if args.moon:
        return _cmd_demo_moon(args)
    r = run_demo(args.out, seed=args.seed, tracks=args.tracks, superres=args.superres)
    print()
    print(f"Demo on the embedded default (seed {args.seed}): {r['simulation']['n_frames']} 8-s frames, "
          f"{r['n_spectra']} co-added spectra of 96 s")
    print("times: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["times"].items()))
    t_true = FLARE_PLASMA[SimulateParams.flare_classes[0]][0]
    print(f"solar fit: median T = {r['solar_T_MK']:.2f} MK (simulated {t_true:.1f} MK), classes {r['solar_class']}")
    print(f"{'element':>8} {'n':>5} {'truth':>7} {'|err| med':>10} {'bias':>7} {'in 1 sigma':>11}")
    for el, row in r["table"].items():
        print(f"{el:>8} {row['n']:5d} {row['truth_mean']:7.2f} {row['median_abs_err']:10.2f} "
              f"{row['bias']:7.2f} {row['within_1sigma']:11.2f}")
    sim = r["simulation"]
    if r["superres"]:
        print("\nsuper-resolved map vs truth (RMSE wt%; 'far' = pixels > 10 km from any observation; the truth's own"
              " spread for scale):")
        print(f"{'element':>8} {'all':>7} {'far':>7} {'truth sd':>9}")
        for el, row in r["superres"].items():
            print(f"{el:>8} {row['rmse_all']:7.3f} {row['rmse_far']:7.3f} {row['truth_std']:9.3f}")
    g = r["gib"]
    print(f"\npopulation: {g['sub_footprints']} sub-footprints in GIB regions {g['regions_touched']}")
    print(f"\nmaps: abundance layer {r['layer']}\n      GIB rasters {Path(args.out) / 'gib'}\n"
          f"      truth raster {sim['truth']}\n      albedo basemap {sim['albedo']}")
    if r["superres"]:
        print(f"      super-resolved map {Path(args.out) / 'superres.tif'}")


def build_parser():
    """The argument parser: one subcommand per stage (from its spec) and ``demo``."""
    ap = argparse.ArgumentParser(prog="class_qgis_plugin.cli", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for spec in SPECS.values():
        add_stage_parser(sub, spec)
    d = sub.add_parser("demo", help="simulate -> co-add -> solar fit -> invert -> populate on the embedded default")
    d.add_argument("--out", default="demo_output")
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--tracks", type=int, default=24)
    d.add_argument("--superres", action="store_true", help="also super-resolve the region (minutes)")
    d.add_argument("--moon", action="store_true", help="the archive run instead: several simulated days over two "
                   "neighbouring regions on a local Dask cluster, super-resolved (a short training; with --superres "
                   "the full one, much longer) and mosaicked")
    d.set_defaults(stage=None)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.stage is None:
            _cmd_demo(args)
        else:
            from . import tasks
            spec = SPECS[args.stage]
            values = {f.name: getattr(args, f.name) for f in spec.params()}
            _print_summary(args.stage, tasks.run(args.stage, values, progress=ConsoleProgress(args.stage)))
    except ClassXRFError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:          # a disk that cannot be written, a folder that vanished ...
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print("cancelled", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
