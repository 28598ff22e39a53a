"""The archive run (class_qgis_plugin/archive.py) on a small simulated archive of three days (one of
them zipped, as PRADAN ships days): on a 2-worker Dask LocalCluster with a worker killed while it
works, it equals the serial run; a killed run finishes only what is missing; a day that fails is
reported and the others go on."""
import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from class_qgis_plugin import archive, tasks
from class_qgis_plugin.choices import ELEMENTS
from class_qgis_plugin.errors import Cancelled, ClassXRFError
from class_qgis_plugin.progress import Progress

DAYS = ["20240315", "20240316", "20240317"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    s = tasks.run("simulate", folder=root / "sim", tracks=6, track_gap_s=43200.0, flare_classes=("C", "M"))
    l1 = root / "sim" / "class_l1"
    assert sorted(os.listdir(l1)) == DAYS
    # the last day zipped, as PRADAN ships it
    with zipfile.ZipFile(l1 / f"ch2_cla_l1_{DAYS[2]}.zip", "w") as z:
        for f in sorted(os.listdir(l1 / DAYS[2])):
            z.write(l1 / DAYS[2] / f, f"{DAYS[2]}/{f}")
    shutil.rmtree(l1 / DAYS[2])
    return dict(s, l1=str(l1), root=root)


def _params(sim, ws, **kw):
    return dict(dict(inputs=[sim["l1"]], xsm=sim["xsm"], workspace=str(ws), rmf=sim["rmf"], arf=sim["arf"],
                     background=sim["background"], albedo=sim["albedo"], scheduler="serial", superres=False), **kw)


@pytest.fixture(scope="module")
def serial(sim):
    ws = sim["root"] / "serial"
    summary = tasks.run("archive", _params(sim, ws))
    assert summary["ran"] == DAYS and not summary["failed"] and summary["gib_days"] == DAYS
    return ws


def _same(ws, ref):
    """The GIB rasters bit for bit, and every day's abundance layer: abundances and errors bit for
    bit, other numbers to 1e-12 (numpy's vectorised sums round by memory alignment, which differs
    between processes), paths relative to the workspace."""
    import rasterio
    from class_qgis_plugin import geo
    tifs = sorted(p.name for p in (ref / "gib").glob("*.tif"))
    assert tifs and tifs == sorted(p.name for p in (ws / "gib").glob("*.tif"))
    for name in tifs:
        with rasterio.open(ref / "gib" / name) as a, rasterio.open(ws / "gib" / name) as b:
            assert np.array_equal(a.read(), b.read(), equal_nan=True), name
    for day in DAYS:
        _, a, _ = geo.read_vector(ref / "days" / day / "abund.gpkg")
        _, b, _ = geo.read_vector(ws / "days" / day / "abund.gpkg")
        assert sorted(a) == sorted(b) and len(a["obs_id"]) > 0
        for k in a:
            x, y = np.asarray(a[k]), np.asarray(b[k])
            if x.dtype.kind == "f":
                if k in ELEMENTS or k.endswith("_err"):
                    assert np.array_equal(x, y, equal_nan=True), (day, k)
                else:
                    np.testing.assert_allclose(x, y, rtol=1e-12, err_msg=f"{day} {k}")
            elif x.dtype.kind in "OU" and k in ("pha_path", "solar_file"):
                assert [_rel(v, ref) for v in x] == [_rel(v, ws) for v in y], (day, k)
            else:
                assert np.array_equal(x, y), (day, k)


def _rel(path, root):
    return os.path.relpath(str(path), str(root)) if os.path.isabs(str(path)) else str(path)


class _KillAWorker(Progress):
    """When the first day is done, kills (SIGKILL) a worker that is running a day."""

    def __init__(self, client):
        self.client, self.killed = client, None

    def set(self, fraction, message=None):
        if self.killed is None and message and ": done" in message:
            import signal
            busy = [w for w, keys in self.client.processing().items() if keys]
            if busy:
                pids = self.client.run(os.getpid, workers=busy[:1])
                self.killed = pids[busy[0]]
                os.kill(self.killed, signal.SIGKILL)


def test_on_dask_with_a_worker_killed_it_equals_the_serial_run(sim, serial):
    pytest.importorskip("distributed")
    client = archive.dask_client("", workers=2)
    try:
        kill = _KillAWorker(client)
        summary = tasks.run("archive", _params(sim, sim["root"] / "dask", scheduler=client.scheduler.address),
                            progress=kill)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    assert kill.killed, "no worker was busy when the first day finished"
    assert sorted(summary["ran"]) == DAYS and not summary["failed"] and summary["gib_days"] == DAYS
    _same(sim["root"] / "dask", serial)


class _StopAfterFirstDay(Progress):
    def __init__(self):
        self.days = 0

    def set(self, fraction, message=None):
        self.days += bool(message and ": done" in message)

    @property
    def cancelled(self):
        return self.days >= 1


def test_a_killed_run_finishes_only_what_is_missing(sim, serial):
    ws = sim["root"] / "resumed"
    with pytest.raises(Cancelled):
        tasks.run("archive", _params(sim, ws), progress=_StopAfterFirstDay())
    m = json.loads((ws / archive.MANIFEST).read_text())
    assert list(m["days"]) == DAYS[:1] and m["gib_days"] == []
    first = ws / "days" / DAYS[0] / "abund.gpkg"
    before = first.stat().st_mtime_ns
    # a second day half written by the killed run (as if killed inside it): redone from nothing
    (ws / "days" / DAYS[1]).mkdir(parents=True, exist_ok=True)
    (ws / "days" / DAYS[1] / "obs.gpkg").write_text("half written")
    summary = tasks.run("archive", _params(sim, ws))
    assert summary["skipped"] == DAYS[:1] and summary["ran"] == DAYS[1:] and summary["gib_days"] == DAYS
    assert first.stat().st_mtime_ns == before
    _same(ws, serial)
    # nothing left to do: a third run changes nothing
    again = tasks.run("archive", _params(sim, ws))
    assert again["skipped"] == DAYS and again["ran"] == [] and again["gib_days"] == DAYS


def test_a_day_that_fails_is_reported_and_the_others_go_on(sim, tmp_path):
    l1 = tmp_path / "l1"
    shutil.copytree(sim["l1"], l1)
    bad = l1 / "ch2_cla_l1_20240318.zip"
    bad.write_bytes(b"this is not a zip file")
    summary = tasks.run("archive", _params(sim, tmp_path / "ws", inputs=[str(l1)]))
    assert summary["ran"] == DAYS and list(summary["failed"]) == ["20240318"]
    assert str(bad) in summary["failed"]["20240318"] and "zip" in summary["failed"]["20240318"]
    assert summary["gib_days"] == DAYS
    m = json.loads((tmp_path / "ws" / archive.MANIFEST).read_text())
    assert m["days"]["20240318"]["status"] == "failed"


def test_a_damaged_manifest_or_other_settings_are_errors_naming_the_manifest(sim, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / archive.MANIFEST).write_text("{not json")
    with pytest.raises(ClassXRFError, match="manifest.json.*cannot be read"):
        tasks.run("archive", _params(sim, ws))
    (ws / archive.MANIFEST).write_text(json.dumps(dict(version=archive.MANIFEST_VERSION, days={}, gib_days=[],
                                                       settings=dict(window=3))))
    with pytest.raises(ClassXRFError, match="other settings"):
        tasks.run("archive", _params(sim, ws))


def test_days_are_found_in_folders_and_dated_zips(sim):
    days = archive.find_days([sim["l1"]])
    assert list(days) == DAYS
    assert days[DAYS[0]][0][0] == "folder" and days[DAYS[2]] == [("zip", os.path.join(sim["l1"],
                                                                                    f"ch2_cla_l1_{DAYS[2]}.zip"))]


#: super-resolution settings that train in seconds (the map's accuracy is benchmarks/bench_superres.py's)
QUICK = {"sweeps": 1, "phase1_sweeps": 0, "n_features": 10, "kriging_points": 300, "subgraph_size": 12, "stride": 12,
         "k": 4, "hidden": 8, "cnn_channels": [4, 4, 4], "fusion": 8, "steps_per_subgraph": 1, "gate_probe": 0}


def test_two_neighbouring_regions_make_one_seamless_mosaic(tmp_path):
    """One simulated day over two neighbouring regions (one continuous surface): each region
    super-resolved with a halo of the other's data, the mosaic's COGs across both, and at their
    border the map steps no more than twice its step inside them (the issue's criterion); a second
    run redoes nothing."""
    import rasterio
    s = tasks.run("simulate", folder=tmp_path / "sim", tracks=16, regions_across=2, flare_classes=("C", "M"))
    p = dict(inputs=[s["frames"]], xsm=s["xsm"], workspace=str(tmp_path / "ws"), rmf=s["rmf"], arf=s["arf"],
             background=s["background"], albedo=s["albedo"], scheduler="serial", training=QUICK)
    summary = tasks.run("archive", p)
    assert sorted(summary["regions_run"]) == ["r3_c4", "r3_c5"] and not summary["regions_failed"]
    assert len(summary["mosaic"]) == len(ELEMENTS)
    with rasterio.open(summary["mosaic"][ELEMENTS.index("Mg")]) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and src.overviews(1)
        assert src.bounds.left < 0.0 + 1e-9 and src.bounds.right > 90.0 - 1e-9      # both regions and the halo
    predicted = {el: r for el, r in summary["seam_ratio"].items() if np.isfinite(r)}
    assert {"Mg", "Al", "Si", "Ca"} <= set(predicted)
    assert all(r <= 2.0 for r in predicted.values()), summary["seam_ratio"]
    for k in ("r3_c4", "r3_c5"):
        assert (tmp_path / "ws" / "superres" / f"superres_{k}.tif").exists()
    again = tasks.run("archive", p)
    assert again["regions_run"] == [] and sorted(again["regions_skipped"]) == ["r3_c4", "r3_c5"]


def test_the_default_local_cluster_has_a_worker_per_core():
    pytest.importorskip("distributed")
    from class_qgis_plugin.parallel import n_threads
    want = n_threads()
    client = archive.dask_client("")
    try:
        info = client.scheduler_info()["workers"]
        assert len(info) == want and all(w["nthreads"] == 1 for w in info.values())
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    assert os.environ.get("CLASSXRF_THREADS") != "1" or want == 1      # the workers' setting stays theirs
