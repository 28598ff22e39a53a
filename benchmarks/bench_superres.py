"""Benchmark of the region super-resolution against IDW, ordinary kriging and kriging with albedo drift.

On a synthetic 342 x 682 region (default; :func:`class_qgis_plugin.superres.baselines.synthetic_region`:
a mare/highland field nonlinear in the albedo plus a smooth position trend, observed along
north-south tracks), or on the lead's simulated data set when ``--gib``, ``--albedo`` and
``--truth`` are given (truth: a raster whose bands 1-8 are the true wt% on the region grid).
20 % of the observed track pixels are held out in spatial blocks (``--block`` pixels). Prints per
element the RMSE (wt%) on held-out pixels of the hybrid, IDW, ordinary kriging (OK) and kriging
with the albedo as external drift (KED), the time to train+predict the region and the peak
memory (resource.getrusage, whole process), and the same for each smaller k of ``--ks``.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_superres.py [--threads 2] [--ks 16,8]
    .venv/bin/python benchmarks/bench_superres.py --gib gib_r2_c3.tif --albedo albedo.tif \\
        --truth truth_r2_c3.tif --region 2 3
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
from class_qgis_plugin.composition import ELEMENTS  # noqa: E402
from class_qgis_plugin.progress import ConsoleProgress  # noqa: E402
from class_qgis_plugin.superres import baselines as B  # noqa: E402
from class_qgis_plugin.superres import train as T  # noqa: E402


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
    gib = os.path.join(tmp, f"gib_r{region[0]}_c{region[1]}.tif")
    geo.write_geotiff(gib, data, west, north, geo.PIXEL_DLON, geo.PIXEL_DLAT,
                      band_names=list(ELEMENTS) + [e + "_err" for e in ELEMENTS] + ["n_obs"])
    return gib, d["albedo"], d["truth"]


def rmse(pred, truth):
    return np.sqrt(np.nanmean((pred - truth) ** 2, axis=0))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib")
    ap.add_argument("--albedo")
    ap.add_argument("--truth")
    ap.add_argument("--region", type=int, nargs=2, default=(3, 3))
    ap.add_argument("--ks", default="16,8", help="k values to run; the first is the headline")
    ap.add_argument("--block", type=int, default=50, help="hold-out block size in pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--kriging-points", type=int, default=1000)
    ap.add_argument("--setting", action="append", default=[], help="extra setting NAME=VALUE (python literal)")
    args = ap.parse_args()

    import ast
    import torch
    torch.set_num_threads(args.threads)
    extra = {}
    for kv in args.setting:
        k, v = kv.split("=", 1)
        extra[k] = ast.literal_eval(v)

    region = tuple(args.region)
    lat, lon = geo.region_grid(*region)
    tmp = tempfile.mkdtemp(prefix="bench_superres_")
    if args.gib:
        if not (args.albedo and args.truth):
            ap.error("--gib needs --albedo and --truth")
        gib, albedo = args.gib, args.albedo
        tdata, _ = geo.read_geotiff(args.truth)
        truth = np.moveaxis(tdata[:8], 0, -1)
        source = f"simulated data set {args.gib}"
    else:
        gib, albedo, truth = synthetic_files(tmp, region, args.seed)
        source = f"synthetic region {region} (seed {args.seed})"
    target, _err, nobs, _ = T.read_gib(gib)
    track = np.isfinite(nobs) & (nobs > 0) & np.all(np.isfinite(target), axis=-1)
    train, test = B.block_holdout(track, block=args.block, fraction=0.2, seed=args.seed)
    a_region, _ = T._albedo_on_region(albedo, lat, lon)
    print(f"# {source}; {track.sum()} observed pixels ({100 * track.mean():.1f} % of the region), "
          f"{test.sum()} held out in {args.block} x {args.block} px blocks; {args.threads} torch threads, "
          f"device {args.device}")
    ok_test = test & np.all(np.isfinite(truth), axis=-1)

    results = {}
    timings = {}
    ks = [int(k) for k in args.ks.split(",")]
    base_rss = peak_mb()
    for k in ks:
        s = dict(k=k, seed=args.seed, cache_dir=tmp, **extra)
        t0 = time.perf_counter()
        pred, support, curve = T.superresolve_region(gib, albedo, region, s, device=args.device,
                                                     progress=ConsoleProgress(f"k={k}"), exclude=test)
        dt = time.perf_counter() - t0
        results[f"hybrid k={k}"] = rmse(np.moveaxis(pred, 0, -1)[ok_test], truth[ok_test])
        timings[k] = (dt, peak_mb(), curve[-1]["loss"])
    hybrid_peak = peak_mb()

    la, lo = np.meshgrid(lat, lon, indexing="ij")
    ol, oo, ov = la[train], lo[train], target[train]
    ql, qo = la[ok_test], lo[ok_test]
    t0 = time.perf_counter()
    results["IDW"] = rmse(B.idw(ol, oo, ov, ql, qo), truth[ok_test])
    t_idw = time.perf_counter() - t0
    t0 = time.perf_counter()
    results["OK"] = rmse(B.ordinary_kriging(ol, oo, ov, ql, qo, max_points=args.kriging_points, seed=args.seed),
                         truth[ok_test])
    t_ok = time.perf_counter() - t0
    t0 = time.perf_counter()
    fa = np.nan_to_num(a_region, nan=float(np.nanmedian(a_region)))
    results["KED albedo"] = rmse(B.kriging_albedo_drift(ol, oo, ov, fa[train], ql, qo, fa[ok_test],
                                                        max_points=args.kriging_points, seed=args.seed),
                                 truth[ok_test])
    t_ked = time.perf_counter() - t0

    mean_truth = truth[ok_test].mean(axis=0)
    print("\nRMSE on held-out pixels (wt%); last column: mean over elements of RMSE / mean truth")
    print(f"{'method':<14}" + "".join(f"{e:>8}" for e in ELEMENTS) + f"{'rel':>8}")
    for name, r in results.items():
        print(f"{name:<14}" + "".join(f"{v:8.3f}" for v in r) + f"{np.mean(r / mean_truth):8.4f}")
    head = results[f"hybrid k={ks[0]}"]
    print("\nhybrid RMSE / baseline RMSE per element (< 1: the hybrid is better)")
    for name in ("IDW", "OK", "KED albedo"):
        ratio = head / results[name]
        print(f"{name:<14}" + "".join(f"{v:8.3f}" for v in ratio) + f"   median {np.median(ratio):.3f}")
    print("\ntraining + prediction of one 342 x 682 region (features included)")
    for k in ks:
        dt, pk, loss = timings[k]
        print(f"  k={k:<4} {dt:8.1f} s   peak RSS {pk:8.0f} MB   final loss {loss:.4g}")
    print(f"  peak RSS before training {base_rss:.0f} MB, after all hybrid runs {hybrid_peak:.0f} MB")
    print(f"  baselines: IDW {t_idw:.1f} s, OK {t_ok:.1f} s, KED {t_ked:.1f} s "
          f"({args.kriging_points} kriging points)")


if __name__ == "__main__":
    main()
