"""Track population on the simulate algorithm's data set: populated sub-footprints vs the truth.

Run:  .venv/bin/python benchmarks/bench_populate_simulated.py [--tracks 24] [--seed 42]

Runs the embedded default chain (simulate -> co-add -> solar fit -> invert -> populate) and
compares, for every populated sub-footprint, the truth (mean of the truth raster over the 12.5 km
square of the sub-footprint) with (a) the populated value and (b) the footprint's own value given to
every sub-footprint ("flat"). Prints the RMSE per element and the ratio.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from class_qgis_plugin import composition, evaluate, geo  # noqa: E402
from class_qgis_plugin.cli import run_demo  # noqa: E402


def populated_vs_flat(out_dir, demo):
    """RMSE tables (dict element -> (populated, flat)) on the demo's outputs."""
    pts_g, pts, _ = geo.read_vector(os.path.join(out_dir, "sub_footprints.gpkg"))
    _, fp, _ = geo.read_vector(demo["layer"])
    truth, meta = geo.read_geotiff(demo["simulation"]["truth"])
    t_sub = evaluate.square_truth(truth, meta, pts["lat"], pts["lon"], 12.5)
    row_of = {int(o): i for i, o in enumerate(fp["obs_id"])}
    rows = np.array([row_of[int(o)] for o in pts["obs_id"]])
    out = {}
    for k, el in enumerate(composition.ELEMENTS):
        pop = np.asarray(pts[el], float)
        flat = np.asarray(fp[el], float)[rows]
        ok = np.isfinite(pop) & np.isfinite(t_sub[:, k]) & (np.asarray(fp[f"{el}_ok"])[rows] == 1)
        if ok.sum() == 0:
            continue
        out[el] = (evaluate.rmse(pop[ok], t_sub[ok, k]), evaluate.rmse(flat[ok], t_sub[ok, k]), int(ok.sum()))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=24)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        demo = run_demo(tmp, seed=args.seed, tracks=args.tracks, progress=False)
        table = populated_vs_flat(tmp, demo)
    print(f"simulated default: seed {args.seed}, {args.tracks} tracks, {demo['n_spectra']} footprints, "
          f"{demo['gib']['sub_footprints']} sub-footprints")
    print(f"{'element':>8} {'n':>6} {'RMSE populated':>15} {'RMSE flat':>10} {'ratio':>6}")
    ratios = []
    for el, (p, f, n) in table.items():
        ratios.append(p / f)
        print(f"{el:>8} {n:6d} {p:15.3f} {f:10.3f} {p / f:6.2f}")
    print(f"median ratio populated/flat: {np.median(ratios):.2f}")


if __name__ == "__main__":
    main()
