"""The QGIS glue as pure functions: each stage algorithm's parameters come from its spec, and its
``to_spec`` turns the values a user gives into the stage spec without running anything (the way
processing-pktools tests its generateCommand)."""
import pytest


def _core():
    # the glue imports the core as the plugin package's (class_qgis.class_qgis_plugin), as in QGIS
    from class_qgis.class_qgis_plugin import errors, specs
    return errors.ClassXRFError, specs.default_of_field


def _spec_algorithms():
    from class_qgis.processing_provider.base import SpecAlgorithm
    from class_qgis.processing_provider.provider import algorithm_classes
    return [c for c in algorithm_classes() if issubclass(c, SpecAlgorithm)]


def test_every_stage_algorithm_takes_its_parameters_from_its_spec(plugin):
    _, default_of_field = _core()
    classes = _spec_algorithms()
    assert {c.SPEC.STAGE for c in classes} == {"simulate", "coadd", "solarfit", "invert", "populate",
                                               "superresolve", "basemap", "archive"}
    for cls in classes:
        alg = cls()
        alg.initAlgorithm()
        for f in cls.SPEC.params():
            m = f.metadata
            if f.name in cls.OWN or not m["qgis"]:
                continue
            p = alg.parameterDefinition(m["key"])
            assert p is not None, (cls.ALG_NAME, m["key"])
            assert p.description() == m["label"] and p.help() == m["help"], (cls.ALG_NAME, f.name)
            assert bool(p.flags() & p.FlagOptional) == (not m["required"]), (cls.ALG_NAME, f.name)
            default = default_of_field(f)
            if m["kind"] in ("float", "int", "bool", "enum") and not m["multiple"]:
                assert p.defaultValue() == default, (cls.ALG_NAME, f.name, p.defaultValue())
            if m["kind"] == "enum":
                assert tuple(p.options()) == m["choices"]
            if m["minimum"] is not None:
                assert p.minimum() == m["minimum"], (cls.ALG_NAME, f.name)


def test_invert_to_spec(plugin):
    ClassXRFError, _ = _core()
    from class_qgis.processing_provider.invert_alg import InvertAlgorithm
    values = {"INPUT": "/d/obs.gpkg", "OUTPUT": "/d/abund.gpkg", "RMF": "r.rmf", "ARF": "a.arf", "BACKGROUND": "b.pha",
              "SOLAR": None, "E_MIN": 1.0, "E_MAX": 3.5, "OXYGEN": "fixed45", "GAIN_FIT": "shared", "FIT_NORM": False,
              "PLOT_FOLDER": None, "STYLE_ELEMENT": "Al"}
    spec = InvertAlgorithm.to_spec(values)
    assert spec.e_range == (1.0, 3.5) and spec.oxygen_model == 45.0 and spec.gain_fit == "shared"
    assert spec.fit_norm is False and spec.solar is None and spec.statistic == "cstat" and spec.gain_slope == 1.0
    assert spec.outputs() == {"OUTPUT": "/d/abund.gpkg"}
    with pytest.raises(ClassXRFError, match=r"E_MAX.*energy range 3\.5\.\.1 keV is empty"):
        InvertAlgorithm.to_spec(dict(values, E_MIN=3.5, E_MAX=1.0))
    with pytest.raises(ClassXRFError, match=r"RMF"):
        InvertAlgorithm.to_spec(dict(values, RMF=None))


def test_archive_to_spec(plugin):
    ClassXRFError, _ = _core()
    from class_qgis.processing_provider.archive_alg import ArchiveAlgorithm
    values = {"INPUT": "/pradan/class", "XSM_FOLDER": "/pradan/xsm", "XSM_FILE": None, "WORKSPACE": "/w",
              "RMF": "r.rmf", "ARF": "a.arf", "BACKGROUND": "b.pha", "ALBEDO": "alb.tif", "SCHEDULER": " tcp://h:8786 ",
              "WORKERS": 0, "MEMORY_LIMIT": "", "WINDOW": 12, "STRIDE": 12, "FIT_NORM": True,
              "FLARE_CATALOG": None, "FLARE_CLASSES": ["b", "C"]}
    spec = ArchiveAlgorithm.to_spec(values)
    assert spec.inputs == ["/pradan/class"] and spec.xsm == "/pradan/xsm" and spec.scheduler == "tcp://h:8786"
    assert spec.allowed_classes == ("B", "C") and spec.stride == 12
    assert ArchiveAlgorithm.to_spec(dict(values, XSM_FILE="/x/typeII.pha")).xsm == "/x/typeII.pha"
    with pytest.raises(ClassXRFError, match="XSM"):
        ArchiveAlgorithm.to_spec(dict(values, XSM_FOLDER=None))


