"""The archive run (class_qgis_plugin/archive.py) on simulated archives.

    .venv/bin/python benchmarks/bench_archive.py [--days 8] [--tracks-per-day 2] [--runs 1]
                                                 [--tracks 24] [--training fast|default] [--no-mosaic]

1. Throughput: days per minute serially and on a Dask LocalCluster of 1 and of 2 workers (same run,
   same days, fresh workspaces), the ratio of 2 workers to 1, and the peak memory of each worker
   process. Each day: co-add (96-s windows), solar fit, inversion, then the GIB from all days (no
   super-resolution here). The cluster's start (about 2-4 s) is counted in the Dask figures.
2. The mosaic: one simulated surface over two neighbouring regions, through the archive with
   super-resolution, for the regions mapped alone and tiled (halo 0), with the halo and cross-fade
   (halo 32 and 64, the default), and with the halo but the kriging as an exact interpolator (``kriging_nugget`` off).
   Per element: the seam ratio (mean step across the border / mean step between neighbouring pixels
   inside the regions; the truth's own ratio beside it), the dot ratio (mean |value - mean of the
   pixels 2 px away| at observed pixels over the same at unobserved ones: above 1, observed pixels
   stand out as dots) and the RMSE against the truth. ``--training fast`` (default) trains one sweep
   of small subgraphs; ``default`` uses the super-resolution's defaults (minutes per region).
"""
import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from class_qgis_plugin import archive, tasks  # noqa: E402
from class_qgis_plugin.superres.settings import FAST_TRAINING  # noqa: E402


