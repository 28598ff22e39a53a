"""The Global Information Bank: inverse-variance combination, incremental update, GeoTIFF CRS."""
import hashlib

import numpy as np
import pytest

from class_qgis_plugin import geo
from class_qgis_plugin.composition import ELEMENTS, HIGHLAND_WT, MARE_WT
from class_qgis_plugin import tasks
from class_qgis_plugin.gib import LEDGER, POINTS, band_names, combine, pixel_of, read_region, region_path
from class_qgis_plugin.population import strip_corners


class _WestMare:
    """Mare west of longitude 30E, highland east of it."""
    path = "west-mare"

    def mare_flag(self, lat, lon):
        return np.where(np.asarray(lon) < 30.0, 1, 0).astype(np.int8)


def _layer(path, centres, values=None, errors=None, first_id=0):
    """An abundance layer (contract 4) of northbound 12.5 x 100 km strips."""
    geoms = [geo.footprint_polygon(*strip_corners(la, lo, 100.0, 12.5, 0.0)) for la, lo in centres]
    n = len(geoms)
    a = 0.5 * (MARE_WT + HIGHLAND_WT)
    values = np.tile(a, (n, 1)) if values is None else values
    errors = np.full((n, 8), 0.4) if errors is None else errors
    attrs = dict(obs_id=np.arange(first_id, first_id + n),
                 pha_path=np.array([f"/data/coadd_{k}.pha" for k in range(first_id, first_id + n)]),
                 t_start=np.array(["2024-01-01T00:00:00"] * n), t_end=np.array(["2024-01-01T00:01:36"] * n))
    for k, el in enumerate(ELEMENTS):
        attrs[el] = values[:, k]
        attrs[f"{el}_err"] = errors[:, k]
        attrs[f"{el}_ok"] = np.ones(n, np.int64)
    geo.write_vector(path, geoms, attrs)
    return path


def populate_layer(layer, albedo, gib, points_output=None):
    """The populate stage on ``layer`` (its points beside it unless ``points_output`` is given)."""
    from pathlib import Path
    points = points_output or Path(layer).with_name(Path(layer).stem + "_points.gpkg")
    return tasks.run("populate", layer=layer, albedo=albedo, gib_folder=gib, points_output=points)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_inverse_variance_combination_by_hand():
    # two observations on pixel (5, 7): Fe 10 +- 1 and 13 +- 2; one on (0, 0) with Fe missing
    value = np.full((3, 8), np.nan)
    sigma = np.full((3, 8), np.nan)
    value[0, 7], sigma[0, 7] = 10.0, 1.0
    value[1, 7], sigma[1, 7] = 13.0, 2.0
    value[1, 3], sigma[1, 3] = 12.0, 0.5
    value[2, 3], sigma[2, 3] = 15.0, 1.0
    mean, err, n, sw = combine([5, 5, 0], [7, 7, 0], value, sigma, shape=(10, 10))
    # w = 1 and 1/4: mean = (10 + 13/4) / (5/4) = 10.6, error = 1 / sqrt(5/4)
    assert mean[7, 5, 7] == pytest.approx(10.6)
    assert err[7, 5, 7] == pytest.approx(1 / np.sqrt(1.25))
    assert n[5, 7] == 2 and n[0, 0] == 1 and n.sum() == 3
    assert mean[3, 5, 7] == pytest.approx(12.0) and err[3, 5, 7] == pytest.approx(0.5)
    assert np.isnan(mean[7, 0, 0]) and mean[3, 0, 0] == pytest.approx(15.0)
    assert np.isnan(mean[0]).all()


def test_pixel_of_region_edges():
    i, j = geo.region_of(-90.0, 179.999)
    assert (i, j) == (7, 7)
    r, c = pixel_of(i, j, -90.0, 179.999)
    assert (r, c) == (geo.REGION_ROWS - 1, geo.REGION_COLS - 1)
    r, c = pixel_of(3, 4, 0.0 + 1e-9, 0.0)
    assert (r, c) == (geo.REGION_ROWS - 1, 0)


