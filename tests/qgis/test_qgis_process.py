"""The packaged plugin installs into a fresh QGIS profile and every algorithm runs from qgis_process.

The zip is made like ``make package`` (one top folder ``class_qgis/``) but from the working tree's files
(``git ls-files`` + untracked, not ignored), so it tests what is checked out. Debian's
``/usr/bin/qgis_process`` wrapper fails on 3.22 (it injects ``--noversioncheck``): ``qgis_process.bin`` is
called. The profile lives in a temporary folder through ``QGIS_CUSTOM_CONFIG_PATH`` (``<path>/profiles/default``)
and a temporary ``HOME``.
"""
import json
import os
import shutil
import subprocess
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "class_qgis"
PLUGIN_PARTS = ("metadata.txt", "LICENSE", "__init__.py", "plugin.py", "class_qgis_plugin/", "processing_provider/",
                "resources/", "requirements.txt", "README.md")
QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"

pytestmark = pytest.mark.skipif(not Path(QGIS_PROCESS).exists(), reason="qgis_process.bin is not installed")


def make_plugin_zip(out):
    """Zip the working tree's plugin files under ``class_qgis/`` (what ``git archive --prefix`` makes)."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    names = sorted({f for f in files if f and f.startswith(PLUGIN_PARTS) and (ROOT / f).is_file()
                    and "__pycache__" not in f})
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in names:
            z.write(ROOT / f, f"{PACKAGE}/{f}")
    return names


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    base = tmp_path_factory.mktemp("qgis_profile")
    zpath = base / f"{PACKAGE}.zip"
    names = make_plugin_zip(zpath)
    plugins = base / "config" / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(zpath) as z:
        z.extractall(plugins)
    env = dict(os.environ, HOME=str(base / "home"), QGIS_CUSTOM_CONFIG_PATH=str(base / "config"),
               QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1",
               # the packages of this venv (a user gets them from classxrf:dependencies instead)
               PYTHONPATH=os.pathsep.join([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
    (base / "home").mkdir()
    prof = dict(base=base, zip=zpath, names=names, plugins=plugins, env=env)
    out = qgis_process(prof, "plugins", "enable", PACKAGE).stdout
    assert "Enabling plugin" in out
    return prof


def qgis_process(profile, *args, check=True):
    proc = subprocess.run([QGIS_PROCESS, *args], env=profile["env"], cwd=profile["base"], capture_output=True,
                          text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"qgis_process {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def run(profile, alg, **params):
    args = ["--json", "run", f"classxrf:{alg}", "--"] + [f"{k}={v}" for k, v in params.items()]
    proc = qgis_process(profile, *args)
    text = proc.stdout[proc.stdout.index("{"):]
    return json.loads(text)["results"]


def test_zip_has_one_top_folder_and_no_caches(profile):
    with zipfile.ZipFile(profile["zip"]) as z:
        names = z.namelist()
    assert {n.split("/")[0] for n in names} == {PACKAGE}
    assert not any("__pycache__" in n or n.endswith(".pyc") or "/.git" in n for n in names)
    for needed in ("metadata.txt", "__init__.py", "plugin.py", "processing_provider/provider.py",
                   "resources/classxrf_chain.model3", "resources/styles/Fe.qml", "class_qgis_plugin/basemap.py"):
        assert f"{PACKAGE}/{needed}" in names, needed
    assert not any(n.startswith(f"{PACKAGE}/tests/") for n in names)
    assert profile["zip"].stat().st_size < 25e6


def test_plugin_enables_and_lists_every_algorithm(profile, plugin):
    listing = qgis_process(profile, "plugins").stdout
    assert f"* {PACKAGE}" in listing  # enabled
    algs = qgis_process(profile, "list").stdout
    from class_qgis.processing_provider.provider import algorithm_classes

    for cls in algorithm_classes():
        assert f"classxrf:{cls.ALG_NAME}" in algs
    help_text = qgis_process(profile, "help", "classxrf:basemap").stdout
    assert "ESRI:104903" in help_text


@pytest.fixture(scope="module")
def sim(profile, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    res = run(profile, "simulate", SEED=7, TRACKS=2, FLARE_CLASS="C", OUTPUT_FOLDER=out / "sim")
    res["tmp"] = out
    return res


def test_simulate_basemap_exportmap_dependencies_run(profile, plugin, sim, tmp_path):
    from class_qgis_plugin import tasks

    assert Path(sim["FRAMES"]).is_dir() and sim["N_FRAMES"] > 0
    assert len(list(Path(sim["FRAMES"]).rglob("*.fits"))) == sim["N_FRAMES"]
    base = run(profile, "basemap", INPUT=sim["ALBEDO"], OUTPUT=tmp_path / "base.tif")
    assert (base["WIDTH"], base["HEIGHT"]) == (682, 342) and base["KIND"] == "copied GeoTIFF"
    # an abundance layer made in this process by the stages, mapped by qgis_process
    tasks.run("coadd", inputs=[sim["FRAMES"]], out_folder=tmp_path / "pha", out_layer=tmp_path / "obs.gpkg", stride=12,
              rmf=sim["RMF_OUT"], arf=sim["ARF_OUT"], background=sim["BACKGROUND"])
    tasks.run("invert", layer=tmp_path / "obs.gpkg", out_layer=tmp_path / "abund.gpkg", rmf=sim["RMF_OUT"],
              arf=sim["ARF_OUT"], background=sim["BACKGROUND"], solar=sim["SOLAR"])
    png = run(profile, "exportmap", INPUT=tmp_path / "abund.gpkg", ELEMENT="Al", BASEMAP=base["OUTPUT"], DPI=60,
              OUTPUT=tmp_path / "al.png")
    assert Path(png["OUTPUT"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    helptext = qgis_process(profile, "help", "classxrf:dependencies").stdout
    assert "classxrf-env" in helptext and "ACTION" in helptext


def test_vector_chain_runs_from_the_command_line(profile, plugin, sim, tmp_path):
    """co-add -> solar fit -> invert -> populate -> super-resolve through qgis_process.

    The qgis_process binary links the system GEOS and GDAL (3.11 / 3.6 on Debian 12); loaded into it,
    the shapely and pyogrio wheels from PyPI would bind to those instead of their own (shapely's WKB
    writer fails, pyogrio crashes the process at exit). The algorithms run the science in a worker
    process (class_qgis_plugin/worker.py), which this test exercises from the QGIS executable itself.
    """
    from class_qgis_plugin import geo

    co = run(profile, "coadd", INPUT=sim["FRAMES"], STRATEGY="sliding", WINDOW=12, STRIDE=12,
             RMF=sim["RMF_OUT"], ARF=sim["ARF_OUT"], BACKGROUND=sim["BACKGROUND"],
             OUTPUT_FOLDER=tmp_path / "pha", OUTPUT=tmp_path / "obs.gpkg")
    g, a, crs = geo.read_vector(co["OUTPUT"])
    assert len(g) == co["N_SPECTRA"] > 0
    assert np.all(np.asarray(a["n_frames"]) <= 12)
    sol = run(profile, "solarfit", INPUT=co["OUTPUT"], XSM_FOLDER=sim["XSM"], OUTPUT_FOLDER=tmp_path / "solar",
              OUTPUT=tmp_path / "obs_sol.gpkg")
    inv = run(profile, "invert", INPUT=sol["OUTPUT"], RMF=sim["RMF_OUT"], ARF=sim["ARF_OUT"],
              BACKGROUND=sim["BACKGROUND"], SOLAR=sim["SOLAR"], OUTPUT=tmp_path / "abund.shp")
    g2, a2, _ = geo.read_vector(inv["OUTPUT"])
    assert len(g2) == len(g)
    # weight fractions sum to 100 % (unconstrained elements are NULL, their values in X_prior), Shapefile output
    total = sum(np.where(np.asarray(a2[f"{e}_ok"]) == 1, np.asarray(a2[e], float), np.asarray(a2.get(f"{e}_prior", a2[e]), float))
                for e in ("O", "Na", "Mg", "Al", "Si", "Ca", "Ti", "Fe"))
    assert np.all(np.asarray(a2["fit_flag"]) == 0)
    assert np.allclose(total, 100.0, atol=1e-2)
    pop = run(profile, "populate", INPUT=inv["OUTPUT"], ALBEDO=sim["ALBEDO"], GIB_FOLDER=tmp_path / "gib",
              OUTPUT=tmp_path / "sub.gpkg")
    assert pop["N_SUB"] >= len(g2) and (tmp_path / "gib" / "gib_r3_c4.tif").exists()
    # super-resolution (torch, torch-geometric) from the QGIS executable too; small settings for a short test
    sr = run(profile, "superresolve", GIB=tmp_path / "gib", ALBEDO=sim["ALBEDO"], REGION_I=3, REGION_J=4, K=4,
             SWEEPS=1, STEPS=1, SETTINGS='{"stride": 100, "n_features": 10, "kriging_points": 300}',
             OUTPUT=tmp_path / "sr.tif")
    data, meta = geo.read_geotiff(sr["OUTPUT"])
    assert data.shape == (9, 342, 682) and meta["crs"] == "ESRI:104903"


def test_bad_input_fails_with_a_message_naming_the_file(profile, tmp_path):
    from PIL import Image

    Image.new("RGB", (30, 30)).save(tmp_path / "square.png")
    proc = qgis_process(profile, "run", "classxrf:basemap", "--", f"INPUT={tmp_path / 'square.png'}",
                        f"OUTPUT={tmp_path / 'b.tif'}", check=False)
    assert proc.returncode != 0
    assert "square.png" in proc.stdout + proc.stderr and "twice as wide" in proc.stdout + proc.stderr
    assert not (tmp_path / "b.tif").exists()
