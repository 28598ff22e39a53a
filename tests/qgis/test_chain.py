"""The whole chain through processing.run, as a PyQGIS batch user runs it: simulate -> co-add -> invert ->
populate, each output wired to the next input; outputs load in QGIS with a lunar CRS."""
import numpy as np
import pytest
from qgis.core import QgsProcessingException, QgsRasterLayer, QgsVectorLayer


@pytest.fixture(scope="module")
def chain(run_alg, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chain")
    sim = run_alg("classxrf:simulate", {"SEED": 5, "TRACKS": 3, "FLARE_CLASS": "C",
                                        "OUTPUT_FOLDER": str(tmp / "sim")})
    co = run_alg("classxrf:coadd", {"INPUT": sim["FRAMES"], "WINDOW": 12, "STRIDE": 12,
                                    "RMF": sim["RMF_OUT"], "ARF": sim["ARF_OUT"],
                                    "BACKGROUND": sim["BACKGROUND"],
                                    "OUTPUT_FOLDER": str(tmp / "pha"), "OUTPUT": str(tmp / "obs.gpkg")})
    sol = run_alg("classxrf:solarfit", {"INPUT": co["OUTPUT"], "XSM_FOLDER": sim["XSM"],
                                        "OUTPUT_FOLDER": str(tmp / "solar"), "OUTPUT": str(tmp / "obs_solar.gpkg")})
    inv = run_alg("classxrf:invert", {"INPUT": sol["OUTPUT"], "RMF": sim["RMF_OUT"], "ARF": sim["ARF_OUT"],
                                      "BACKGROUND": sim["BACKGROUND"], "OUTPUT": str(tmp / "abund.shp")})
    pop = run_alg("classxrf:populate", {"INPUT": inv["OUTPUT"], "ALBEDO": sim["ALBEDO"],
                                        "GIB_FOLDER": str(tmp / "gib"), "OUTPUT": str(tmp / "sub.gpkg")})
    return dict(sim=sim, co=co, sol=sol, inv=inv, pop=pop, tmp=tmp)


def test_simulate_outputs_load_with_lunar_crs(chain):
    for key in ("ALBEDO", "TRUTH"):
        lyr = QgsRasterLayer(chain["sim"][key], key)
        assert lyr.isValid()
        assert lyr.crs().authid() == "ESRI:104903"
    assert chain["sim"]["N_FRAMES"] > 100


def test_solarfit_recovers_the_simulated_flare(chain):
    lyr = QgsVectorLayer(chain["sol"]["OUTPUT"], "sol", "ogr")
    temps = [f["sol_T_MK"] for f in lyr.getFeatures()]
    classes = {f["flare_cls"][0] for f in lyr.getFeatures()}
    assert classes == {"C"}
    assert abs(np.median(temps) - 12.0) < 1.0      # the simulated C-class plateau is 12 MK


def test_invert_layer_has_abundances_near_truth(chain):
    lyr = QgsVectorLayer(chain["inv"]["OUTPUT"], "abund", "ogr")
    assert lyr.isValid() and lyr.featureCount() == chain["co"]["N_SPECTRA"] > 5
    assert lyr.crs().isValid() and lyr.crs().isGeographic()
    names = lyr.fields().names()
    for col in ("Mg", "Mg_err", "Mg_ok", "chi2", "dof", "converged"):
        assert col in names
    # the truth raster sampled at each footprint centroid, read through QGIS's own raster provider
    truth = QgsRasterLayer(chain["sim"]["TRUTH"], "truth")
    prov = truth.dataProvider()
    errs = []
    for f in lyr.getFeatures():
        c = f.geometry().centroid().asPoint()
        si_true = prov.sample(c, 5)[0]       # band 5 = Si
        errs.append(f["Si"] - si_true)
    assert np.median(np.abs(errs)) < 1.5


def test_invert_with_a_shared_gain_fit_finds_the_simulated_gain(run_alg, chain):
    """The simulated instrument's gain is exact (1, 0): a gain shared by all spectra of the layer,
    fitted from a start of (1.01, 0.02 keV), comes back to it within 3 sigma; every fit is trusted
    (fit_flag 0); with the fluorescence norm free, Fe and Ti are unconstrained and NULL in QGIS, their
    prior-dominated values in Fe_prior / Ti_prior."""
    out = str(chain["tmp"] / "abund_gain.gpkg")
    run_alg("classxrf:invert", {"INPUT": chain["sol"]["OUTPUT"], "RMF": chain["sim"]["RMF_OUT"],
                                "ARF": chain["sim"]["ARF_OUT"], "BACKGROUND": chain["sim"]["BACKGROUND"],
                                "GAIN_SLOPE": 1.01, "GAIN_OFFSET": 0.02, "GAIN_FIT": "shared", "OUTPUT": out})
    lyr = QgsVectorLayer(out, "abund", "ogr")
    feats = list(lyr.getFeatures())
    assert feats and all(f["fit_flag"] == 0 for f in feats)
    f = feats[0]
    assert all(g["gain_slope"] == f["gain_slope"] for g in feats)     # one gain for the layer
    print("shared gain", f["gain_slope"], f["gslope_err"], f["gain_off"], f["goff_err"])
    assert abs(f["gain_slope"] - 1.0) < 3 * f["gslope_err"] + 1e-4 and abs(f["gain_off"]) < 3 * f["goff_err"] + 1e-4
    from qgis.core import NULL
    assert f["Fe_ok"] == 0 and (f["Fe"] is None or f["Fe"] == NULL)
    assert f["Fe_prior"] > 0 and f["Al_ok"] == 1 and f["Al"] > 0


def test_populate_writes_gib_region_raster(chain):
    regions = chain["pop"]["REGIONS"]
    assert regions == "3,4"
    lyr = QgsRasterLayer(str(chain["tmp"] / "gib" / "gib_r3_c4.tif"), "gib")
    assert lyr.isValid() and lyr.bandCount() == 17
    assert lyr.crs().authid() == "ESRI:104903"
    pts = QgsVectorLayer(chain["pop"]["OUTPUT"], "sub", "ogr")
    assert pts.featureCount() == chain["pop"]["N_SUB"] > 0


def test_invert_missing_column_names_layer_and_column(run_alg, chain):
    """A layer without the angles the forward model needs: the error names the file and the column."""
    from class_qgis_plugin import geo  # core, importable in tests
    geoms, attrs, _ = geo.read_vector(chain["co"]["OUTPUT"])
    attrs.pop("solar_ang")
    bad = chain["tmp"] / "no_angle.gpkg"
    geo.write_vector(bad, geoms, attrs)
    sim = chain["sim"]
    with pytest.raises(QgsProcessingException, match="no_angle.gpkg.*solar_ang"):
        run_alg("classxrf:invert", {"INPUT": str(bad), "RMF": sim["RMF_OUT"], "ARF": sim["ARF_OUT"],
                                    "BACKGROUND": sim["BACKGROUND"], "SOLAR": sim["SOLAR"],
                                    "OUTPUT": str(chain["tmp"] / "never.gpkg")})
    assert not (chain["tmp"] / "never.gpkg").exists()


def test_superresolve_region_from_the_chain_gib(run_alg, chain):
    """classxrf:superresolve on the chain's GIB (small training settings to keep the test short): a GeoTIFF of the
    whole region in the lunar CRS, one band per element plus support; unobserved elements are nodata."""
    sim, tmp = chain["sim"], chain["tmp"]
    res = run_alg("classxrf:superresolve", {
        "GIB": str(tmp / "gib"), "ALBEDO": sim["ALBEDO"], "REGION_I": 3, "REGION_J": 4, "K": 4, "SWEEPS": 1,
        "STEPS": 1, "SETTINGS": '{"stride": 100, "n_features": 10, "kriging_points": 300}',
        "OUTPUT": str(tmp / "sr.tif"), "CURVE": str(tmp / "curve.csv")})
    lyr = QgsRasterLayer(res["OUTPUT"], "sr")
    assert lyr.isValid() and lyr.bandCount() == 9
    assert (lyr.width(), lyr.height()) == (682, 342)
    assert lyr.crs().authid() == "ESRI:104903"
    assert res["N_OBSERVED"] > 0
    prov = lyr.dataProvider()
    truth_layer = QgsRasterLayer(sim["TRUTH"], "truth")
    truth = truth_layer.dataProvider()
    # Al (band 4) stays within lunar range everywhere sampled, and near the truth on average
    from qgis.core import QgsPointXY
    errs = []
    for x in np.linspace(1.0, 44.0, 9):
        for y in np.linspace(1.0, 21.5, 7):
            v, ok = prov.sample(QgsPointXY(x, y), 4)
            t, _ = truth.sample(QgsPointXY(x, y), 4)
            assert ok and 2.0 < v < 20.0
            errs.append(v - t)
    assert np.sqrt(np.mean(np.square(errs))) < 3.0
    assert (tmp / "curve.csv").read_text().count("\n") > 1


def test_superresolve_without_region_raster_names_the_file(run_alg, chain, tmp_path):
    with pytest.raises(QgsProcessingException, match="gib_r0_c0.tif"):
        run_alg("classxrf:superresolve", {"GIB": str(chain["tmp"] / "gib"), "ALBEDO": chain["sim"]["ALBEDO"],
                                          "REGION_I": 0, "REGION_J": 0, "OUTPUT": str(tmp_path / "x.tif")})


QUICK = {"sweeps": 1, "phase1_sweeps": 0, "n_features": 10, "kriging_points": 300, "subgraph_size": 12, "stride": 12,
         "k": 4, "hidden": 8, "cnn_channels": [4, 4, 4], "fusion": 8, "steps_per_subgraph": 1, "gate_probe": 0}


def test_the_archive_algorithm_runs_a_simulated_archive_and_resumes(run_alg, tmp_path):
    """classxrf:archive as the Toolbox runs it on three simulated days (serially: the worker process
    of the plugin runs the days), super-resolution and mosaic included (quick training); the mosaic's
    COGs load styled; a second run in the same workspace runs nothing again."""
    import json
    sim = run_alg("classxrf:simulate", {"SEED": 9, "TRACKS": 3, "TRACK_GAP_S": 86400, "FLARE_CLASS": "C",
                                        "OUTPUT_FOLDER": str(tmp_path / "sim")})
    params = {"INPUT": sim["FRAMES"], "XSM_FOLDER": sim["XSM"], "WORKSPACE": str(tmp_path / "ws"),
              "RMF": sim["RMF_OUT"], "ARF": sim["ARF_OUT"], "BACKGROUND": sim["BACKGROUND"], "ALBEDO": sim["ALBEDO"],
              "SCHEDULER": "serial", "SUPERRES": True, "TRAINING": json.dumps(QUICK)}
    import processing
    from qgis.PyQt.QtCore import QCoreApplication
    res = processing.runAndLoadResults("classxrf:archive", params)    # as the Toolbox runs it: outputs loaded
    QCoreApplication.processEvents()
    manifest = json.loads((tmp_path / "ws" / "manifest.json").read_text())
    assert res["N_DONE"] == 3 and res["N_FAILED"] == 0 and len(manifest["gib_days"]) == 3
    assert sorted(p.name for p in (tmp_path / "ws" / "gib").glob("gib_r*_c*.tif"))
    # the mosaic's COGs load styled (the elements some region predicts)
    from qgis.core import QgsProject
    loaded = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name().startswith("Mosaic ")]
    assert res["MOSAIC"] and any(lyr.name() == "Mosaic Mg (wt%)" for lyr in loaded)
    assert all(lyr.isValid() and lyr.renderer().type() == "singlebandpseudocolor" for lyr in loaded)
    QgsProject.instance().removeMapLayers([lyr.id() for lyr in loaded])     # leave the project as it was
    again = run_alg("classxrf:archive", params)
    assert again["N_DONE"] == 3 and json.loads((tmp_path / "ws" / "manifest.json").read_text()) == manifest