def test_populate_incremental_idempotent_and_exact(tmp_path):
    gib = tmp_path / "gib"
    # track 1 at 25E (mare) and a repeat pass 1 km east; track 2 in another region (-30N, 100E)
    a_path = _layer(tmp_path / "a.gpkg", [(5.0, 25.0), (5.0, 25.03)])
    s1 = populate_layer(a_path, _WestMare(), gib, points_output=tmp_path / "pts_a.shp")
    assert s1["populated"] == 2 and s1["sub_footprints"] == 16 and s1["skipped"] == []
    assert s1["regions_touched"] == [(3, 4)]
    tif = region_path(gib, 3, 4)
    data, meta = read_region(gib, 3, 4)
    assert meta["crs"] == geo.LUNAR_RASTER_CRS and meta["band_names"] == band_names()
    assert data.shape == (17, geo.REGION_ROWS, geo.REGION_COLS)
    import rasterio
    with rasterio.open(tif) as ds:
        assert ds.crs.to_string() == "ESRI:104903"
        assert ds.nodata == -9999.0 and ds.descriptions[16] == "n_obs"
    assert np.nansum(data[16]) == 16
    # the same inputs again: nothing changes, not a byte
    before = {p.name: _digest(p) for p in gib.iterdir()}
    s2 = populate_layer(a_path, _WestMare(), gib)
    assert s2["populated"] == 0 and s2["already_in_gib"] == 2 and s2["regions_touched"] == []
    assert {p.name: _digest(p) for p in gib.iterdir()} == before

    # new observations: one in another region, one repeating track 1 exactly (same pixels)
    b_path = _layer(tmp_path / "b.gpkg", [(-30.0, 100.0), (5.0, 25.0)],
                    values=np.tile(0.5 * (MARE_WT + HIGHLAND_WT) * 1.1, (2, 1)),
                    errors=np.full((2, 8), 0.8), first_id=10)
    s3 = populate_layer(b_path, _WestMare(), gib)
    assert s3["regions_touched"] == [(3, 4), (5, 6)] and s3["populated"] == 2
    other = [p for p in gib.glob("gib_r*.tif")]
    assert len(other) == 2
    d3, _ = read_region(gib, 3, 4)
    assert np.nansum(d3[16]) == 24
    # by hand on the pixels of track 1: both observations are pure mare, so each sub-footprint
    # holds its footprint's value; w = 1/0.4^2 and 1/0.8^2
    fe = ELEMENTS.index("Fe")
    both = d3[16] == 2
    assert both.sum() >= 7       # the repeat pass lands on the same 8 pixels (7+ of them)
    x1, x2 = 0.5 * (MARE_WT[fe] + HIGHLAND_WT[fe]), 0.55 * (MARE_WT[fe] + HIGHLAND_WT[fe])
    w1, w2 = 1 / 0.16, 1 / 0.64
    np.testing.assert_allclose(d3[fe][both], (w1 * x1 + w2 * x2) / (w1 + w2), rtol=1e-6)
    np.testing.assert_allclose(d3[8 + fe][both], 1 / np.sqrt(w1 + w2), rtol=1e-6)

    # order independence: B then A into a fresh GIB gives the same rasters
    gib2 = tmp_path / "gib2"
    populate_layer(b_path, _WestMare(), gib2)
    populate_layer(a_path, _WestMare(), gib2)
    for (i, j) in [(3, 4), (5, 6)]:
        x, _ = read_region(gib, i, j)
        y, _ = read_region(gib2, i, j)
        np.testing.assert_allclose(x, y, rtol=1e-6, equal_nan=True)
    # the cumulative point layer holds every sub-footprint
    geoms, attrs, crs = geo.read_vector(gib / POINTS)
    assert len(geoms) == 32 and "ESRI" in crs and "104903" in crs
    geoms_a, attrs_a, _ = geo.read_vector(tmp_path / "pts_a.shp")
    assert len(geoms_a) == 16 and set(attrs_a["mare"]) == {1}


