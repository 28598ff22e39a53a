"""The mission archive: every day's co-add, solar fit and inversion, then the GIB, scheduled on a
Dask cluster (or one after the other in this process), resumable from a manifest.

The archive run only schedules: each day is the single-folder stages of :mod:`tasks` (``coadd``,
``solarfit``, ``invert``) run on that day's frames into ``days/YYYYMMDD/`` of the workspace, and the
GIB is the ``populate`` stage applied to the days' abundance layers in date order. Layout of the
workspace::

    manifest.json           what is done: per day its status, counts, outputs or the reason it failed;
                            the days in the GIB, in order; the inputs the run was started with
    days/YYYYMMDD/          obs.gpkg, obs_solar.gpkg, abund.gpkg (the layers), coadded/, solar/, points.gpkg
    unzipped/YYYYMMDD/      the frames of a day that came zipped
    gib/                    the GIB
    superres/               per region its map (superres_r{i}_c{j}.tif) and its halo prediction (.npz)
    mosaic/                 one cloud-optimised GeoTIFF per element (mosaic_{El}.tif, :mod:`mosaic`)

Days: folders named ``YYYYMMDD`` that hold CLASS L1 FITS files, and zip files whose name carries
the date (as PRADAN ships them), anywhere under the input folders; a day found in several places
takes the frames of all of them.

Super-resolution (``superres``): every GIB region, one task each, with a halo of its neighbours'
data (:func:`run_region`), then the mosaic by the driver. A region is redone when the GIB's days
or the super-resolution settings changed (a signature in the manifest).

Resuming: a day recorded as done (its abundance layer present) is not run again; a day a killed
run left half-written is run again from nothing (its folder is removed first); a day that failed is
reported with the reason and tried again on the next run. The GIB is extended with the new days
when they come after the last day it holds, and rebuilt from all days otherwise, so it always
equals a serial run over the same days in date order. Only the driver (this process) writes the
manifest and the GIB; workers write only their own day's folder.

Dask: ``scheduler`` is the address of a running scheduler (a cluster: dask-jobqueue on SLURM, see
the README), or empty for a ``LocalCluster`` of ``workers`` processes (default: the cores) with one
thread each and ``memory_limit`` per worker. A worker lost mid-day (killed, out of memory) has its
day rerun on another worker by Dask. ``scheduler="serial"`` runs the days here, one after another.
"""
import json
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np

from .errors import Cancelled, ClassXRFError
from .progress import as_progress

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
SERIAL = "serial"
_DAY = re.compile(r"(?<!\d)(20\d{2})(\d{2})(\d{2})(?!\d)")
_FRAME_EXT = (".fits", ".fit", ".fits.gz")


def find_days(inputs):
    """``{day: [sources]}`` (days in date order) under the folders ``inputs``: a source is
    ``("folder", path)`` for a ``YYYYMMDD`` folder of FITS files or ``("zip", path)``."""
    days = {}
    for root in inputs:
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise ClassXRFError(root, "not a folder of CLASS L1 days")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            name = os.path.basename(dirpath)
            if re.fullmatch(r"\d{8}", name) and _DAY.fullmatch(name) and any(
                    f.lower().endswith(_FRAME_EXT) for f in filenames):
                days.setdefault(name, []).append(("folder", dirpath))
            for f in sorted(filenames):
                m = _DAY.search(f)
                if f.lower().endswith(".zip") and m:
                    days.setdefault("".join(m.groups()), []).append(("zip", os.path.join(dirpath, f)))
    return dict(sorted(days.items()))


def day_frames(sources, unzip_to):
    """The FITS files of a day's ``sources`` (zips extracted into ``unzip_to``), sorted."""
    files = []
    for kind, path in sources:
        if kind == "folder":
            files += [os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(_FRAME_EXT)]
            continue
        dest = Path(unzip_to) / Path(path).stem
        if not dest.is_dir():
            tmp = dest.with_name(dest.name + ".part")
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                with zipfile.ZipFile(path) as z:
                    for member in z.namelist():
                        if member.lower().endswith(_FRAME_EXT) and not member.endswith("/"):
                            target = tmp / os.path.basename(member)
                            target.parent.mkdir(parents=True, exist_ok=True)
                            with z.open(member) as src, open(target, "wb") as out:
                                shutil.copyfileobj(src, out)
            except (zipfile.BadZipFile, OSError) as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise ClassXRFError(path, f"cannot read the zip file: {exc}") from None
            tmp.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
        files += [str(p) for p in dest.iterdir() if p.name.lower().endswith(_FRAME_EXT)]
    return sorted(files)


