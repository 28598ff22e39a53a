"""Stage specs (class_qgis_plugin/specs.py), the command line generated from them, and the
observation-layer schema (obslayer.py) against what the stages really write."""
import numpy as np
import pytest

from class_qgis_plugin import cli, obslayer, specs
from class_qgis_plugin.errors import ClassXRFError


def test_a_spec_converts_checks_and_names_the_parameter():
    p = specs.InvertParams.from_dict(dict(layer="a.gpkg", out_layer="b.gpkg", rmf="r.rmf", arf="a.arf",
                                          background="b.pha", e_min="1.0", e_max=3, fit_norm="false",
                                          oxygen="fixed45"))
    assert p.e_range == (1.0, 3.0) and p.fit_norm is False and p.gain_fit == "none"
    assert p.oxygen_model == 45.0           # X2ABUNDANCE's fixed oxygen, by the spec (not the glue)
    with pytest.raises(ClassXRFError, match=r"e_max \(E_MAX\): the energy range 3\.\.2 keV is empty"):
        specs.InvertParams.from_dict(dict(layer="a", out_layer="b", rmf="r", arf="a", background="b",
                                          e_min=3, e_max=2))
    with pytest.raises(ClassXRFError, match=r"rmf \(RMF\): CLASS RMF is required"):
        specs.InvertParams.from_dict(dict(layer="a", out_layer="b", arf="a", background="b"))
    with pytest.raises(ClassXRFError, match=r"statistic \(STATISTIC\): must be one of cstat, chi, got 'chi2'"):
        specs.InvertParams.from_dict(dict(layer="a", out_layer="b", rmf="r", arf="a", background="b",
                                          statistic="chi2"))
    with pytest.raises(ClassXRFError, match=r"window \(WINDOW\): must be at least 1, got 0"):
        specs.CoaddParams.from_dict(dict(inputs=["x"], out_folder="o", out_layer="l.gpkg", window=0))
    with pytest.raises(ClassXRFError, match=r"window \(WINDOW\): must be a whole number, got 2\.5"):
        specs.CoaddParams.from_dict(dict(inputs=["x"], out_folder="o", out_layer="l.gpkg", window=2.5))
    with pytest.raises(ClassXRFError, match=r"gain_fit_mode: unknown parameter of invert"):
        specs.InvertParams.from_dict(dict(layer="a", gain_fit_mode="shared"))


def test_spec_values_by_hand():
    c = specs.CoaddParams.from_dict(dict(inputs="folder", out_folder="o", out_layer="l.gpkg",
                                         allowed_classes="b, c"))
    assert c.inputs == ["folder"] and c.allowed_classes == ("B", "C") and c.window == 12
    # an extent picks the region holding its centre: 10 E, 30 N is row floor((90-30)/22.5) = 2,
    # column floor((10+180)/45) = 4
    s = specs.SuperResParams.from_dict(dict(gib="g", albedo="a.tif", output="m.tif", extent=[5, 25, 15, 35],
                                            settings='{"stride": 50}', k=8))
    assert s.region == (2, 4) and s.training_settings()["stride"] == 50 and s.training_settings()["k"] == 8
    with pytest.raises(ClassXRFError, match="unknown super-resolution setting 'strid'"):
        specs.SuperResParams.from_dict(dict(gib="g", albedo="a.tif", output="m.tif", settings={"strid": 50}))
    with pytest.raises(ClassXRFError, match=r"settings \(SETTINGS\): is not valid JSON"):
        specs.SuperResParams.from_dict(dict(gib="g", albedo="a.tif", output="m.tif", settings="{stride: 50}"))
    with pytest.raises(ClassXRFError, match=r"m\.png: output \(OUTPUT\): the output must be a GeoTIFF"):
        specs.SuperResParams.from_dict(dict(gib="g", albedo="a.tif", output="m.png"))
    with pytest.raises(ClassXRFError, match="needs both the RMF and the ARF"):
        specs.SimulateParams.from_dict(dict(folder="f", rmf="r.rmf"))


def test_dict_round_trip_is_what_the_worker_receives():
    import json
    for spec in (specs.InvertParams.from_dict(dict(layer="a", out_layer="b", rmf="r", arf="a", background="b",
                                                   gain_fit="shared")),
                 specs.SuperResParams.from_dict(dict(gib="g", albedo="a.tif", output="m.tif", extent=(0, 0, 1, 1))),
                 specs.CoaddParams.from_dict(dict(inputs=["x", "y"], out_folder="o", out_layer="l.gpkg"))):
        wire = json.loads(json.dumps(spec.to_dict()))
        assert type(spec).from_dict(wire) == spec