def _peak_mb():
    """This process's peak resident memory (VmHWM: since its own start; ru_maxrss would carry the
    parent's peak over the exec of a spawned worker)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(sim, ws, scheduler, workers):
    params = dict(inputs=[sim["frames"]], xsm=sim["xsm"], workspace=str(ws), rmf=sim["rmf"], arf=sim["arf"],
                  background=sim["background"], albedo=sim["albedo"], scheduler=scheduler, superres=False)
    t0 = time.perf_counter()
    if scheduler == "serial":
        summary = tasks.run("archive", params)
        return time.perf_counter() - t0, summary, [_peak_mb()]
    client = archive.dask_client("", workers=workers)
    try:
        summary = tasks.run("archive", dict(params, scheduler=client.scheduler.address))
        dt = time.perf_counter() - t0
        peaks = sorted(client.run(_peak_mb).values())
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    return dt, summary, peaks




def _dot_ratio(band, observed):
    """Mean |v - mean of the 4 pixels 2 px away| at observed pixels over the same at unobserved ones."""
    v = band.astype(np.float64)
    nb = np.full_like(v, np.nan)
    nb[2:-2, 2:-2] = 0.25 * (v[:-4, 2:-2] + v[4:, 2:-2] + v[2:-2, :-4] + v[2:-2, 4:])
    d = np.abs(v - nb)
    a, b = d[observed & np.isfinite(d)], d[~observed & np.isfinite(d)]
    return float(a.mean() / b.mean()) if a.size and b.size and b.mean() > 0 else float("nan")


def mosaic_figures(tmp, tracks, training):
    from class_qgis_plugin import geo, mosaic
    from class_qgis_plugin.choices import ELEMENTS
    from class_qgis_plugin.gib import read_gib, region_path
    sim = tasks.run("simulate", folder=tmp / "sim2", tracks=tracks, regions_across=2, flare_classes=("B", "C", "M"))
    truth, _ = geo.read_geotiff(sim["truth"])
    regions = [(3, 4), (3, 5)]
    cols = np.arange(4 * geo.REGION_COLS, 6 * geo.REGION_COLS)
    win = (3 * geo.REGION_ROWS, 4 * geo.REGION_ROWS, cols)
    t_seam = mosaic.seam_ratios(truth, win, regions)
    from class_qgis_plugin.choices import MOSAIC_HALO_PX as H
    variants = (("tiled, no halo", 0, {}), ("halo 32 + cross-fade", 32, {}), (f"halo {H} + cross-fade", H, {}),
                (f"halo {H}, exact kriging", H, {"kriging_nugget": False}))
    print(f"\nMosaic of 2 neighbouring regions ({sim['n_frames']} frames, training {training}):")
    rows = []
    for name, halo, extra in variants:
        ws = tmp / f"mosaic_{halo}_{len(extra)}"
        t0 = time.perf_counter()
        base = FAST_TRAINING if training == "fast" else {}
        s = tasks.run("archive", dict(inputs=[sim["frames"]], xsm=sim["xsm"], workspace=str(ws), rmf=sim["rmf"],
                                      arf=sim["arf"], background=sim["background"], albedo=sim["albedo"],
                                      scheduler="serial", halo_px=halo, training=dict(base, **extra)))
        dt = time.perf_counter() - t0
        m = mosaic.Mosaic()
        for k in ("r3_c4", "r3_c5"):
            with np.load(ws / "superres" / f"halo_{k}.npz") as z:
                m.add(dict(prediction=z["prediction"], r0=int(z["r0"]), c0=int(z["c0"]), halo=int(z["halo"]),
                           region=tuple(int(v) for v in z["region"])))
        value, w = m.value()
        where = np.searchsorted(w[2], cols)
        inner = value[:, win[0] - w[0]:win[1] - w[0], where]
        observed = np.concatenate([read_gib(region_path(ws / "gib", *r))[2] > 0 for r in regions], axis=1)
        rmse = np.sqrt(np.nanmean((inner - truth) ** 2, axis=(1, 2)))
        dots = [_dot_ratio(inner[e], observed) for e in range(len(ELEMENTS))]
        rows.append((name, dt, s["seam_ratio"], dots, rmse))
    print(f"{'element':>8} {'truth':>6} " + " ".join(f"{n:>32}" for n, *_ in rows))
    print(f"{'':>8} {'seam':>6} " + " ".join(f"{'seam / dots / RMSE wt%':>32}" for _ in rows))
    for e, el in enumerate(ELEMENTS):
        cells = [f"{r[2][el]:8.2f} / {r[3][e]:5.2f} / {r[4][e]:6.3f}" for r in rows]
        print(f"{el:>8} {t_seam[el]:6.2f} " + " ".join(f"{c:>32}" for c in cells))
    print("seconds per variant (both regions, days included): " + ", ".join(f"{n} {dt:.0f}" for n, dt, *_ in rows))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=8)
    ap.add_argument("--tracks-per-day", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--tracks", type=int, default=24, help="tracks over the two regions of the mosaic part")
    ap.add_argument("--training", choices=("fast", "default"), default="fast")
    ap.add_argument("--no-mosaic", action="store_true")
    ap.add_argument("--mosaic-only", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.mosaic_only:
            return mosaic_figures(tmp, args.tracks, args.training)
        sim = tasks.run("simulate", folder=tmp / "sim", tracks=args.days * args.tracks_per_day,
                        track_gap_s=86400.0 / args.tracks_per_day, flare_classes=("B", "C", "M"))
        n_days = len(archive.find_days([sim["frames"]]))
        print(f"simulated archive: {n_days} days, {sim['n_frames']} 8-s frames; machine: {os.cpu_count()} cores")
        times = {"serial": [], "1 worker": [], "2 workers": []}
        peaks = {}
        for r in range(args.runs):
            for name, (sched, w) in (("serial", ("serial", 0)), ("1 worker", ("", 1)), ("2 workers", ("", 2))):
                dt, summary, pk = run(sim, tmp / f"ws_{r}_{name.replace(' ', '_')}", sched, w)
                assert len(summary["ran"]) == n_days and not summary["failed"], summary
                times[name].append(dt)
                peaks[name] = pk
        print(f"{'':>10} {'seconds':>8} {'days/min':>9} peak memory per process (MB)")
        for name, t in times.items():
            med = float(np.median(t))
            print(f"{name:>10} {med:8.1f} {60 * n_days / med:9.1f} " + ", ".join(f"{x:.0f}" for x in peaks[name]))
        ratio = np.median(times["1 worker"]) / np.median(times["2 workers"])
        print(f"throughput 2 workers / 1 worker: {ratio:.2f} (median of {args.runs})")
        if not args.no_mosaic:
            mosaic_figures(tmp, args.tracks, args.training)


if __name__ == "__main__":
    main()