def test_reinverted_observation_replaces_its_old_contribution(tmp_path):
    gib = tmp_path / "gib"
    a = 0.5 * (MARE_WT + HIGHLAND_WT)
    p1 = _layer(tmp_path / "v1.gpkg", [(5.0, 40.0)])
    populate_layer(p1, _WestMare(), gib)
    v2 = np.tile(a * 1.2, (1, 1))
    p2 = _layer(tmp_path / "v2.gpkg", [(5.0, 40.0)], values=v2)
    s = populate_layer(p2, _WestMare(), gib)
    assert s["replaced"] == 1 and s["populated"] == 1
    d, _ = read_region(gib, 3, 4)
    assert np.nansum(d[16]) == 8                 # not 16: the old version is gone
    ca = ELEMENTS.index("Ca")
    np.testing.assert_allclose(d[ca][d[16] > 0], 1.2 * a[ca], rtol=1e-6)   # pure highland
    assert (gib / LEDGER).exists()


def test_bad_abundance_layer_names_the_column(tmp_path):
    from class_qgis_plugin.errors import ClassXRFError
    geoms = [geo.footprint_polygon(*strip_corners(0.0, 0.0, 100.0, 12.5, 0.0))]
    path = tmp_path / "bad.gpkg"
    geo.write_vector(path, geoms, {"obs_id": np.array([1]), "O": np.array([44.0])})
    with pytest.raises(ClassXRFError, match="O_err"):
        populate_layer(path, _WestMare(), tmp_path / "gib")


def _gib_state(folder):
    """Everything a GIB folder holds, value for value: rasters' arrays, sidecars' arrays, the ledger,
    point layers' geometries and attributes (a GeoPackage stores write times, so not bytes)."""
    import json
    from pathlib import Path
    out = {}
    for p in sorted(Path(folder).iterdir()):
        if p.suffix == ".tif":
            data, meta = geo.read_geotiff(p)
            out[p.name] = (np.nan_to_num(data, nan=-1).tobytes(), meta["crs"])
        elif p.suffix == ".npz":
            with np.load(p) as z:
                out[p.name] = {k: z[k].tobytes() for k in sorted(z.files)}
        elif p.suffix == ".json":
            out[p.name] = json.loads(p.read_text())
        elif p.suffix == ".gpkg":
            g, a, _ = geo.read_vector(p)
            out[p.name] = ([x.wkb for x in g], {k: np.asarray(v).tobytes() for k, v in sorted(a.items())})
        else:
            out[p.name] = p.read_bytes()
    return out


def test_populate_of_read_rows_equals_populate_layer_and_stages_in_the_callers_transaction(tmp_path):
    """gib.populate on the rows already read gives the GIB the populate stage gives, value for value,
    and returns the point layer the stage writes; with ``place`` (the caller's transaction) nothing
    reaches the GIB folder until it commits, and nothing at all when it is abandoned."""
    from class_qgis_plugin import transact
    from class_qgis_plugin.gib import populate
    lay = _layer(tmp_path / "a.gpkg", [(5.0, 25.0), (-30.0, 100.0)])
    s1 = populate_layer(lay, _WestMare(), tmp_path / "gib1", points_output=tmp_path / "pts.gpkg")
    geoms, attrs, _ = geo.read_vector(lay)
    pts, pattrs, s2 = populate(geoms, attrs, _WestMare(), tmp_path / "gib2", source=lay)
    assert _gib_state(tmp_path / "gib1") == _gib_state(tmp_path / "gib2")
    g_ref, a_ref, _ = geo.read_vector(tmp_path / "pts.gpkg")
    assert [g.wkb for g in pts] == [g.wkb for g in g_ref] and sorted(pattrs) == sorted(a_ref)
    for k in a_ref:
        np.testing.assert_array_equal(np.asarray(pattrs[k]), a_ref[k])
    assert {k: v for k, v in s1.items() if k not in ("files", "points_output")} == \
        {k: v for k, v in s2.items() if k != "files"}
    assert "points_output" not in s2 and s1["files"][-1] == str(tmp_path / "pts.gpkg")
    gib3 = tmp_path / "gib3"
    with pytest.raises(RuntimeError):
        with transact.Transaction(gib3) as tx:
            populate(geoms, attrs, _WestMare(), gib3, source=lay, place=tx)
            assert not list(gib3.glob("gib_r*"))          # staged only
            raise RuntimeError("the caller's own output failed")
    assert sorted(p.name for p in gib3.iterdir()) == []
    with transact.Transaction(gib3) as tx:
        populate(geoms, attrs, _WestMare(), gib3, source=lay, place=tx)
    assert _gib_state(gib3) == _gib_state(tmp_path / "gib1")


