"""resources/classxrf_chain.model3 loads as a Processing model, is served by the classxrf provider (Toolbox
group "6 Models", id classxrf:classxrf_chain) and runs headless from the registry on the simulated default;
its numbers equal those of the same chain run through the core functions (the command line's demo)."""
from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsProcessingModelAlgorithm

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "resources" / "classxrf_chain.model3"
ELEMENTS = ["O", "Na", "Mg", "Al", "Si", "Ca", "Ti", "Fe"]


def _load():
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL)), f"{MODEL} does not load"
    return model


def test_model_loads_and_validates(plugin):
    model = _load()
    assert model.name() == "classxrf_chain"
    children = model.childAlgorithms()
    assert {c.algorithmId() for c in children.values()} == {
        "classxrf:simulate", "classxrf:coadd", "classxrf:solarfit", "classxrf:invert", "classxrf:populate",
        "classxrf:superresolve"}
    ok, errors = model.validate()
    assert ok, errors
    # wiring: co-add reads the simulated frames, invert reads the solar fit, populate reads invert
    src = children["invert"].parameterSources()["INPUT"][0]
    assert (src.outputChildId(), src.outputName()) == ("solarfit", "OUTPUT")
    src = children["populate"].parameterSources()["ALBEDO"][0]
    assert (src.outputChildId(), src.outputName()) == ("simulate", "ALBEDO")
    src = children["superresolve"].parameterSources()["GIB"][0]
    assert (src.outputChildId(), src.outputName()) == ("populate", "GIB_FOLDER")
    names = {p.name() for p in model.parameterDefinitions()}
    assert {"seed", "tracks", "flare", "invert:Abundances", "populate:GIB", "populate:SubFootprints"} <= names


def test_model_is_an_algorithm_of_the_provider(plugin):
    from qgis.core import QgsApplication

    reg = QgsApplication.processingRegistry()
    alg = reg.algorithmById("classxrf:classxrf_chain")
    assert alg is not None and alg.provider() is reg.providerById("classxrf")
    assert isinstance(alg, QgsProcessingModelAlgorithm)
    assert alg in reg.providerById("classxrf").algorithms()
    assert (alg.group(), alg.groupId()) == ("6 Models", "models")
    assert alg.displayName() == "6.1 Whole chain: simulate to super-resolution (model)"
    # its steps resolve against the registered provider (the provider reads its models again once it is
    # registered), so the registry's instance lists the model's outputs as destination parameters
    assert all(c.algorithm() is not None for c in alg.childAlgorithms().values())
    assert {"invert:Abundances", "populate:GIB", "superresolve:Map"} <= {p.name() for p in alg.parameterDefinitions()}
    ok, errors = reg.createAlgorithmById("classxrf:classxrf_chain").validate()
    assert ok, errors


def test_model_runs_headless_like_the_core_chain(plugin, tmp_path):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject

    from class_qgis_plugin import geo
    from class_qgis_plugin.cli import run_demo

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    res = processing.run("classxrf:classxrf_chain", {"seed": 42, "tracks": 2, "flare": "C", "sr_k": 4, "sr_sweeps": 1, "sr_steps": 1,
                                 "sr_settings": '{"stride": 100, "n_features": 10, "kriging_points": 300}',
                                 "superresolve:Map": str(tmp_path / "map.tif"),
                                 "invert:Abundances": str(tmp_path / "abund.gpkg"),
                                 "populate:GIB": str(tmp_path / "gib"),
                                 "populate:SubFootprints": str(tmp_path / "sub.gpkg")},
                         context=context, feedback=QgsProcessingFeedback())
    assert Path(res["invert:Abundances"]) == tmp_path / "abund.gpkg"
    geoms, attrs, _ = geo.read_vector(tmp_path / "abund.gpkg")
    assert len(geoms) > 0
    # solar fit ran: its columns are there
    assert {"solar_file", "sol_T_MK", "flare_cls"} <= set(attrs)
    total = sum(np.asarray(attrs[e], float) for e in ELEMENTS)
    assert np.allclose(total[np.isfinite(total)], 100.0, atol=1e-3)
    assert list((tmp_path / "gib").glob("gib_r3_c4.tif"))
    sub_geoms, sub_attrs, _ = geo.read_vector(tmp_path / "sub.gpkg")
    assert len(sub_geoms) >= len(geoms)
    sr, meta = geo.read_geotiff(tmp_path / "map.tif")
    assert sr.shape == (9, 342, 682) and meta["crs"] == "ESRI:104903"
    assert np.isfinite(sr[ELEMENTS.index("Al")]).all()

    # the same chain through the core (cli.run_demo: same seed, tracks, window and stride)
    ref = run_demo(tmp_path / "core", seed=42, tracks=2, progress=False, fit_norm=False)
    rg, ra, _ = geo.read_vector(ref["layer"])
    assert len(rg) == len(geoms)
    order = np.argsort(attrs["t_start"])
    ref_order = np.argsort(ra["t_start"])
    for e in ELEMENTS:
        a, b = np.asarray(attrs[e], float)[order], np.asarray(ra[e], float)[ref_order]
        assert np.allclose(a, b, rtol=1e-6, atol=1e-6, equal_nan=True), e
    assert len(sub_geoms) == ref["gib"]["sub_footprints"]


def test_model_refuses_bad_input(plugin, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException):
        processing.run(_load(), {"seed": 42, "tracks": 0, "flare": "C"})
