"""Benchmark of the region super-resolution against IDW, ordinary kriging and kriging with albedo drift.

Default (``--simulated``): the plugin's simulated data set. ``class_qgis_plugin.cli.run_demo``
(simulate -> co-add -> solar fit -> invert -> populate, ``--tracks`` orbit tracks, seed ``--seed``)
writes the GIB raster ``gib/gib_r3_c4.tif``, the albedo and the 8-band truth raster of region (3, 4)
into ``--work`` (reused when already there). Each GIB pixel is traced to its orbit track (nearest
sub-footprint of ``sub_footprints.gpkg`` -> obs_id -> track, from the observation times: one orbit
apart). The tracks are binned by their mean column into ``--block``-pixel-wide spatial blocks, and
whole blocks of whole tracks are held out (seeded) until 20 % of the observed tracks are: no
held-out pixel shares a track, or a co-added footprint, with a training pixel. Each seed of
``--splits`` draws another hold-out and trains the hybrid again: the headline is the mean RMSE over
the draws (one draw is at the mercy of which blocks it holds out; Na's whole signal is a few
hundredths of a wt%).

``--real-strips``: the simulated frames are 31 x 31 km, advancing 13.3 km (12-frame co-added strips of
177 x 31 km, the geometry of the real CLASS footprints, on which training is slowest).

``--synthetic``: the benchmark's own synthetic field
(:func:`class_qgis_plugin.superres.baselines.synthetic_region`), 20 % of the track pixels held out in
``--block`` x ``--block`` pixel blocks.

Prints per draw and averaged over the draws, per element, the RMSE (wt%) on held-out pixels against
the truth raster of the hybrid, IDW, ordinary kriging (OK) and kriging with the albedo as external
drift (KED; both krigings with PyKrige's variogram fit and every training observation in the
system, :mod:`class_qgis_plugin.superres.baselines`), the ablations of the
hybrid's classical parts alone (drift; drift + residual kriging, no network, per pixel and as the
hybrid kriges: footprint means for noise-dominated elements; ``--ablation`` adds the
network without residual kriging), the time to train + predict the region, the drift chosen per
element, which elements keep the network's correction (validated on observed pixels kept out of its
training) and the peak memory (resource.getrusage, whole process). Elements the inversion left
unconstrained have no observation: no method predicts them ("-").

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_superres.py [--tracks 72] [--threads 2] [--splits 0,1,2,3,4]
    # shorter training while experimenting (any SuperResSettings field):
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_superres.py --splits 0 --setting sweeps=1 --setting steps_per_subgraph=1
    .venv/bin/python benchmarks/bench_superres.py --synthetic --ks 16,8
"""
import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from class_qgis_plugin import geo  # noqa: E402
from class_qgis_plugin import gib as gib_mod  # noqa: E402
from class_qgis_plugin.composition import ELEMENTS  # noqa: E402
from class_qgis_plugin.progress import ConsoleProgress  # noqa: E402
from class_qgis_plugin.superres import baselines as B  # noqa: E402
from class_qgis_plugin.superres import drift as D  # noqa: E402
from class_qgis_plugin.superres import kriging as K  # noqa: E402
from class_qgis_plugin.superres import train as T  # noqa: E402
from class_qgis_plugin.superres.settings import SuperResSettings  # noqa: E402


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_files(tmp, region, seed):
    lat, lon = geo.region_grid(*region)
    west, south, east, north = geo.region_bounds(*region)
    d = B.synthetic_region(geo.REGION_ROWS, geo.REGION_COLS, lat0=north, lon0=west, seed=seed)
    obs = d["observed"]
    err = np.where(np.isfinite(obs), 0.02 * obs, np.nan)
    nobs = np.where(d["track_mask"], 1.0, np.nan)
    data = np.concatenate([np.moveaxis(obs, -1, 0), np.moveaxis(err, -1, 0), nobs[None]], axis=0)
    gib = str(gib_mod.region_path(tmp, *region))
    geo.write_geotiff(gib, data, west, north, geo.PIXEL_DLON, geo.PIXEL_DLAT,
                      band_names=list(ELEMENTS) + [e + "_err" for e in ELEMENTS] + ["n_obs"])
    return gib, d["albedo"], d["truth"]


SIM_REGION = (3, 4)     # the region the simulator writes by default