def test_coadd_and_solarfit_to_spec_map_their_two_inputs_to_one(plugin):
    ClassXRFError, _ = _core()
    from class_qgis.processing_provider.coadd_alg import CoaddAlgorithm
    from class_qgis.processing_provider.solarfit_alg import SolarFitAlgorithm
    base = {"OUTPUT_FOLDER": "/o", "OUTPUT": "/o.gpkg", "FLARE_CLASSES": ["B", "C"], "MIN_FRAMES": 0}
    assert CoaddAlgorithm.to_spec(dict(base, INPUT="/frames", INPUT_FILES=None)).inputs == ["/frames"]
    spec = CoaddAlgorithm.to_spec(dict(base, INPUT="/frames", INPUT_FILES=["/a.fits", "/b.fits"]))
    assert spec.inputs == ["/a.fits", "/b.fits"] and spec.allowed_classes == ("B", "C") and spec.window == 12
    with pytest.raises(ClassXRFError, match="INPUT.*give an input folder or a list"):
        CoaddAlgorithm.to_spec(dict(base, INPUT=None, INPUT_FILES=None))
    sol = {"INPUT": "/o.gpkg", "OUTPUT_FOLDER": "/s", "OUTPUT": "/s.gpkg"}
    assert SolarFitAlgorithm.to_spec(dict(sol, XSM_FOLDER="/xsm", XSM_FILE="/x2.pha")).xsm == "/x2.pha"
    assert SolarFitAlgorithm.to_spec(dict(sol, XSM_FOLDER="/xsm", XSM_FILE=None)).xsm == "/xsm"
    with pytest.raises(ClassXRFError, match="XSM_FOLDER"):
        SolarFitAlgorithm.to_spec(dict(sol, XSM_FOLDER=None, XSM_FILE=None))


def test_superresolve_to_spec(plugin):
    ClassXRFError, _ = _core()
    from class_qgis.processing_provider.superres_alg import SuperResolveAlgorithm
    values = {"GIB": "/gib", "ALBEDO": "/alb.tif", "REGION_I": 3, "REGION_J": 4, "EXTENT": [5.0, 25.0, 15.0, 35.0],
              "K": 4, "SWEEPS": 1, "STEPS": 2, "SEED": 0, "DEVICE": "cpu", "SETTINGS": '{"stride": 100}',
              "OUTPUT": "/m.tif", "CURVE": None}
    spec = SuperResolveAlgorithm.to_spec(values)
    assert spec.region == (2, 4)                   # the extent's centre, 10 E 30 N, overrides i, j
    assert spec.training_settings() == dict(stride=100, k=4, sweeps=1, steps_per_subgraph=2, seed=0)
    assert SuperResolveAlgorithm.to_spec(dict(values, EXTENT=None)).region == (3, 4)
    with pytest.raises(ClassXRFError, match="SETTINGS"):
        SuperResolveAlgorithm.to_spec(dict(values, SETTINGS="[1, 2]"))
    with pytest.raises(ClassXRFError, match=r"m\.png: output \(OUTPUT\)"):
        SuperResolveAlgorithm.to_spec(dict(values, OUTPUT="/m.png"))


def test_values_read_from_processing_parameters(plugin):
    """``values`` reads what processing.run passes (strings for enums, a list for several classes,
    a folder path) into the plain values ``to_spec`` takes."""
    from qgis.core import QgsProcessingContext
    from class_qgis.processing_provider.coadd_alg import CoaddAlgorithm
    alg = CoaddAlgorithm()
    alg.initAlgorithm()
    context = QgsProcessingContext()
    v = alg.values({"INPUT": "/frames", "FLARE_CLASSES": "C,M", "WINDOW": 6, "OUTPUT_FOLDER": "/o",
                    "OUTPUT": "/o/obs.gpkg"}, context)
    assert v["INPUT"] == "/frames" and v["FLARE_CLASSES"] == ["C", "M"] and v["WINDOW"] == 6
    assert v["STRATEGY"] == "sliding" and v["OUTPUT"] == "/o/obs.gpkg" and v["INPUT_FILES"] is None
    spec = CoaddAlgorithm.to_spec(v)
    assert spec.allowed_classes == ("C", "M") and spec.window == 6 and spec.min_frames == 0
