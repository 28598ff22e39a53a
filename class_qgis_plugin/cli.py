"""Command line of the science core (no QGIS needed): ``python -m class_qgis_plugin.cli ...``.

Subcommands run the same core functions as the QGIS algorithms:

* ``simulate OUT`` - the synthetic data set with known truth (the embedded default);
* ``coadd INPUT OUT_FOLDER LAYER`` - co-add 8-s CLASS L1 files into PHA files + observation layer;
* ``invert LAYER OUT_LAYER --rmf --arf --background --solar`` - FP inversion;
* ``demo OUT`` - simulate, co-add, solar fit (from the simulated XSM spectra), invert and populate
  the GIB, then print how far the recovered abundances are from the truth and where the maps are.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .errors import Cancelled, ClassXRFError
from .choices import GAIN_FIT_MODES, STATISTICS
from .progress import ConsoleProgress


def _cmd_simulate(args):
    from .simulate import SimulationConfig, simulate

    cfg = SimulationConfig(seed=args.seed, region=tuple(args.region), n_tracks=args.tracks,
                           flare_classes=tuple(args.flares.split(",")), rmf=args.rmf, arf=args.arf)
    res = simulate(args.out, cfg, progress=ConsoleProgress("simulate"))
    print(f"{res.n_frames} frames in {res.frames_folder}; truth {res.truth}; albedo {res.albedo}")
    return res


def _cmd_coadd(args):
    from . import tasks

    r = tasks.coadd(args.input, args.out_folder, args.layer, strategy=args.strategy, window=args.window,
                    stride=args.stride, flare_catalog=args.flare_catalog, min_frames=args.min_frames,
                    progress=ConsoleProgress("co-add"))
    print(f"{r['n_spectra']} co-added spectra -> {args.out_folder}; layer {args.layer}; {r['n_read']} frames read, "
          f"{r['n_unused']} not used")
    for why, v in r["unused"].items():
        print(f"  {v['n']} frames not used: {why} (e.g. {v['examples'][0]})")
    return r


def _cmd_invert(args):
    from . import tasks

    r = tasks.invert(args.layer, args.out_layer, rmf=args.rmf, arf=args.arf, background=args.background,
                     solar=args.solar, gain_slope=args.gain[0], gain_offset=args.gain[1], e_range=args.e_range,
                     oxygen=args.oxygen if args.oxygen == "stoichiometric" else float(args.oxygen),
                     fit_norm=not args.fixed_norm, gain_fit=args.gain_fit, statistic=args.statistic,
                     plot_dir=args.plots, progress=ConsoleProgress("invert"))
    print(f"{r['n']} spectra inverted -> {args.out_layer}; {r['n_fitted']} fitted, "
          f"median reduced chi2 (XSPEC chi) {r['median_redchi'] if r['median_redchi'] is None else round(r['median_redchi'], 3)}")
    for note in r["notes"]:
        print(f"  response: {note}")
    for what, v in r["flagged"].items():
        print(f"  flagged {v['n']}: {what} (e.g. {v['example']})")


def run_demo(out, seed=42, tracks=24, window=12, stride=12, progress=True, fit_norm=False, superres=False):
    """Simulate -> co-add -> solar fit -> invert -> populate on the embedded default; returns the
    error table and the outputs (dict).

    ``fit_norm=False``: the simulated instrument's absolute calibration is exact, so the demo keeps
    the fluorescence normalisation fixed (real data need it fitted: the inversion's default).
    ``superres``: also super-resolve the region (minutes on a laptop CPU) and compare the map with
    the truth raster."""
    from . import coadd, composition, evaluate, geo, gib, invert, solarfit
    from .simulate import SimulationConfig, simulate

    out = Path(out)
    t0 = time.perf_counter()
    prog = (lambda label: ConsoleProgress(label)) if progress else (lambda label: None)
    sim = simulate(out / "simulated", SimulationConfig(seed=seed, n_tracks=tracks), progress=prog("simulate"))
    t1 = time.perf_counter()
    res = coadd.coadd_folder(sim.frames_folder, out / "coadded", strategy="sliding", window=window,
                             stride=stride, respfile=str(sim.rmf), ancrfile=str(sim.arf),
                             backfile=str(sim.background), progress=prog("co-add"))
    layer = out / "observations.gpkg"
    geo.write_vector(layer, res.geometries, res.attributes)
    t2 = time.perf_counter()
    sol = solarfit.fit_observations(res.attributes["t_start"], res.attributes["t_end"], sim.xsm_folder,
                                    out / "solar", obs_ids=res.attributes["obs_id"], progress=prog("solar fit"))
    attrs = dict(res.attributes)
    attrs.update(sol)
    solar_layer = out / "observations_solar.gpkg"
    geo.write_vector(solar_layer, res.geometries, attrs)
    t3 = time.perf_counter()
    cols, _ = invert.invert_layer(solar_layer, rmf=sim.rmf, arf=sim.arf, background=sim.background,
                                  fit_norm=fit_norm, progress=prog("invert"))
    attrs.update(cols)
    abund_layer = out / "abundances.gpkg"
    geo.write_vector(abund_layer, res.geometries, attrs)
    t4 = time.perf_counter()
    summary = gib.populate_layer(abund_layer, sim.albedo, out / "gib", points_output=out / "sub_footprints.gpkg",
                                 progress=prog("populate"))
    t5 = time.perf_counter()

    # Truth of each co-added footprint: mean of the truth raster over its footprint polygon.
    truth, meta = geo.read_geotiff(sim.truth)
    true_fp = evaluate.footprint_truth(truth, meta, res.geometries)
    els = composition.ELEMENTS
    table = evaluate.error_table({e: attrs[e] for e in els}, {e: attrs[f"{e}_err"] for e in els},
                                 {e: attrs[f"{e}_ok"] for e in els}, true_fp, els)
    times = dict(simulate=t1 - t0, coadd=t2 - t1, solarfit=t3 - t2, invert=t4 - t3, populate=t5 - t4)
    sr_table = None
    if superres:
        from . import tasks
        region = sim.config.region
        sr_path = out / f"superres_r{region[0]}_c{region[1]}.tif"
        tasks.superresolve(str(out / "gib"), str(sim.albedo), region, sr_path, out / "superres_curve.csv",
                           progress=prog("super-resolve"))
        times["superresolve"] = time.perf_counter() - t5
        sr, _ = geo.read_geotiff(sr_path)
        support = sr[-1]
        sr_table = {}
        for k, el in enumerate(els):
            if not np.isfinite(sr[k]).any():
                continue
            far = support > 10.0      # pixels more than 10 km from any observation
            sr_table[el] = dict(rmse_all=evaluate.rmse(sr[k], truth[k]),
                                rmse_far=evaluate.rmse(sr[k][far], truth[k][far]),
                                truth_std=float(np.nanstd(truth[k])))
    solar_t = np.asarray(sol["sol_T_MK"], float)
    return dict(table=table, times=times, layer=abund_layer, simulation=sim, n_spectra=len(res.geometries),
                superres=sr_table,
                gib=summary, solar_T_MK=float(np.nanmedian(solar_t)), solar_class=sorted(set(sol["flare_cls"])))


def _cmd_demo(args):
    r = run_demo(args.out, seed=args.seed, tracks=args.tracks, superres=args.superres)
    print()
    print(f"Demo on the embedded default (seed {args.seed}): {r['simulation'].n_frames} 8-s frames, "
          f"{r['n_spectra']} co-added spectra of 96 s")
    print("times: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["times"].items()))
    from .simulate import FLARE_PLASMA
    t_true = FLARE_PLASMA[r["simulation"].config.flare_classes[0]][0]
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
          f"      truth raster {sim.truth}\n      albedo basemap {sim.albedo}")
    for p in sorted(Path(args.out).glob("superres_r*.tif")):
        print(f"      super-resolved map {p}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="class_qgis_plugin.cli", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("simulate", help="make the synthetic data set with known truth")
    s.add_argument("out")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--region", type=int, nargs=2, default=(3, 4))
    s.add_argument("--tracks", type=int, default=24)
    s.add_argument("--flares", default="C", help="comma-separated GOES classes, one per track, cycled")
    s.add_argument("--rmf")
    s.add_argument("--arf")
    s.set_defaults(func=_cmd_simulate)
    c = sub.add_parser("coadd", help="co-add 8-s CLASS L1 files")
    c.add_argument("input")
    c.add_argument("out_folder")
    c.add_argument("layer")
    c.add_argument("--strategy", default="sliding", choices=["sliding", "running", "combined"])
    c.add_argument("--window", type=int, default=12)
    c.add_argument("--stride", type=int, default=1)
    c.add_argument("--flare-catalog")
    c.add_argument("--min-frames", type=int, help="fewest frames of a run shorter than the window (default: window)")
    c.set_defaults(func=_cmd_coadd)
    v = sub.add_parser("invert", help="FP inversion of an observation layer")
    v.add_argument("layer")
    v.add_argument("out_layer")
    v.add_argument("--rmf", required=True)
    v.add_argument("--arf", required=True)
    v.add_argument("--background", required=True)
    v.add_argument("--solar", help="solar table for observations without a solar_file column")
    v.add_argument("--gain", type=float, nargs=2, default=(1.0, 0.0), metavar=("SLOPE", "OFFSET"))
    v.add_argument("--fixed-norm", action="store_true", help="do not fit the fluorescence normalisation")
    v.add_argument("--gain-fit", choices=list(GAIN_FIT_MODES), default="none",
                   help="fit the gain (XSPEC 'gain fit') per spectrum or shared by all spectra, from --gain")
    v.add_argument("--statistic", choices=list(STATISTICS), default="cstat",
                   help="statistic minimised: cstat (Poisson) or chi (XSPEC's chi); both are written")
    v.add_argument("--e-range", type=float, nargs=2, default=(0.9, 4.2), metavar=("EMIN", "EMAX"))
    v.add_argument("--oxygen", default="stoichiometric", help="'stoichiometric' or a fixed wt%%, e.g. 45")
    v.add_argument("--plots", help="folder for fit plots")
    v.set_defaults(func=_cmd_invert)
    d = sub.add_parser("demo", help="simulate -> co-add -> invert on the embedded default")
    d.add_argument("--out", default="demo_output")
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--tracks", type=int, default=24)
    d.add_argument("--superres", action="store_true", help="also super-resolve the region (minutes)")
    d.set_defaults(func=_cmd_demo)
    args = ap.parse_args(argv)
    try:
        args.func(args)
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