#: frames whose co-added 12-frame strips are 177 x 31 km, the real CLASS footprints' geometry
REAL_STRIPS = dict(frame_across_km=31.0, frame_along_km=31.0, frame_step_km=(177.0 - 31.0) / 11.0)


def simulated_files(work, tracks, seed, frames=None):
    """Run (or reuse) the demo chain into ``work``; returns (gib, albedo path, truth (rows, cols, 8))."""
    work = os.path.abspath(work)
    gib = str(gib_mod.region_path(os.path.join(work, "gib"), *SIM_REGION))
    albedo = os.path.join(work, "simulated", "albedo.tif")
    truth_tif = os.path.join(work, "simulated", "truth_abundance.tif")
    stamp = os.path.join(work, "bench_superres_demo.txt")
    want = f"seed={seed} tracks={tracks} frames={frames}"
    if not (os.path.isfile(stamp) and open(stamp).read() == want and os.path.isfile(gib)):
        from class_qgis_plugin.cli import run_demo
        t0 = time.perf_counter()
        r = run_demo(work, seed=seed, tracks=tracks, progress=False, frames=frames)
        albedo, truth_tif = str(r["simulation"]["albedo"]), str(r["simulation"]["truth"])
        skips = {e: n for e, n in r["gib"]["element_skips"].items() if n}
        print(f"# run_demo: {tracks} tracks, {r['n_spectra']} co-added spectra in {time.perf_counter() - t0:.1f} s; "
              f"footprints without a constrained value: {skips}")
        with open(stamp, "w") as f:
            f.write(want)
    tdata, _ = geo.read_geotiff(truth_tif)
    return gib, albedo, np.moveaxis(tdata[:8], 0, -1)


def pixel_tracks(work, lat, lon, observed):
    """Orbit track of every observed GIB pixel (-1 elsewhere): nearest sub-footprint centre ->
    obs_id -> track (observations more than 1000 s apart start a new track: one orbit is ~7000 s)."""
    from datetime import datetime

    from scipy.spatial import cKDTree

    _, fa, _ = geo.read_vector(os.path.join(work, "abundances.gpkg"))
    t = np.array([datetime.fromisoformat(str(v)).timestamp() for v in fa["t_mid"]])
    order = np.argsort(t)
    track_sorted = np.concatenate([[0], np.cumsum(np.diff(t[order]) > 1000.0)])
    track_of_obs = dict(zip(np.asarray(fa["obs_id"])[order].tolist(), track_sorted.tolist()))
    _, sa, _ = geo.read_vector(os.path.join(work, "sub_footprints.gpkg"))
    sl, so = np.asarray(sa["lat"], float), np.asarray(sa["lon"], float)
    c = np.cos(np.radians(np.mean(lat)))
    tree = cKDTree(np.stack([sl, so * c], 1))
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    _, idx = tree.query(np.stack([la[observed], lo[observed] * c], 1))
    out = np.full(observed.shape, -1, np.int64)
    out[observed] = [track_of_obs[int(o)] for o in np.asarray(sa["obs_id"])[idx]]
    return out


def track_block_holdout(tracks, block=50, fraction=0.2, seed=0):
    """Hold out whole tracks in spatial blocks: tracks binned by mean column into ``block``-pixel-wide
    bins, bins drawn in a seeded order until ``fraction`` of the tracks are held out."""
    obs = tracks >= 0
    ids = np.unique(tracks[obs])
    cols = np.nonzero(obs)[1]
    mean_col = np.array([cols[tracks[obs] == t].mean() for t in ids])
    bins = (mean_col // block).astype(int)
    ub = np.unique(bins)
    held = []
    for b in np.random.default_rng(seed).permutation(ub):
        if len(held) >= fraction * len(ids):
            break
        held.extend(ids[bins == b].tolist())
    test = obs & np.isin(tracks, held)
    return obs & ~test, test, len(held), len(ids)


def rmse(pred, truth):
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.mean((pred - truth) ** 2, axis=0))


