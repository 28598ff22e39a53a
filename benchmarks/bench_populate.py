"""Track population: exact solver vs the paper's gradient-descent Lagrangian, speed, loss, accuracy.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_populate.py [--footprints 2000] [--seed 0]

Prints, from one run on this machine:
1. footprints populated per second by the exact batched solver and by the gradient-descent
   baseline (80 epochs, lambda 1, mu 2), batched and one footprint at a time (the paper reports
   0.167 s per footprint), and their losses side by side (loss ||C - D||^2, mass-balance violation,
   most negative sub-footprint value, exact-penalty merit);
2. a synthetic field (a mare/highland albedo pattern, truth abundances from the priors with a
   smooth variation, footprints holding their mean truth plus noise): the RMSE of populated
   sub-footprints vs truth, against giving every sub-footprint its footprint's own value.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from class_qgis_plugin import geo  # noqa: E402
from class_qgis_plugin.albedo import AlbedoMap  # noqa: E402
from class_qgis_plugin.composition import ELEMENTS, HIGHLAND_WT, MARE_WT  # noqa: E402
from class_qgis_plugin.population import (constraint_violation, exact_penalty_merit,  # noqa: E402
                                          gradient_descent_population, populate_footprints,
                                          population_loss, solve_population, split_footprint,
                                          strip_corners)


def _median_time(fn, repeats=5):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), out


def solver_benchmark(n_fp, rng):
    n = 8
    mare = rng.random((n_fp, n)) < rng.uniform(0, 1, (n_fp, 1))
    D = np.where(mare[:, None, :], MARE_WT[None, :, None], HIGHLAND_WT[None, :, None])
    # footprint values: a mixture of the priors, perturbed by 15 % (some rows clamp at zero)
    f = mare.mean(axis=1, keepdims=True)
    a = (f * MARE_WT + (1 - f) * HIGHLAND_WT) * rng.lognormal(0.0, 0.15, (n_fp, 8))
    te, (C, _) = _median_time(lambda: solve_population(a, D))
    tg, G = _median_time(lambda: gradient_descent_population(a, D), repeats=3)
    k1 = min(50, n_fp)
    t1, _ = _median_time(lambda: [gradient_descent_population(a[i:i + 1], D[i:i + 1]) for i in range(k1)],
                         repeats=3)
    t1e, _ = _median_time(lambda: [solve_population(a[i:i + 1], D[i:i + 1]) for i in range(k1)], repeats=3)
    print(f"== solver: {n_fp} footprints x 8 sub-footprints x 8 elements (one CPU thread)")
    print(f"{'':34s}{'exact':>14s}{'gradient descent':>18s}{'ratio':>10s}")
    print(f"{'batched, footprints / s':34s}{n_fp / te:14.0f}{n_fp / tg:18.0f}{tg / te:10.1f}")
    print(f"{'one at a time, s / footprint':34s}{t1e / k1:14.2e}{t1 / k1:18.2e}{t1 / t1e:10.1f}"
          "   (paper: 0.167 s / footprint)")
    for name, X in (("exact", C), ("gradient descent", G)):
        eq, neg = constraint_violation(X, a)
        loss = population_loss(X, D)
        merit = exact_penalty_merit(X, a, D)
        print(f"{name:18s} loss median {np.median(loss):9.3f}  max |mean - a| median {np.median(eq):.2e}"
              f" max {eq.max():.2e}  most negative {neg.min():.2e}  merit median {np.median(merit):10.3f}")
    le, lg = population_loss(C, D), population_loss(G, D)
    me, mg = exact_penalty_merit(C, a, D), exact_penalty_merit(G, a, D)
    print(f"merit exact <= merit GD on {np.mean(me <= mg + 1e-9) * 100:.1f} % of footprints; "
          f"loss GD / exact median {np.median(lg / le):.3f} (GD buys a lower loss only by breaking "
          "the mass balance)")
    for lr in (0.002, 0.01, 0.05, 0.2):
        Gl = gradient_descent_population(a, D, lr=lr)
        eq, neg = constraint_violation(Gl, a)
        print(f"  GD lr={lr:<5}: median |mean - a| {np.median(eq):.3f} wt%, median merit / exact "
              f"{np.median(exact_penalty_merit(Gl, a, D) / me):.1f}, RMS distance to exact "
              f"{np.sqrt(np.nanmean((Gl - C) ** 2)):.3f} wt%")


def _smooth_field(rng, lat, lon, n_blobs, scale_deg):
    """Sum of Gaussian blobs of random sign on lon/lat (a smooth random field, ~unit amplitude)."""
    cl = rng.uniform(lat.min(), lat.max(), n_blobs)
    co = rng.uniform(lon.min(), lon.max(), n_blobs)
    amp = rng.normal(0, 1, n_blobs)
    d2 = (lat[..., None] - cl) ** 2 + ((lon[..., None] - co) * np.cos(np.radians(lat[..., None]))) ** 2
    return np.sum(amp * np.exp(-d2 / (2 * scale_deg ** 2)), axis=-1)


def field_benchmark(n_fp, rng, noise=0.03, variation=0.08):
    west, north, res = 0.0, 10.0, 0.02
    rows, cols = int(20 / res), int(40 / res)
    lat = north - (np.arange(rows) + 0.5) * res
    lon = west + (np.arange(cols) + 0.5) * res
    LA, LO = np.meshgrid(lat, lon, indexing="ij")
    # mare/highland pattern: a smooth field of ~1.5 deg (45 km) blobs; mare where it is high
    pat = _smooth_field(rng, LA[::5, ::5], LO[::5, ::5], 400, 0.5)    # on a 0.1 deg grid
    pat = np.repeat(np.repeat(pat, 5, axis=0), 5, axis=1)
    mare_map = pat > np.quantile(pat, 0.6)
    albedo = np.where(mare_map, 0.07, 0.25) * np.exp(rng.normal(0, 0.05, mare_map.shape))
    amap = AlbedoMap(albedo, west, north, res, res)
    # truth: the class prior scaled by a smooth per-element variation of `variation` (relative)
    var = np.stack([_smooth_field(rng, LA[::5, ::5], LO[::5, ::5], 300, 0.3) for _ in ELEMENTS])
    var = variation * var / var.std(axis=(1, 2), keepdims=True)

    def truth(la, lo):
        r = np.clip(((north - la) / res).astype(int), 0, rows - 1)
        c = np.clip(((lo - west) / res).astype(int), 0, cols - 1)
        prior = np.where(mare_map[r, c][..., None], MARE_WT, HIGHLAND_WT)
        v = var[:, r // 5, c // 5]
        return prior * (1.0 + np.moveaxis(v, 0, -1))

    centres_lat = rng.uniform(-8.0, 8.0, n_fp)
    centres_lon = rng.uniform(3.0, 37.0, n_fp)
    geoms, sub_truth, fp_vals = [], [], []
    for la, lo in zip(centres_lat, centres_lon):
        g = geo.footprint_polygon(*strip_corners(la, lo, 100.0, 12.5, rng.uniform(-10, 10)))
        sp = split_footprint(g)
        t = truth(np.nan_to_num(sp.sample_lat, nan=la), np.nan_to_num(sp.sample_lon, nan=lo))
        inside = np.isfinite(sp.sample_lat)[..., None]
        st = np.sum(np.where(inside, t, 0), axis=1) / inside.sum(axis=1)        # (n, 8)
        geoms.append(g)
        sub_truth.append(st)
        fp_vals.append(np.sum(st * sp.area_km2[:, None], axis=0) / sp.area_km2.sum())
    fp_vals = np.array(fp_vals)
    sigma = noise * fp_vals
    measured = fp_vals + rng.normal(0, 1, fp_vals.shape) * sigma
    t0 = time.perf_counter()
    res_ = populate_footprints(geoms, measured, sigma, None, amap, MARE_WT, HIGHLAND_WT, ELEMENTS)
    t_pop = time.perf_counter() - t0
    truth_subs = np.concatenate([sub_truth[i] for i in np.unique(res_.footprint)])
    flat = measured[res_.footprint]
    # the baseline's sub-footprints on the same classes
    n_max = res_.n_sub.max()
    F = np.unique(res_.footprint)
    D = np.zeros((len(F), 8, n_max))
    mask = np.zeros((len(F), n_max), bool)
    pos = np.searchsorted(F, res_.footprint)
    D[pos, :, res_.sub] = np.where(res_.mare[:, None] == 1, MARE_WT, HIGHLAND_WT)
    mask[pos, res_.sub] = True
    G = gradient_descent_population(measured[F], D, mask)
    gd = np.transpose(G, (0, 2, 1))[pos, res_.sub]
    rm = lambda x: np.sqrt(np.mean((x - truth_subs) ** 2, axis=0))  # noqa: E731
    r_pop, r_flat, r_gd = rm(res_.value), rm(flat), rm(gd)
    print(f"\n== synthetic field: {n_fp} footprints (12.5 x 100 km), {len(res_.lat)} sub-footprints, "
          f"{len(res_.skipped)} skipped; mare {mare_map.mean() * 100:.0f} % of the area; truth = prior x "
          f"(1 + {variation:.0%} smooth variation); footprint noise {noise:.0%}; "
          f"whole population step {t_pop:.2f} s ({n_fp / t_pop:.0f} footprints/s incl. geometry)")
    print(f"{'RMSE wt%':10s}" + "".join(f"{e:>8s}" for e in ELEMENTS) + f"{'median ratio':>14s}")
    print(f"{'flat':10s}" + "".join(f"{v:8.3f}" for v in r_flat))
    print(f"{'exact':10s}" + "".join(f"{v:8.3f}" for v in r_pop) + f"{np.median(r_pop / r_flat):14.3f}")
    print(f"{'GD':10s}" + "".join(f"{v:8.3f}" for v in r_gd) + f"{np.median(r_gd / r_flat):14.3f}")
    print("(flat = every sub-footprint given its footprint's value; ratio = RMSE / flat RMSE)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--footprints", type=int, default=2000)
    ap.add_argument("--field-footprints", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    solver_benchmark(args.footprints, rng)
    field_benchmark(args.field_footprints, rng)


if __name__ == "__main__":
    main()