KILL_SCRIPT = r"""
import os, signal, sys
sys.path.insert(0, {root!r})
import numpy as np
from class_qgis_plugin import tasks
class WestMare:
    path = "west-mare"
    def mare_flag(self, lat, lon):
        return np.where(np.asarray(lon) < 30.0, 1, 0).astype(np.int8)
kill_at = int(sys.argv[1])
real, n = os.replace, [0]
def rep(a, b):
    n[0] += 1
    if n[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    real(a, b)
os.replace = rep
tasks.run("populate", layer=sys.argv[2], albedo=WestMare(), gib_folder=sys.argv[3], points_output=sys.argv[4])
print("REPLACES", n[0])
"""


def test_a_populate_killed_at_any_point_leaves_the_old_or_the_new_gib(tmp_path):
    """kill -9 of a populate after each of its file moves (the staged raster, sidecar, ledger and
    point layers, the journal, each move of the commit): the GIB (after the next run's recovery)
    equals the GIB before, or the GIB after an uninterrupted run, value for value; populating again
    then gives exactly the uninterrupted GIB (no double counting)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    root = str(Path(__file__).resolve().parents[2])
    centres = [(-5.0 + 0.8 * k, 20.0 + 3.0 * k) for k in range(6)]
    rng = np.random.default_rng(4)
    a = 0.5 * (MARE_WT + HIGHLAND_WT)
    values = np.tile(a, (6, 1)) * rng.normal(1, 0.05, (6, 8))
    old_layer = _layer(tmp_path / "old.gpkg", centres[:3], values[:3])
    new_layer = _layer(tmp_path / "new.gpkg", centres, values)
    base = tmp_path / "base"
    populate_layer(old_layer, _WestMare(), base / "gib", points_output=base / "points.gpkg")
    old_state = _gib_state(base / "gib")
    ref = tmp_path / "ref"
    shutil.copytree(base, ref)
    run = subprocess.run([sys.executable, "-c", KILL_SCRIPT.format(root=root), "0", str(new_layer), str(ref / "gib"),
                          str(ref / "points.gpkg")], capture_output=True, text=True, check=True)
    n_replaces = int(run.stdout.split("REPLACES")[1])
    new_state = _gib_state(ref / "gib")
    assert new_state != old_state and n_replaces >= 8
    outcomes = set()
    for k in range(1, n_replaces + 1):
        work = tmp_path / f"k{k}"
        shutil.copytree(base, work)
        proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT.format(root=root), str(k), str(new_layer),
                               str(work / "gib"), str(work / "points.gpkg")], capture_output=True)
        assert proc.returncode == -9, (k, proc.stderr[-500:])
        from class_qgis_plugin import transact
        transact.recover(work / "gib")
        transact.recover(work)
        state = _gib_state(work / "gib")
        assert state in (old_state, new_state), k
        outcomes.add("old" if state == old_state else "new")
        subprocess.run([sys.executable, "-c", KILL_SCRIPT.format(root=root), "0", str(new_layer), str(work / "gib"),
                        str(work / "points.gpkg")], capture_output=True, check=True)
        assert _gib_state(work / "gib") == new_state, k
        shutil.rmtree(work)
    assert outcomes == {"old", "new"}


def test_an_element_with_zero_error_is_left_out_and_said_so(tmp_path):
    """A row whose Fe_err is 0 (an exact value cannot weight an inverse-variance mean) is left out of
    Fe's population, and the summary says how many rows and why; the other elements are populated."""
    centres = [(-5.0, 20.0), (-4.0, 23.0)]
    errors = np.full((2, 8), 0.4)
    errors[1, ELEMENTS.index("Fe")] = 0.0
    lay = _layer(tmp_path / "a.gpkg", centres, errors=errors)
    s = populate_layer(lay, _WestMare(), tmp_path / "gib")
    assert s["element_notes"] == {"Fe": "Fe left out of 1 rows with Fe_err = 0 (no weight for the mean)"}
    assert s["element_skips"]["Fe"] == 1 and s["element_skips"]["Al"] == 0 and s["populated"] == 2