def evaluate_split(args, extra, tmp, gib, albedo, region, truth, target, err, train, test, a_region, thr, ks):
    """Hybrid runs, baselines and classical ablations on one train/test split: (results, timings, notes)."""
    lat, lon = geo.region_grid(*region)
    ok_test = test & np.all(np.isfinite(truth), axis=-1)
    observed_el = np.isfinite(target[train]).sum(axis=0) >= SuperResSettings().min_obs
    results, timings, notes, vs_gib = {}, {}, [], {}
    runs = [(f"hybrid k={k}", dict(k=k)) for k in ks]
    if args.ablation:
        runs.append((f"net, no RK k={ks[0]}", dict(k=ks[0], residual_kriging=False)))
    for name, kw in runs:
        s = dict(seed=0, cache_dir=tmp, kriging_points=args.kriging_points, **kw, **extra)
        t0 = time.perf_counter()
        pred, support, curve = T.superresolve_region(gib, albedo, region, s, device=args.device,
                                                     progress=ConsoleProgress(name), exclude=test)
        dt = time.perf_counter() - t0
        results[name] = rmse(np.moveaxis(pred, 0, -1)[ok_test], truth[ok_test])
        vs_gib[name] = rmse(np.moveaxis(pred, 0, -1)[ok_test], target[ok_test])
        timings[name] = (dt, peak_mb(), curve[-1]["loss"], curve[-1].get("train_seconds", float("nan")))
        if "net_kept" in curve[-1]:
            notes.append(f"{name}: drift {curve[-1]['drift']}; network kept per element {curve[-1]['net_kept']}; "
                         f"validation RMSE drift+RK / drift+net+RK {curve[-1]['net_validation_rmse']}"
                         + (f"; gate probe: {curve[-1]['gate_probe']}" if "gate_probe" in curve[-1] else "")
                         + f"; {max(r['sweep'] for r in curve)} sweeps trained")

    la, lo = np.meshgrid(lat, lon, indexing="ij")
    ql, qo = la[ok_test], lo[ok_test]
    fa = np.nan_to_num(a_region, nan=float(np.nanmedian(a_region)))
    base = {n: np.full((ok_test.sum(), 8), np.nan) for n in ("IDW", "OK", "KED albedo")}
    tb = {n: 0.0 for n in base}
    for e in range(8):
        sel = train & np.isfinite(target[..., e])
        if not observed_el[e]:
            continue
        ol, oo, ov = la[sel], lo[sel], target[sel][:, e]
        t0 = time.perf_counter()
        base["IDW"][:, e] = B.idw(ol, oo, ov, ql, qo)
        t1 = time.perf_counter()
        base["OK"][:, e] = B.ordinary_kriging(ol, oo, ov, ql, qo, max_points=args.kriging_points, seed=0)
        t2 = time.perf_counter()
        base["KED albedo"][:, e] = B.kriging_albedo_drift(ol, oo, ov, fa[sel], ql, qo, fa[ok_test],
                                                          max_points=args.kriging_points, seed=0)
        t3 = time.perf_counter()
        tb["IDW"] += t1 - t0
        tb["OK"] += t2 - t1
        tb["KED albedo"] += t3 - t2
    for n, v in base.items():
        results[n] = rmse(v, truth[ok_test])
        timings[n] = tb[n]
    # ablations without training: the hybrid's classical parts alone
    mare = np.where(np.isfinite(a_region) & (a_region < thr), 1.0, 0.0)
    flat_t = target.reshape(-1, 8)
    em = (train.ravel()[:, None] & np.isfinite(flat_t)) & observed_el[None]
    pw = T.gib_pixel_weight(target, err, train).ravel()
    s_abl = SuperResSettings.from_dict(dict(seed=0, kriging_points=args.kriging_points, **extra))
    gx, gy = B._local_km(la.ravel(), lo.ravel(), float(np.mean(lat)), float(np.mean(lon)))
    drift, _, choice = D.classical_drift(la, lo, mare, a_region, flat_t, em, pw, s_abl, gx, gy)
    drift[:, ~observed_el] = np.nan
    notes.append("drift per element (" + s_abl.drift + "): "
                 + ", ".join(f"{e} {c}" for e, c, o in zip(ELEMENTS, choice, observed_el) if o))
    results["drift only"] = rmse(drift.reshape(*la.shape, 8)[ok_test], truth[ok_test])
    q = ok_test.ravel()
    rk = drift[q].copy()
    for e in np.nonzero(observed_el)[0]:
        sel = em[:, e]
        rk[:, e] += K.dual_ordinary_kriging(gx[sel], gy[sel], flat_t[sel, e] - drift[sel, e], gx[q], gy[q],
                                            max_points=args.kriging_points, nlags=s_abl.variogram_lags)
    results["drift + pixel RK"] = rmse(rk, truth[ok_test])
    vs_gib["drift + pixel RK"] = rmse(rk, target[ok_test])
    # the hybrid's own classical part: residuals of noise-dominated elements kriged as footprint means
    fg = gib_mod.footprint_groups_of_gib(gib, region)
    if fg is not None:
        fg = fg.select(train.ravel()[fg.pix])
        fk = []
        for e in np.nonzero(observed_el)[0]:
            if fg.noise_fraction(e, drift[:, e]) >= s_abl.footprint_kriging:
                rk[:, e] = drift[q, e] + K.footprint_residual_kriging(fg, e, drift[:, e], gx, gy, gx[q], gy[q], s_abl)
                fk.append(ELEMENTS[e])
        notes.append("drift + RK: kriged as footprint means: " + (", ".join(fk) or "none"))
        results["drift + RK"] = rmse(rk, truth[ok_test])
        vs_gib["drift + RK"] = rmse(rk, target[ok_test])
    vs_gib["(GIB itself)"] = rmse(target[ok_test], truth[ok_test])
    notes.append("RMSE against the held-out pixels' own GIB values instead of the truth (last row: the GIB against "
                 "the truth): " + "; ".join(f"{n} " + " ".join(f"{e} {v:.3f}" for e, v, o in zip(ELEMENTS, r, observed_el)
                                                               if o) for n, r in vs_gib.items()))
    return results, timings, notes, truth[ok_test].mean(axis=0), int(ok_test.sum())