def run_day(day, sources, workspace, cfg):
    """One day: co-add, solar fit and inversion of its frames into ``workspace/days/day``, by the
    stages of :mod:`tasks`. ``cfg``: the archive's stage settings (:func:`stage_settings`). Returns
    the day's record for the manifest. What a killed run left of the day is removed first."""
    from . import tasks
    ws = Path(workspace)
    out = ws / "days" / day
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.time()
    frames = day_frames(sources, ws / "unzipped" / day)
    resp = dict(rmf=cfg["rmf"], arf=cfg["arf"], background=cfg["background"])
    co = tasks.run("coadd", inputs=frames, out_folder=out / "coadded", out_layer=out / "obs.gpkg",
                   window=cfg["window"], stride=cfg["stride"], flare_catalog=cfg["flare_catalog"],
                   allowed_classes=cfg["allowed_classes"], **resp)
    record = dict(status="done", n_frames=len(frames), n_spectra=int(co["n_spectra"]))
    if co["n_spectra"]:
        sol = tasks.run("solarfit", layer=out / "obs.gpkg", xsm=cfg["xsm"], out_folder=out / "solar",
                        out_layer=out / "obs_solar.gpkg")
        inv = tasks.run("invert", layer=out / "obs_solar.gpkg", out_layer=out / "abund.gpkg",
                        fit_norm=cfg["fit_norm"], **resp)
        record.update(n_no_xsm=int(sol["n_missing"]), n_fitted=int(inv["n_fitted"]),
                      layer=os.path.relpath(out / "abund.gpkg", ws))
    record["seconds"] = round(time.time() - t0, 2)
    return record


def _path(x):
    return None if not x else os.path.abspath(os.fspath(x))


def stage_settings(p):
    """The per-day settings of an :class:`specs.ArchiveParams`, as plain values (sent to workers; a
    workspace keeps them: its days were made with them)."""
    return dict(rmf=_path(p.rmf), arf=_path(p.arf), background=_path(p.background), xsm=_path(p.xsm),
                flare_catalog=_path(p.flare_catalog), allowed_classes=list(p.allowed_classes), window=p.window,
                stride=p.stride, fit_norm=p.fit_norm)


def region_settings(p):
    """The super-resolution settings of an :class:`specs.ArchiveParams` (a region is redone when they
    or the GIB's days change)."""
    return dict(albedo=_path(p.albedo), halo_px=int(p.halo_px), training=dict(p.training or {}), device=p.device)


def read_manifest(workspace):
    """The workspace's manifest (an empty one when there is none); a damaged one is an error naming it."""
    path = Path(workspace) / MANIFEST
    if not path.exists():
        return dict(version=MANIFEST_VERSION, days={}, gib_days=[], settings=None)
    try:
        m = json.loads(path.read_text())
        if m.get("version") != MANIFEST_VERSION or not isinstance(m.get("days"), dict):
            raise ValueError("not a manifest of this version")
    except ValueError as exc:
        raise ClassXRFError(path, f"the manifest cannot be read ({exc}); remove it to start the archive afresh")
    return m


