"""The archive run (class_qgis_plugin/archive.py) on a simulated archive: days per minute serially, on a
Dask LocalCluster of 1 and of 2 workers (same run, same days, fresh workspaces), the throughput ratio
of 2 workers to 1, and the peak memory of each worker.

    .venv/bin/python benchmarks/bench_archive.py [--days 8] [--tracks-per-day 2] [--runs 1]

Each day: co-add (96-s windows), solar fit, inversion, then the GIB from all days. The cluster's
start (about 2-4 s) is counted in the Dask figures. The seam ratio of a mosaic is not printed: there
is no mosaic yet (issue 17).
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
                  background=sim["background"], albedo=sim["albedo"], scheduler=scheduler)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=8)
    ap.add_argument("--tracks-per-day", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
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


if __name__ == "__main__":
    main()