def fmt(v):
    return f"{v:8.3f}" if np.isfinite(v) else f"{'-':>8}"


def print_table(results, mean_truth, head):
    print(f"{'method':<18}" + "".join(f"{e:>8}" for e in ELEMENTS) + f"{'rel':>8}")
    print(f"{'(truth mean)':<18}" + "".join(fmt(v) for v in mean_truth))
    for name, r in results.items():
        print(f"{name:<18}" + "".join(fmt(v) for v in r) + f"{np.nanmean(r / mean_truth):8.4f}")
    print("hybrid RMSE / baseline RMSE per element (< 1: the hybrid is better)")
    for name in ("IDW", "OK", "KED albedo"):
        ratio = results[head] / results[name]
        print(f"{name:<18}" + "".join(fmt(v) for v in ratio) + f"   max {np.nanmax(ratio):.3f}")
    wins = all(np.nanmax(results[head] / results[n]) < 1 for n in ("IDW", "OK", "KED albedo"))
    print(f"hybrid beats all three baselines on every predicted element: {wins}")
    return wins


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--simulated", action="store_true", default=True, help="the plugin's simulated data set (default)")
    mode.add_argument("--synthetic", action="store_true", help="the benchmark's own synthetic region instead")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "bench_superres_demo"),
                    help="folder of the simulated data set (reused)")
    ap.add_argument("--tracks", type=int, default=72, help="orbit tracks of the simulated data set")
    ap.add_argument("--ks", default="16", help="k values to run; the first is the headline")
    ap.add_argument("--block", type=int, default=50, help="hold-out block size in pixels")
    ap.add_argument("--seed", type=int, default=42, help="simulation seed (simulated) / field seed (synthetic)")
    ap.add_argument("--splits", default="0,1,2,3,4",
                    help="seeds of the hold-out draws; each is a full train + evaluate run, the headline is "
                         "the mean RMSE over them")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--kriging-points", type=int, default=SuperResSettings().kriging_points,
                    help="observations in every kriging system, the hybrid's residual kriging included "
                         "(a seeded subset beyond; the simulated region's training sets have about 2,400)")
    ap.add_argument("--ablation", action="store_true", help="also train without the residual kriging")
    ap.add_argument("--real-strips", action="store_true",
                    help="simulate frames whose co-added strips are 177 x 31 km, the real CLASS footprints")
    ap.add_argument("--setting", action="append", default=[], help="extra setting NAME=VALUE (python literal)")
    args = ap.parse_args()

    import ast
    import torch
    torch.set_num_threads(args.threads)
    extra = {}
    for kv in args.setting:
        k, v = kv.split("=", 1)
        extra[k] = ast.literal_eval(v)

    tmp = tempfile.mkdtemp(prefix="bench_superres_")
    splits = [int(v) for v in args.splits.split(",")]
    if args.synthetic:
        region = (3, 3)
        lat, lon = geo.region_grid(*region)
        gib, albedo, truth = synthetic_files(tmp, region, args.seed)
        target, err, nobs, _ = gib_mod.read_gib(gib)
        track = np.isfinite(nobs) & (nobs > 0) & np.any(np.isfinite(target), axis=-1)

        def split_of(seed):
            train, test = B.block_holdout(track, block=args.block, fraction=0.2, seed=seed)
            return train, test, (f"{test.sum()} of {track.sum()} observed pixels held out in "
                                 f"{args.block} x {args.block} px blocks")
        source = f"synthetic region {region} (seed {args.seed})"
    else:
        region = SIM_REGION
        lat, lon = geo.region_grid(*region)
        gib, albedo, truth = simulated_files(args.work, args.tracks, args.seed,
                                             REAL_STRIPS if args.real_strips else None)
        target, err, nobs, _ = gib_mod.read_gib(gib)
        track = np.isfinite(nobs) & (nobs > 0) & np.any(np.isfinite(target), axis=-1)
        tr = pixel_tracks(args.work, lat, lon, track)

        def split_of(seed):
            train, test, n_held, n_tr = track_block_holdout(tr, block=args.block, fraction=0.2, seed=seed)
            return train, test, (f"{n_held} of {n_tr} tracks held out whole in {args.block}-px column blocks: "
                                 f"{test.sum()} of {track.sum()} GIB pixels")
        source = f"simulated data set {gib} (seed {args.seed}, {args.tracks} tracks)"
    a_region, thr = T._albedo_on_region(albedo, lat, lon)
    if thr is None:
        from class_qgis_plugin.albedo import otsu_albedo_threshold
        thr = otsu_albedo_threshold(a_region[np.isfinite(a_region)])
    print(f"# {source}; {args.threads} torch threads, device {args.device}; hold-out draws {splits}")
    ks = [int(k) for k in args.ks.split(",")]
    head = f"hybrid k={ks[0]}"
    base_rss = peak_mb()
    per_split, all_timings = [], []
    for sd in splits:
        train, test, desc = split_of(sd)
        res, tim, notes, mean_truth, n_test = evaluate_split(args, extra, tmp, gib, albedo, region, truth, target,
                                                            err, train, test, a_region, thr, ks)
        print(f"\n## hold-out draw {sd}: {desc}; RMSE on {n_test} held-out pixels (wt%) against the truth raster; "
              "last column: mean over the predicted elements of RMSE / mean truth")
        for n in notes:
            print("# " + n)
        print_table(res, mean_truth, head)
        per_split.append((res, mean_truth))
        all_timings.append(tim)

    names = list(per_split[0][0])
    mean_res = {n: np.mean([r[n] for r, _ in per_split], axis=0) for n in names}
    mean_truth = np.mean([m for _, m in per_split], axis=0)
    print(f"\n## mean RMSE over the {len(splits)} hold-out draws {splits} (the headline)")
    wins = print_table(mean_res, mean_truth, head)
    print("draws in which the hybrid beats all three baselines, per element:")
    line = ""
    for e, name in enumerate(ELEMENTS):
        if not np.isfinite(mean_res[head][e]):
            line += f"{name} -  "
            continue
        n_win = sum(all(r[head][e] < r[b][e] for b in ("IDW", "OK", "KED albedo")) for r, _ in per_split)
        line += f"{name} {n_win}/{len(splits)}  "
    print(line)
    print("\ntraining + prediction of one 342 x 682 region (features, drift, network, residual kriging), "
          "median over the draws")
    for k in ks:
        name = f"hybrid k={k}"
        dt = np.median([t[name][0] for t in all_timings])
        tr_s = np.median([t[name][3] for t in all_timings])
        pk = max(t[name][1] for t in all_timings)
        print(f"  {name:<18} {dt:8.1f} s (network training {tr_s:.1f} s)   peak RSS {pk:8.0f} MB")
    print(f"  peak RSS before training {base_rss:.0f} MB")
    print("  baselines (all elements, median per draw): " + ", ".join(
        f"{n} {np.median([t[n] for t in all_timings]):.1f} s" for n in ("IDW", "OK", "KED albedo"))
          + f" (at most {args.kriging_points} kriging points)")
    return wins


if __name__ == "__main__":
    main()
