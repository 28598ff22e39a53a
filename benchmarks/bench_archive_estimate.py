"""How long would the mission archive take on this machine? Each stage timed on one fixed synthetic
day, beside the same stages of a baseline revision, in the same run.

Run:  .venv/bin/python benchmarks/bench_archive_estimate.py [--runs 3] [--baseline b3bf64d]

* The day: ``classxrf:simulate`` (seed 42, 24 tracks: the demo's day, 1,907 8-s frames), made once
  and read by both revisions.
* Each revision runs in its own process (current and baseline in turn, ``--runs`` times each, the
  median quoted): the stages through :func:`class_qgis_plugin.tasks.run` as the Toolbox and the
  command line run them (files read and written): co-add (window 12, stride 12: 130 spectra),
  inversion of those spectra (each with the solar spectrum of its observation), population of
  the GIB; the solar fit on 240 96-s XSM windows drawn (Poisson, fixed seed) from the day's XSM
  spectra, one fit per window as the archive needs (``solarfit.fit_spectra``).
* The baseline is a git worktree of ``--baseline`` (default b3bf64d, the code before the speed
  work of issue 16), removed afterwards.
* The archive: 10^7 8-s frames, 10^6 co-added 96-s spectra (10^6 solar fits, 10^6 inversions,
  10^6 footprints populated). Hours = count / rate, stage by stage, per machine (all cores).
* The model's accuracy as the inversion builds it: the summed |counts difference| in the 0.9-4.2 keV
  channels between the inversion's model (:func:`invert.inversion_model`: its grid, float32) and the 0.01 keV grid of the
  simulation, relative to the total, for B, C and M flare spectra, and the same for a uniform
  0.05 keV grid.
* Small linear systems (the fit's Levenberg-Marquardt steps): the batched Cholesky of
  :func:`fitkernel.spd_solve` against ``numpy.linalg.solve`` (LAPACK), ms per batch.

* ``--memory N``: the peak memory (and rate) of inverting N spectra (the day's tiled), streamed in
  blocks of 4,096 (:data:`invert.STREAM_BLOCK`) and in one block, each in its own process.

Super-resolution is not timed here (minutes per region: ``benchmarks/bench_superres.py``).
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = dict(coadd=1e7, solarfit=1e6, invert=1e6, populate=1e6)
UNITS = dict(coadd="8-s files", solarfit="96-s windows", invert="96-s spectra", populate="footprints")


def child(root, sim, work):
    """One revision's stage timings on the day ``sim`` (a dict of paths) -> dict."""
    sys.path.insert(0, str(root))
    from dataclasses import replace

    from class_qgis_plugin import tasks
    from class_qgis_plugin.solarfit import fit_spectra
    from class_qgis_plugin.xsm import load_response, read_xsm_pha

    work = Path(work)
    out = {}

    def timed(name, count, **params):
        t0 = time.perf_counter()
        r = tasks.run(name, params)
        out[name] = dict(seconds=time.perf_counter() - t0, count=count(r) if callable(count) else count)
        return r

    co = timed("coadd", sim["n_frames"], inputs=[sim["frames"]], out_folder=work / "coadded",
               out_layer=work / "obs.gpkg", window=12, stride=12, rmf=sim["rmf"], arf=sim["arf"],
               background=sim["background"])
    sol = tasks.run("solarfit", dict(layer=work / "obs.gpkg", xsm=sim["xsm"], out_folder=work / "solar",
                                     out_layer=work / "obs_solar.gpkg"))
    timed("invert", co["n_spectra"], layer=sol["layer"], out_layer=work / "abund.gpkg", rmf=sim["rmf"],
          arf=sim["arf"], background=sim["background"], fit_norm=False)
    timed("populate", co["n_spectra"], layer=work / "abund.gpkg", albedo=sim["albedo"], gib_folder=work / "gib",
          points_output=work / "points.gpkg")
    # the solar fit, one fit per 96-s window
    rng = np.random.default_rng(11)
    days = [read_xsm_pha(p) for p in sorted(Path(sim["xsm"]).glob("*.pha"))]
    windows = []
    for k in range(240):
        s = days[k % len(days)]
        lam = np.asarray(s.counts, float) * 96.0 / s.exposure
        windows.append(replace(s, counts=rng.poisson(lam).astype(float), exposure=96.0))
    responses = [load_response(w) for w in windows]
    t0 = time.perf_counter()
    res = fit_spectra(windows, responses)
    out["solarfit"] = dict(seconds=time.perf_counter() - t0, count=len(windows),
                           converged=float(np.mean([r.converged for r in res])),
                           T_median=float(np.median([r.T_MK for r in res])))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def memory_child(sim, layer, n, block):
    """Invert ``n`` rows (the day's layer tiled) in blocks of ``block`` (0: one block) -> seconds, peak MB."""
    sys.path.insert(0, str(ROOT))
    from class_qgis_plugin import obslayer
    from class_qgis_plugin.invert import invert_observations
    _, attrs = obslayer.read(layer, "invert")
    rows = np.arange(n) % len(attrs["pha_path"])
    tiled = {k: np.asarray(v)[rows] for k, v in attrs.items()}
    tiled["obs_id"] = np.arange(1, n + 1)
    t0 = time.perf_counter()
    cols, _ = invert_observations(tiled, sim["rmf"], sim["arf"], sim["background"], fit_norm=False,
                                  base=os.path.dirname(layer), block=block or None)
    return dict(seconds=time.perf_counter() - t0, n=n, fitted=int((cols["fit_flag"] == 0).sum()),
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def memory(tmp, sim, n):
    """Peak memory of inverting ``n`` spectra streamed in blocks against all in one block (children)."""
    sys.path.insert(0, str(ROOT))
    from class_qgis_plugin import tasks
    work = tmp / "memory"
    tasks.run("coadd", dict(inputs=[sim["frames"]], out_folder=work / "coadded", out_layer=work / "obs.gpkg",
                            window=12, stride=12, rmf=sim["rmf"], arf=sim["arf"], background=sim["background"]))
    tasks.run("solarfit", dict(layer=work / "obs.gpkg", xsm=sim["xsm"], out_folder=work / "solar",
                               out_layer=work / "obs_solar.gpkg"))
    print(f"\nMemory: {n} 96-s spectra (the day's 130 tiled), each with its solar spectrum, invert_observations:")
    for block in (4096, 0):
        p = subprocess.run([sys.executable, __file__, "--memory-child", str(tmp / "sim.json"),
                            str(work / "obs_solar.gpkg"), str(n), str(block)], capture_output=True, text=True)
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if not line:
            print(f"  block {block or 'all'}: failed {p.stderr[-1500:]}")
            continue
        r = json.loads(line[0][7:])
        print(f"  {'blocks of ' + str(block) if block else 'one block':>16}: {r['n'] / r['seconds']:7.1f} spectra/s, "
              f"{r['fitted']} fitted, peak memory {r['peak_rss_mb']:7.0f} MB")


def grid_accuracy():
    """Relative summed |counts difference| in 0.9-4.2 keV of the inversion grid and of a uniform
    0.05 keV grid against the 0.01 keV grid, for B, C and M flare continua."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_invert import DATA, FLARES, flare_spectrum

    from class_qgis_plugin.composition import HIGHLAND_WT, MARE_WT
    from class_qgis_plugin.fpmodel import ForwardModel
    from class_qgis_plugin.invert import inversion_model
    from class_qgis_plugin.ogip import read_arf, read_rmf
    rmf_p = DATA / "class" / "response" / "class_rmf_v1_2048ch.rmf"
    if not rmf_p.exists():
        return None
    rmf, arf = read_rmf(rmf_p), read_arf(DATA / "class" / "response" / "class_arf_v1.arf")
    energy = np.arange(0.1, 30.1, 0.01)
    W = np.tile(0.5 * (MARE_WT + HIGHLAND_WT) / 100, (4, 1))
    W /= W.sum(axis=1, keepdims=True)
    out = {}
    for cls, (t, g) in FLARES.items():
        flux = flare_spectrum(energy, t, g)
        ref_fm = ForwardModel(rmf, arf, energy, flux)
        ref = ref_fm.counts(W, [10, 30, 50, 60], [0, 1, 2, 3], 96.0)
        m = ref_fm.response.channel_mask(0.9, 4.2)
        row = {}
        for label, fm in (("inversion model (grid + float32)", inversion_model(rmf, arf, energy, flux)),
                          ("0.05 keV", ForwardModel(rmf, arf, energy, flux, grid_step_keV=0.05))):
            c = fm.counts(W, [10, 30, 50, 60], [0, 1, 2, 3], 96.0)
            row[label] = (float(np.abs(c[:, m] - ref[:, m]).sum() / ref[:, m].sum()), int(fm.energy.size))
        row["0.01 keV"] = (0.0, int(ref_fm.energy.size))
        out[cls] = row
    return out


def solve_timing(reps=200):
    """ms per batch of the batched Cholesky and of LAPACK for the fits' system sizes."""
    sys.path.insert(0, str(ROOT))
    from class_qgis_plugin.fitkernel import spd_solve
    rng = np.random.default_rng(0)
    rows = []
    for n, p in ((128, 8), (80, 14)):
        X = rng.normal(size=(n, p + 3, p))
        A, b = X.transpose(0, 2, 1) @ X + np.eye(p), rng.normal(size=(n, p))
        ts = {}
        for name, fn in (("cholesky", lambda: spd_solve(A, b)), ("lapack", lambda: np.linalg.solve(A, b[..., None]))):
            fn()
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            ts[name] = (time.perf_counter() - t0) / reps * 1e3
        rows.append((n, p, ts["cholesky"], ts["lapack"]))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline", default="b3bf64d", help="git revision to compare with ('' for none)")
    ap.add_argument("--memory", type=int, default=0, help="also measure the peak memory of inverting this many "
                    "spectra, streamed in blocks and in one block (10^5: several minutes)")
    ap.add_argument("--child", nargs=3, metavar=("ROOT", "SIM_JSON", "WORK"), help=argparse.SUPPRESS)
    ap.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        sim_json, layer, n, block = args.memory_child
        print("RESULT " + json.dumps(memory_child(json.loads(Path(sim_json).read_text()), layer, int(n), int(block))))
        return
    if args.child:
        root, sim_json, work = args.child
        print("RESULT " + json.dumps(child(root, json.loads(Path(sim_json).read_text()), work)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="archive_estimate_"))
    base_root = None
    try:
        sys.path.insert(0, str(ROOT))
        from class_qgis_plugin import tasks
        print(f"machine: {os.cpu_count()} cores; CLASSXRF_THREADS={os.environ.get('CLASSXRF_THREADS', 'unset')}")
        sim = tasks.run("simulate", dict(folder=tmp / "day", seed=42, tracks=24))
        (tmp / "sim.json").write_text(json.dumps({k: str(v) if not isinstance(v, (int, float)) else v
                                                  for k, v in sim.items()}))
        roots = {"current": ROOT}
        if args.baseline:
            base_root = tmp / "baseline"
            got = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_root), args.baseline],
                                 capture_output=True, text=True)
            if got.returncode == 0:
                roots["baseline"] = base_root
            else:
                print(f"baseline {args.baseline}: not available ({got.stderr.strip()[:200]})")
                base_root = None
        results = {k: [] for k in roots}
        for run in range(args.runs):
            for name, root in roots.items():
                work = tmp / f"{name}_{run}"
                work.mkdir()
                p = subprocess.run([sys.executable, __file__, "--child", str(root), str(tmp / "sim.json"), str(work)],
                                   capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(root)))
                line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
                if p.returncode != 0 or not line:
                    print(f"{name} run {run}: failed\n{p.stderr[-2000:]}")
                    continue
                results[name].append(json.loads(line[0][7:]))
                shutil.rmtree(work, ignore_errors=True)

        def rate(name, stage):
            rs = [r[stage]["count"] / r[stage]["seconds"] for r in results.get(name, [])]
            return float(np.median(rs)) if rs else float("nan")

        print(f"\nOne synthetic day ({sim['n_frames']} 8-s frames), median of {args.runs} runs per revision, "
              f"stages as tasks.run runs them (files read and written):")
        print(f"{'stage':>9} {'unit':>13} {'current/s':>10} {'baseline/s':>10} {'ratio':>6} "
              f"{'archive':>8} {'hours now':>9} {'hours before':>12}")
        total = {"current": 0.0, "baseline": 0.0}
        for stage, count in ARCHIVE.items():
            cur, base = rate("current", stage), rate("baseline", stage)
            h_cur, h_base = count / cur / 3600, count / base / 3600
            total["current"] += h_cur
            total["baseline"] += h_base
            print(f"{stage:>9} {UNITS[stage]:>13} {cur:10.1f} {base:10.1f} {cur / base:6.1f} {count:8.0e} "
                  f"{h_cur:9.1f} {h_base:12.1f}")
        print(f"{'total':>9} {'':>13} {'':>10} {'':>10} {'':>6} {'':>8} {total['current']:9.1f} "
              f"{total['baseline']:12.1f}  (super-resolution of 64 regions not included)")
        for name in roots:
            if results[name]:
                r0 = results[name]
                print(f"{name}: solar fits converged {np.median([r['solarfit']['converged'] for r in r0]):.2f}, "
                      f"T median {np.median([r['solarfit']['T_median'] for r in r0]):.2f} MK; peak memory "
                      f"{np.median([r['peak_rss_mb'] for r in r0]):.0f} MB")
        acc = grid_accuracy()
        if acc:
            print("\nModel counts in 0.9-4.2 keV against the 0.01 keV grid (summed |difference| / total; bins):")
            for cls, row in acc.items():
                print(f"  {cls}: " + ", ".join(f"{k} {v[0]:.1e} ({v[1]} bins)" for k, v in row.items()))
        print("\nSmall linear systems (the fits' steps), ms per batch: batched Cholesky vs numpy.linalg.solve")
        for n, p, tc, tl in solve_timing():
            print(f"  {n} systems of {p}: cholesky {tc:.3f}, lapack {tl:.3f}")
        if args.memory:
            memory(tmp, json.loads((tmp / "sim.json").read_text()), args.memory)
    finally:
        if base_root is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_root)],
                           capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