def test_the_command_line_is_the_spec():
    """``cli STAGE ...`` gives the spec that the same values give by name (defaults, flags,
    positional arguments, yes/no options, several values)."""
    ap = cli.build_parser()
    a = ap.parse_args(["invert", "in.gpkg", "out.gpkg", "--rmf", "r.rmf", "--arf", "a.arf", "--background", "b.pha",
                       "--gain-slope", "1.0043", "--gain-offset", "0.0316", "--no-fit-norm", "--oxygen", "fixed45"])
    got = specs.InvertParams.from_dict({f.name: getattr(a, f.name) for f in specs.InvertParams.params()})
    assert got == specs.InvertParams.from_dict(dict(layer="in.gpkg", out_layer="out.gpkg", rmf="r.rmf", arf="a.arf",
                                                    background="b.pha", gain_slope=1.0043, gain_offset=0.0316,
                                                    fit_norm=False, oxygen="fixed45"))
    a = ap.parse_args(["coadd", "d1", "d2", "pha", "obs.gpkg", "--allowed-classes", "C", "M", "--stride", "12"])
    assert (a.inputs, a.out_folder, a.out_layer, a.allowed_classes, a.stride, a.window) == (
        ["d1", "d2"], "pha", "obs.gpkg", ["C", "M"], 12, 12)
    a = ap.parse_args(["superresolve", "gib", "alb.tif", "map.tif", "--extent", "5", "25", "15", "35"])
    assert specs.SuperResParams.from_dict({f.name: getattr(a, f.name) for f in
                                           specs.SuperResParams.params()}).region == (2, 4)
    commands = next(a for a in ap._actions if isinstance(a, type(ap._subparsers._group_actions[0]))).choices
    assert set(specs.SPECS) | {"demo"} == set(commands)       # every stage has its subcommand


def test_a_bad_value_on_the_command_line_is_one_line_and_status_2(tmp_path, capsys):
    assert cli.main(["coadd", str(tmp_path), str(tmp_path / "o"), str(tmp_path / "o.gpkg"), "--window", "0"]) == 2
    err = capsys.readouterr().err
    assert "window (WINDOW): must be at least 1" in err and "Traceback" not in err and err.count("\n") == 1


def test_schema_columns_are_what_the_stages_write():
    """The observation layer's schema lists exactly the columns each stage adds: the inversion's
    result columns, the co-add's attribute names (from a small co-add) and the solar fit's."""
    from class_qgis_plugin.invert import InversionResult
    n = 2
    fields = InversionResult.__dataclass_fields__
    arrays = {k: np.zeros((n, 8)) for k in ("wt", "err", "ok", "wt_prior")}
    arrays.update({k: np.zeros(n) for k in fields if k not in arrays})
    arrays.update(note=["", ""], notes=[], channel_energy=(None, None))
    cols = InversionResult(**{k: arrays[k] for k in fields}).columns()
    assert list(cols) == obslayer.columns("invert")
    assert len(obslayer.columns("invert")) == 8 * 3 + 6 + 14
    assert obslayer.columns("solarfit") == ["solar_file", "sol_T_MK", "sol_EM", "flare_cls", "goes_flux", "sol_stat"]


def test_schema_reader_and_writer(tmp_path):
    from shapely.geometry import box
    from class_qgis_plugin import geo
    path = tmp_path / "obs.gpkg"
    geo.write_vector(path, [box(0, 0, 1, 1)], dict(note=["mine"], exposure=np.array([96.0]), obs_id=np.array([7])))
    geoms, attrs = obslayer.read(path)
    assert attrs["obs_id"].dtype == np.int64 and attrs["exposure"][0] == 96.0
    with pytest.raises(ClassXRFError, match=r"obs.gpkg: t_start: column that solarfit needs missing from the "
                                            r"observation layer \(written by the coadd stage\)"):
        obslayer.read(path, "solarfit")
    obslayer.write(tmp_path / "out.gpkg", geoms, obslayer.add(attrs, "solarfit", dict(sol_T_MK=np.array([12.0]))))
    back = geo.read_vector(tmp_path / "out.gpkg")[1]
    assert list(back) == ["obs_id", "exposure", "sol_T_MK", "note"]   # schema order, then the user's column
    with pytest.raises(ValueError, match="'Al' is not a column of the solarfit stage"):
        obslayer.add(attrs, "solarfit", dict(Al=np.array([1.0])))
    with pytest.raises(ClassXRFError, match=r"bad.gpkg: exposure: column is not numeric"):
        obslayer.write(tmp_path / "bad.gpkg", geoms, dict(exposure=["long"]))