def write_manifest(workspace, manifest):
    """Write the manifest whole (a temporary file moved over the old one)."""
    from .geo import atomic_output
    with atomic_output(Path(workspace) / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _is_done(ws, rec):
    return rec.get("status") == "done" and (not rec.get("layer") or (ws / rec["layer"]).exists())


def run_archive(p, progress=None):
    """Run the archive of an :class:`specs.ArchiveParams` ``p``; returns a summary (days run,
    skipped, failed with reasons; the GIB's days; the regions super-resolved; the mosaic's files and
    seam ratios; the dashboard link)."""
    prog = as_progress(progress)
    ws = Path(p.workspace).resolve()
    ws.mkdir(parents=True, exist_ok=True)
    cfg = stage_settings(p)
    manifest = read_manifest(ws)
    if manifest.get("settings") not in (None, cfg):
        raise ClassXRFError(ws / MANIFEST, "this workspace was started with other settings (responses, XSM "
                            "data, window, ...); use a new workspace or the same settings")
    manifest["settings"] = cfg
    days = find_days(p.inputs)
    if not days:
        raise ClassXRFError(p.inputs[0], "no CLASS L1 days (YYYYMMDD folders of FITS files or dated zip files)")
    skipped = [d for d in days if _is_done(ws, manifest["days"].get(d, {}))]
    todo = [d for d in days if d not in skipped]
    summary = dict(workspace=str(ws), n_days=len(days), skipped=skipped, ran=[], failed={}, dashboard=None,
                   regions_run=[], regions_skipped=[], regions_failed={}, mosaic=[], seam_ratio={},
                   mosaic_elements=[])
    prog.set(0.0, f"{len(days)} days: {len(skipped)} done before, {len(todo)} to run")
    share = (0.6, 0.7, 0.97) if p.superres else (0.9, 1.0, 1.0)     # progress at the end of each phase

    record_day = _recorder(ws, manifest, manifest["days"], summary["ran"], summary["failed"], len(todo), prog,
                           0.0, share[0], "day")
    runner = _Runner(p, prog)
    try:
        runner.run([(d, run_day, (d, days[d], str(ws), cfg)) for d in todo], record_day)
        done = [d for d in days if _is_done(ws, manifest["days"].get(d, {}))]
        summary["gib_days"] = _populate(p, ws, manifest, done, prog, share[0], share[1])
        summary["gib"] = str(ws / "gib")
        if p.superres and summary["gib_days"]:
            _superres_and_mosaic(ws, manifest, region_settings(p), runner, summary, prog, share)
    finally:
        summary["dashboard"] = runner.close()
    prog.set(1.0, f"archive: {len(summary['ran'])} days run, {len(skipped)} done before, "
                  f"{len(summary['failed'])} failed; {len(summary['regions_run'])} regions super-resolved")
    return summary


def _recorder(ws, manifest, records, ran, failed, n_todo, prog, lo, hi, label, **stamp):
    """``record(name, rec)``: the task's record (with ``stamp`` added) into ``records`` and the
    manifest written (the driver is its only writer), the name into ``ran`` or ``failed`` (with the
    reason), progress from ``lo`` to ``hi``."""
    def record(name, rec):
        records[name] = dict(rec, **stamp)
        write_manifest(ws, manifest)
        if rec["status"] == "done":
            ran.append(name)
        else:
            failed[name] = rec["reason"]
        n = len(ran) + len(failed)
        prog.set(lo + (hi - lo) * n / max(n_todo, 1), f"{label} {name}: {rec['status']} ({n} of {n_todo})")
    return record


class _Runner:
    """Runs tasks ``(name, fn, args)`` here one after another (``scheduler="serial"``) or on Dask
    (the client made on first use, kept for every phase), handing each task's record to
    ``record(name, rec)`` as it finishes; a failing task gives a failed record, a cancel cancels the
    tasks not yet finished."""

    def __init__(self, p, prog):
        self.p, self.prog = p, prog
        self.serial = p.scheduler.strip().lower() == SERIAL
        self.client = None
        self.link = None

    def run(self, tasks_, record):
        if not tasks_:
            return
        if self.serial:
            from .parallel import blas_threads
            for name, fn, args in tasks_:
                self.prog.check()
                # numpy's BLAS on one thread, as in a Dask worker: its sums then round the same way
                # (a multi-threaded matrix product splits them by thread), so both give identical values
                with blas_threads(1):
                    record(name, _guarded(fn, *args))
            return
        from distributed import wait
        if self.client is None:
            self.client = dask_client(self.p.scheduler.strip(), self.p.workers, self.p.memory_limit)
            self.link = getattr(self.client, "dashboard_link", None)
            n = len(self.client.scheduler_info().get("workers", {}))
            self.prog.set(0.0, f"Dask: {n} workers; dashboard {self.link}")
        futures = {self.client.submit(fn, *args, key=f"classxrf-{name}-{os.getpid()}-{time.time_ns()}", pure=False):
                   name for name, fn, args in tasks_}
        pending = set(futures)
        try:
            while pending:
                self.prog.check()
                try:
                    res = wait(list(pending), timeout=0.5, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    continue
                for fut in res.done:
                    pending.discard(fut)
                    record(futures[fut], fut.result() if fut.status == "finished" else _failed(fut.exception()))
        except Cancelled:
            self.client.cancel(list(pending), force=True)
            raise

    def close(self):
        if self.client is not None:
            cluster = getattr(self.client, "cluster", None)
            self.client.close()
            if cluster is not None:
                cluster.close()
            self.client = None
        return self.link


def _guarded(fn, *args):
    """``fn(*args)``'s record, or a failed record with the reason when the task cannot be done."""
    try:
        return fn(*args)
    except Exception as exc:        # a task that fails is reported; the others go on (a cancel goes through)
        return _failed(exc)


def _failed(exc):
    text = str(exc) if isinstance(exc, ClassXRFError) else f"{type(exc).__name__}: {exc}"
    return dict(status="failed", reason=text)


def dask_client(scheduler, workers=0, memory_limit="", env=None):
    """A ``distributed.Client``: connected to ``scheduler`` (an address), or to a new
    ``LocalCluster`` of ``workers`` single-threaded worker processes (default: the cores) with
    ``memory_limit`` each ("" = Dask's share of the machine). The workers find this package and run
    its stages single-threaded (``CLASSXRF_THREADS=1``: the cluster's processes share the cores)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClassXRFError(None, "the archive on Dask needs the 'dask' and 'distributed' packages (the plugin's "
                            "'cluster' part); or set the scheduler to 'serial'", key="scheduler") from None
    if scheduler:
        try:
            return Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ClassXRFError(None, f"cannot reach the Dask scheduler {scheduler!r}: {exc}",
                                key="scheduler") from None
    from .parallel import n_threads
    n = int(workers) or n_threads()        # before CLASSXRF_THREADS=1 is set for the workers below
    package_parent = str(Path(__file__).resolve().parents[1])
    worker_env = dict(env or {}, CLASSXRF_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                      PYTHONPATH=os.pathsep.join(x for x in (package_parent, os.environ.get("PYTHONPATH")) if x))
    old = {k: os.environ.get(k) for k in worker_env}
    os.environ.update(worker_env)       # the worker processes are started with this environment
    try:
        import logging
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               memory_limit=memory_limit or "auto", dashboard_address=":0",
                               silence_logs=logging.ERROR)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    client = Client(cluster)
    client.wait_for_workers(n, timeout=120)
    return client


def run_region(region, workspace, cfg):
    """Super-resolve GIB region ``(i, j)`` of the workspace with a halo of its neighbours
    (:func:`mosaic.superresolve_with_halo`): the region's GeoTIFF ``superres/superres_r{i}_c{j}.tif``
    (8 elements + support) and its halo prediction ``superres/halo_r{i}_c{j}.npz`` for the mosaic.
    Returns the region's record for the manifest."""
    from . import mosaic
    from .geo import REGION_COLS, REGION_ROWS, atomic_output
    from .superres.train import write_superres_geotiff

    ws = Path(workspace)
    i, j = (int(v) for v in region)
    t0 = time.time()
    res = mosaic.superresolve_with_halo(ws / "gib", cfg["albedo"], (i, j), cfg["halo_px"], cfg["training"],
                                        cfg["device"])
    R, _ = mosaic.region_origin(i, j)
    r, h = R - res["r0"], res["halo"]
    out = ws / "superres"
    out.mkdir(exist_ok=True)
    tif = out / f"superres_r{i}_c{j}.tif"
    write_superres_geotiff(tif, res["prediction"][:, r:r + REGION_ROWS, h:h + REGION_COLS],
                           res["support"][r:r + REGION_ROWS, h:h + REGION_COLS], (i, j))
    halo = out / f"halo_r{i}_c{j}.npz"
    with atomic_output(halo) as tmp:
        np.savez(tmp, prediction=res["prediction"], r0=res["r0"], c0=res["c0"], halo=res["halo"], region=[i, j])
    return dict(status="done", file=os.path.relpath(tif, ws), halo_file=os.path.relpath(halo, ws),
                seconds=round(time.time() - t0, 2))


def _superres_and_mosaic(ws, manifest, cfg, runner, summary, prog, share):
    """Every GIB region super-resolved (one task each; redone when the GIB's days changed), then the
    mosaic's COGs and seam ratios (:mod:`mosaic`)."""
    from . import mosaic
    from .gib import region_of_path

    regions = sorted({region_of_path(t) for t in (ws / "gib").glob("gib_r*_c*.tif")} - {None})
    sig = _signature(manifest["gib_days"], cfg)
    recs = manifest.setdefault("regions", {})
    name = {f"r{i}_c{j}": (i, j) for i, j in regions}
    have = [k for k in name if recs.get(k, {}).get("status") == "done" and recs[k].get("signature") == sig
            and (ws / recs[k]["halo_file"]).exists()]
    summary["regions_skipped"] = have
    todo = [k for k in name if k not in have]

    record_region = _recorder(ws, manifest, recs, summary["regions_run"], summary["regions_failed"], len(todo),
                              prog, share[1], share[2], "region", signature=sig)

    runner.run([(k, run_region, (name[k], str(ws), cfg)) for k in todo], record_region)
    m = mosaic.Mosaic()
    done = [k for k in name if recs.get(k, {}).get("status") == "done" and recs[k].get("signature") == sig]
    for k in done:
        with np.load(ws / recs[k]["halo_file"]) as z:
            m.add(dict(prediction=z["prediction"], r0=int(z["r0"]), c0=int(z["c0"]), halo=int(z["halo"]),
                       region=tuple(int(v) for v in z["region"])))
    if not done:
        return
    prog.set(share[2], "mosaic")
    from .progress import subrange
    summary["mosaic"] = [str(x) for x in mosaic.write_cogs(ws / "mosaic", m, progress=subrange(prog, share[2], 1.0))]
    value, window = m.value()
    summary["seam_ratio"] = mosaic.seam_ratios(value, window, [name[k] for k in done])
    from .choices import ELEMENTS
    summary["mosaic_elements"] = [el for e, el in enumerate(ELEMENTS) if np.isfinite(value[e]).any()]
    manifest["mosaic"] = dict(signature=sig, regions=done, files=[os.path.relpath(x, ws) for x in summary["mosaic"]],
                              seam_ratio=summary["seam_ratio"])
    write_manifest(ws, manifest)


def _signature(gib_days, cfg):
    """What a region's super-resolution depends on besides its code: the GIB's days and the settings."""
    import hashlib
    text = json.dumps(dict(days=list(gib_days), halo=cfg["halo_px"], training=cfg["training"],
                           albedo=cfg["albedo"]), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _populate(p, ws, manifest, done, prog, lo=0.9, hi=1.0):
    """The GIB from the days ``done`` in date order: extended with the new days when they all come
    after the last day in it, else rebuilt from nothing. Returns the days in the GIB."""
    from . import tasks
    with_layers = [d for d in sorted(done) if manifest["days"][d].get("layer")]
    have = list(manifest.get("gib_days") or [])
    gib = ws / "gib"
    # rebuilt when a new day sorts before the GIB's last, or a run was killed while populating (the
    # day it was adding may or may not be in the GIB)
    if have != with_layers[:len(have)] or manifest.get("gib_pending"):
        shutil.rmtree(gib, ignore_errors=True)
        have = []
    manifest["gib_days"] = have
    todo = with_layers[len(have):]
    for k, day in enumerate(todo):
        prog.check()
        prog.set(lo + (hi - lo) * k / len(todo), f"GIB: populating day {day}")
        manifest["gib_pending"] = day
        write_manifest(ws, manifest)
        tasks.run("populate", layer=ws / manifest["days"][day]["layer"], albedo=p.albedo, gib_folder=gib,
                  points_output=ws / "days" / day / "points.gpkg")
        manifest["gib_days"].append(day)
        manifest["gib_pending"] = None
        write_manifest(ws, manifest)
    return list(manifest["gib_days"])
