"""Co-add: exact sums, no co-add across gaps, ISRO header conventions, footprints, strategies,
flare filter, night-side background, observation layer, cancel."""
import glob
import os
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from astropy.io import fits
from shapely.geometry import Polygon

from conftest import shared_data
from class_qgis_plugin import coadd, tasks
from class_qgis_plugin.errors import Cancelled, ClassXRFError
from class_qgis_plugin.progress import Progress


def _astropy_frames(folder):
    """(start, end, counts, header) of every file, read independently with astropy."""
    out = []
    for p in sorted(glob.glob(os.path.join(folder, "*.fits"))):
        with fits.open(p) as h:
            out.append((h[1].header["STARTIME"], h[1].header["ENDTIME"],
                        np.asarray(h[1].data["COUNTS"], float), dict(h[1].header)))
    return out


@pytest.fixture(scope="module")
def sliding_20240123(tmp_path_factory):
    folder = shared_data("class", "raw8s", "20240123")
    out = tmp_path_factory.mktemp("co")
    res = coadd.coadd_folder(folder, out, strategy="sliding", window=12, stride=1,
                             respfile="class_rmf_v1_2048ch.rmf", ancrfile="class_arf_v1.arf")
    return folder, res


@pytest.mark.realdata
def test_gap_free_run_coadds_to_exact_96s_sum(sliding_20240123):
    folder, res = sliding_20240123
    assert len(res.pha_paths) == 1
    frames = _astropy_frames(folder)
    run = [f for f in frames if "2024-01-23T03:32:22" <= f[0] <= "2024-01-23T03:33:50.609"]
    assert len(run) == 12
    expected = np.sum([f[2] for f in run], axis=0)
    with fits.open(res.pha_paths[0]) as h:
        h.verify("exception")
        d, hd = h["SPECTRUM"].data, h["SPECTRUM"].header
        assert np.array_equal(np.asarray(d["COUNTS"], float), expected)
        assert hd["EXPOSURE"] == 96.0 and hd["NFRAMES"] == 12
        assert hd["STARTIME"] == "2024-01-23T03:32:22.609"
        assert hd["ENDTIME"] == "2024-01-23T03:33:58.609"
        assert hd["MID_UTC"] == "2024-01-23T03:33:10.609"
        for key in ("SAT_ALT", "SOLARANG", "PHASEANG", "EMISNANG"):
            assert hd[key] == pytest.approx(np.mean([f[3][key] for f in run]), rel=1e-9)
        # the boresight: the mean direction (mean of the unit vectors), by hand
        la, lo = (np.radians([f[3][k] for f in run]) for k in ("BORE_LAT", "BORE_LON"))
        v = np.array([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)]).mean(axis=1)
        assert hd["BORE_LAT"] == pytest.approx(np.degrees(np.arcsin(v[2] / np.linalg.norm(v))), abs=1e-9)
        assert hd["BORE_LON"] == pytest.approx(np.degrees(np.arctan2(v[1], v[0])), abs=1e-9)
        assert hd["RESPFILE"] == "class_rmf_v1_2048ch.rmf" and hd["ANCRFILE"] == "class_arf_v1.arf"
        assert hd["PROGRAM"] == coadd.PROGRAM_NAME
        # this pass goes north (latitude grows with time) and V0/V3 are the north edge of each
        # frame: the merged strip takes V0/V3 from the last frame, V1/V2 from the first
        first, last = run[0][3], run[-1][3]
        for i, src in ((0, last), (1, first), (2, first), (3, last)):
            assert hd[f"V{i}_LAT"] == pytest.approx(src[f"V{i}_LAT"])
            assert hd[f"V{i}_LON"] == pytest.approx(src[f"V{i}_LON"])
    a = res.attributes
    assert a["exposure"] == [96.0] and a["n_frames"] == [12] and a["counts"] == [expected.sum()]
    assert a["t_start"] == ["2024-01-23T03:32:22.609"] and a["pha_path"] == res.pha_paths


@pytest.mark.realdata
def test_footprint_contains_every_frame(sliding_20240123):
    folder, res = sliding_20240123
    geom = res.geometries[0]
    assert geom.is_valid
    for start, _, _, h in _astropy_frames(folder):
        if start < "2024-01-23T03:32:22":
            continue
        poly = Polygon([(h[f"V{i}_LON"], h[f"V{i}_LAT"]) for i in range(4)])
        assert geom.buffer(1e-9).contains(poly), start
    # the union is no bigger than the hull of the frames (no spurious area)
    frames = [Polygon([(h[f"V{i}_LON"], h[f"V{i}_LAT"]) for i in range(4)])
              for s, _, _, h in _astropy_frames(folder) if s >= "2024-01-23T03:32:22"]
    from shapely.ops import unary_union
    assert geom.area == pytest.approx(unary_union(frames).area, rel=1e-6)


@pytest.mark.realdata
def test_observation_layer_round_trip(tmp_path):
    """The co-add stage writes the observation layer: the co-add's columns, in the lunar CRS."""
    from class_qgis_plugin.geo import read_vector
    folder = shared_data("class", "raw8s", "20240123")
    tasks.run("coadd", inputs=[folder], out_folder=tmp_path / "pha", out_layer=tmp_path / "obs.gpkg")
    geoms, attrs, crs = read_vector(tmp_path / "obs.gpkg")
    assert len(geoms) == 1
    for k in ("obs_id", "pha_path", "t_start", "t_end", "t_mid", "exposure", "n_frames",
              "counts", "solar_ang", "emis_ang", "phase_ang", "sat_alt", "bore_lat", "bore_lon"):
        assert k in attrs, k
    assert float(attrs["exposure"][0]) == 96.0 and "104903" in str(crs)


@pytest.mark.realdata
def test_isro_header_conventions():
    """Our co-added header carries every key of ISRO's co-added files, with the same corner
    geometry (V0/V3 north edge, V1/V2 south edge) and EXPOSURE = 8 s x frames."""
    isro = sorted(glob.glob(str(shared_data("class", "coadded_isro_20240101") / "*.fits")))
    assert len(isro) == 10
    folder = shared_data("class", "raw8s", "20200529")  # a southbound pass of 6 frames
    frames, _ = coadd.read_frames(coadd.list_l1_files(folder))
    assert frames[-1].bore_lat < frames[0].bore_lat
    for southbound, fr in ((True, frames),):
        values, _ = coadd.merge_header(fr)
        for p in isro:
            h = fits.getheader(p, 1)
            assert h["EXPOSURE"] == 96 and h["NAXIS2"] == 2048
            assert h["V0_LAT"] > h["V1_LAT"] and h["V3_LAT"] > h["V2_LAT"]
            missing = [k for k in h if k not in values and k not in (
                "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS",
                "TFORM1", "TFORM2", "TTYPE1", "TTYPE2", "TUNIT2", "EXTNAME", "TLMIN1", "TLMAX1",
                "EXPOSURE", "DETCHANS", "COMMENT", "HISTORY")]
            assert not missing, missing
        assert values["V0_LAT"] > values["V1_LAT"] and values["V3_LAT"] > values["V2_LAT"]
        # southbound: V0/V3 from the first frame, V1/V2 from the last one
        assert values["V0_LAT"] == fr[0].corner_lat[0] and values["V1_LAT"] == fr[-1].corner_lat[1]
        assert values["SOLARANG"] == pytest.approx(np.mean([f.solar_angle for f in fr]))
        # span of the strip: first frame's north edge to last frame's south edge
        assert values["V0_LAT"] - values["V1_LAT"] == pytest.approx(
            fr[0].corner_lat[0] - fr[-1].corner_lat[1])


@pytest.mark.realdata
def test_frames_with_gaps_are_never_summed(tmp_path):
    folder = shared_data("class", "raw8s", "20240123")
    res = coadd.coadd_folder(folder, tmp_path, window=12, min_frames=1)
    # runs in that folder: 1, 1, 2, 4 and 12 contiguous frames
    assert sorted(res.attributes["n_frames"]) == [1, 1, 2, 4, 12]
    for p in res.pha_paths:
        h = fits.getheader(p, 1)
        t0 = datetime.fromisoformat(h["STARTIME"])
        t1 = datetime.fromisoformat(h["ENDTIME"])
        assert (t1 - t0).total_seconds() == pytest.approx(h["EXPOSURE"]) == 8.0 * h["NFRAMES"]
    res2 = coadd.coadd_folder(folder, tmp_path / "w3", window=3, stride=1)
    # 4-frame run -> 2 windows, 12-frame run -> 10 windows; shorter runs none
    assert len(res2.pha_paths) == 12
    assert all(n == 3 for n in res2.attributes["n_frames"])
    res3 = coadd.coadd_folder(folder, tmp_path / "w4s4", window=4, stride=4)
    assert res3.attributes["n_frames"] == [4, 4, 4, 4]


def _synthetic_spectrum(rng, scale, n=2048):
    """Three Gaussian lines (Mg, Al, Si) on a continuum stepping at the Si edge, Poisson."""
    e = (np.arange(n) + 0.5) * 0.0135
    mu = scale * (1.0 * np.exp(-e / 1.5) * np.where(e < 1.839, 1.0, 0.75))
    for el, amp in zip(coadd.LINE_KEV, (3.0, 4.0, 5.0)):
        mu = mu + scale * amp * 0.0135 * np.exp(-0.5 * ((e - el) / 0.05) ** 2) / (0.05 * 2.5066)
    return rng.poisson(mu).astype(float)


def test_line_fit_chi2_statistics():
    rng = np.random.default_rng(3)
    # with many counts and the right model, the reduced chi-square is ~1 (Neyman, dof ~95)
    bright = [coadd.line_fit_chi2(_synthetic_spectrum(rng, 400.0))[0] for _ in range(3)]
    assert 0.75 < np.mean(bright) < 1.3
    # with very few counts it is far below 0.8: the running check must add frames
    faint = coadd.line_fit_chi2(_synthetic_spectrum(rng, 1.0))[0]
    assert faint < 0.6


def _write_frames(folder, spectra, start, corners_lon=(3.4, 3.4, 4.1, 4.1), step_lat=0.42,
                  solar=30.0, gaps=()):
    t = start
    os.makedirs(folder, exist_ok=True)
    for k, c in enumerate(spectra):
        if k in gaps:
            t += timedelta(seconds=40)
        lat0 = -10.0 + k * step_lat
        h = fits.Header()
        t1 = t + timedelta(seconds=8)
        fmt = lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}"
        for key, v in dict(EXPOSURE=8.0, STARTIME=fmt(t), ENDTIME=fmt(t1), SAT_ALT=100.0 + k,
                           BORE_LAT=lat0 - 0.5, BORE_LON=float(np.mean(corners_lon)),
                           SOLARANG=solar + k, PHASEANG=solar, EMISNANG=1e-9, GAIN=13.5,
                           V0_LAT=lat0, V1_LAT=lat0 - 1.05, V2_LAT=lat0 - 1.05, V3_LAT=lat0,
                           V0_LON=corners_lon[0], V1_LON=corners_lon[1], V2_LON=corners_lon[2],
                           V3_LON=corners_lon[3]).items():
            h[key] = v
        cols = [fits.Column(name="CHANNEL", format="I", array=np.arange(c.size)),
                fits.Column(name="COUNTS", format="E", array=c)]
        hdu = fits.BinTableHDU.from_columns(cols, header=h, name="SPECTRUM")
        stamp = t.strftime("%Y%m%dT%H%M%S")
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(os.path.join(folder, f"f_{stamp}.fits"))
        t = t1


def test_running_and_combined_strategies(tmp_path):
    rng = np.random.default_rng(5)
    spectra = [_synthetic_spectrum(rng, 25.0) for _ in range(30)]
    t0 = datetime(2021, 8, 27, 21, 0, 0, tzinfo=timezone.utc)
    _write_frames(tmp_path / "in", spectra, t0, gaps=(20,))
    run = coadd.coadd_folder(tmp_path / "in", tmp_path / "run", strategy="running", window=4)
    assert run.pha_paths
    used = 0
    for p, chi2, n in zip(run.pha_paths, run.attributes["chi2_red"], run.attributes["n_frames"]):
        h = fits.getheader(p, 1)
        assert h["EXPOSURE"] == 8.0 * n and h["COADDSTR"] == "running"
        # the stopping rule, checked with an independent refit of the written counts
        counts = fits.getdata(p, 1)["COUNTS"].astype(float)
        assert coadd.line_fit_chi2(counts)[0] == pytest.approx(chi2)
        assert chi2 >= 0.8
        # one frame fewer was not yet good enough
        if n > 1:
            start = datetime.fromisoformat(h["STARTIME"]).replace(tzinfo=timezone.utc)
            k0 = int(round((start - t0).total_seconds() / 8.0))
            k0 -= 5 if k0 > 20 else 0  # the 40-s gap before frame 20
            assert coadd.line_fit_chi2(np.sum(spectra[k0:k0 + n - 1], axis=0))[0] < 0.8
        used += n
    assert used <= 30
    # no window spans the gap between frames 19 and 20
    gap_t = (t0 + timedelta(seconds=180)).strftime("%Y-%m-%dT%H:%M:%S.000")  # inside the gap
    for s, e in zip(run.attributes["t_start"], run.attributes["t_end"]):
        assert not (s < gap_t < e)
    comb = coadd.coadd_folder(tmp_path / "in", tmp_path / "comb", strategy="combined", window=2,
                              stride=2)
    for chi2, n in zip(comb.attributes["chi2_red"], comb.attributes["n_frames"]):
        assert chi2 >= 0.8 and n >= 2


def test_antimeridian_footprint_and_cancel(tmp_path):
    rng = np.random.default_rng(2)
    spectra = [rng.poisson(1.0, 2048).astype(float) for _ in range(4)]
    t0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
    _write_frames(tmp_path / "in", spectra, t0, corners_lon=(179.7, 179.7, -179.6, -179.6))
    res = coadd.coadd_folder(tmp_path / "in", tmp_path / "out", window=4)
    g = res.geometries[0]
    minx, miny, maxx, maxy = g.bounds
    assert -180 <= minx and maxx <= 180 and g.is_valid
    # true area: 0.7 deg of longitude x (3 x 0.42 + 1.05) deg of latitude, split in two parts
    assert g.area == pytest.approx(0.7 * (3 * 0.42 + 1.05), rel=1e-6)

    class Stop(Progress):
        cancelled = True
    before = sorted(os.listdir(tmp_path / "out"))
    with pytest.raises(Cancelled):
        coadd.coadd_folder(tmp_path / "in", tmp_path / "out", window=2, progress=Stop())
    assert sorted(os.listdir(tmp_path / "out")) == before


def test_flare_filter(tmp_path):
    rng = np.random.default_rng(4)
    spectra = [rng.poisson(1.0, 2048).astype(float) for _ in range(10)]
    t0 = datetime(2021, 8, 27, 21, 0, 0, tzinfo=timezone.utc)
    _write_frames(tmp_path / "in", spectra, t0)
    sod = 21 * 3600
    csv = tmp_path / "flares.csv"
    csv.write_text(
        "date,post_fit_start_time,post_fit_peak_time,post_fit_end_time,flare_class_with_bg\n"
        f"20210827,{sod - 100},{sod},{sod + 40},C2\n"      # frames 0..4 (mid times 4..36 s)
        f"20210827,{sod + 41},{sod + 50},{sod + 60},A5\n"  # frames 5, 6, 7 (mid 44, 52, 60)
        f"20210827,{sod + 61},{sod + 70},{sod + 100},M1\n"  # frames 8, 9 (mid 68, 76)
    )
    res = coadd.coadd_folder(tmp_path / "in", tmp_path / "out", window=1, flare_catalog=csv)
    def offsets(r):
        return [int((datetime.fromisoformat(t).replace(tzinfo=timezone.utc) - t0).total_seconds())
                for t in r.attributes["t_start"]]
    kept = offsets(res)
    # frame k starts at k*8 s; mid = k*8+4: C2 keeps 0..4, A5 rejects 5..7 (ends included),
    # M1 keeps 8, 9
    assert kept == [0, 8, 16, 24, 32, 64, 72]
    res2 = coadd.coadd_folder(tmp_path / "in", tmp_path / "out2", window=1, flare_catalog=csv,
                              allowed_classes=("A",))
    assert offsets(res2) == [40, 48, 56]


@pytest.mark.realdata
def test_real_flare_catalogue():
    import csv
    from class_qgis_plugin.flares import read_flare_catalog
    p = shared_data("flares", "SD-CH2.csv")
    cat = read_flare_catalog(p)
    with open(p) as fh:
        rows = list(csv.DictReader(fh))
    assert len(cat) == len(rows) == 6266
    assert (cat.letter == "M").sum() == sum(r["flare_class_with_bg"].startswith("M") for r in rows)
    # the first catalogue row: 2022-11-04, 82785..83655 s, class B5
    t = datetime(2022, 11, 4, tzinfo=timezone.utc) + timedelta(seconds=83000)
    assert cat.classes_at([t])[0] in ("B5",) or cat.in_allowed_flare([t])[0]


@pytest.mark.realdata
def test_night_side_background(tmp_path):
    folder = shared_data("class", "raw8s", "20231022")
    frames, _ = coadd.read_frames(coadd.list_l1_files(folder))
    out = coadd.build_background(tmp_path / "bkg.pha", frames)
    night = []
    for p in sorted(glob.glob(str(folder / "*.fits"))):
        with fits.open(p) as h:
            if h[1].header["SOLARANG"] > 90:
                night.append(np.asarray(h[1].data["COUNTS"], float))
    assert len(night) == 6
    with fits.open(out) as h:
        assert np.array_equal(np.asarray(h[1].data["COUNTS"], float), np.sum(night, axis=0))
        assert h[1].header["EXPOSURE"] == 48.0 and h[1].header["HDUCLAS2"] == "BKG"
    given = coadd.build_background(tmp_path / "b2.pha", None,
                                   shared_data("class", "background", "background_allevents.fits"))
    assert fits.getheader(given, 1)["EXPOSURE"] == 441000.0
    res = coadd.coadd_folder(folder, tmp_path / "co", window=1, make_background=True)
    assert all(fits.getheader(p, 1)["BACKFILE"] == res.background_path for p in res.pha_paths)


def test_bad_file_in_folder_names_it(tmp_path):
    rng = np.random.default_rng(0)
    _write_frames(tmp_path / "in", [rng.poisson(1.0, 2048).astype(float)] * 2,
                  datetime(2020, 1, 1, tzinfo=timezone.utc))
    (tmp_path / "in" / "zz_broken.fits").write_bytes(b"garbage" * 100)
    with pytest.raises(ClassXRFError, match="zz_broken.fits"):
        coadd.coadd_folder(tmp_path / "in", tmp_path / "out", window=2)
    res = coadd.coadd_folder(tmp_path / "in", tmp_path / "out", window=2, skip_bad=True)
    assert len(res.pha_paths) == 1 and "zz_broken.fits" in res.skipped[0][0]
    with pytest.raises(ClassXRFError, match="STRATEGY"):
        coadd.coadd_folder(tmp_path / "in", tmp_path / "out", strategy="nope")


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class _CancelAfter(Progress):
    """Cancels at the n-th check (reading frames, planning, writing spectra)."""

    def __init__(self, n, phase=None):
        self.n, self.phase, self.seen, self.msg = n, phase, 0, ""

    def set(self, fraction, message=None):
        self.msg = message or self.msg

    @property
    def cancelled(self):
        if self.phase and self.phase not in self.msg:
            return False
        self.seen += 1
        return self.seen > self.n


@pytest.mark.parametrize("phase", [None, "writing spectrum"])
def test_cancel_while_reading_or_writing_leaves_an_existing_result_untouched(tmp_path, phase):
    """Cancelled while reading the frames or while writing the spectra, over an earlier result: the
    output folder and the layer hold exactly what they held (no PHA added or rewritten, no layer)."""
    rng = np.random.default_rng(8)
    _write_frames(tmp_path / "in", [rng.poisson(2.0, 2048).astype(float) for _ in range(40)],
                  datetime(2020, 1, 1, tzinfo=timezone.utc))
    out = tmp_path / "out"
    stage = dict(inputs=[str(tmp_path / "in")], out_folder=out, out_layer=out / "obs.gpkg")
    tasks.run("coadd", stage, window=12, stride=12)
    before = _tree(out)
    with pytest.raises(Cancelled):       # the first check: reading; or while writing
        tasks.run("coadd", dict(stage, window=4, stride=1), progress=_CancelAfter(0, phase))
    assert _tree(out) == before


def test_a_run_killed_while_committing_is_completed_by_the_next_run(tmp_path):
    """kill -9 in the middle of moving the staged spectra into place: the next co-add into that
    folder first completes the interrupted one (the folder then holds its whole result), then writes
    its own; nothing of the staging is left."""
    import signal
    import subprocess
    import sys
    from class_qgis_plugin import transact
    rng = np.random.default_rng(9)
    _write_frames(tmp_path / "in", [rng.poisson(2.0, 2048).astype(float) for _ in range(24)],
                  datetime(2020, 1, 1, tzinfo=timezone.utc))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = (f"import os, signal, sys\nsys.path.insert(0, {root!r})\nfrom class_qgis_plugin import tasks, transact\n"
              "real, n, commit = os.replace, [0], transact.Transaction.commit\n"
              "def rep(a, b):\n    n[0] += 1\n    if n[0] == 5: os.kill(os.getpid(), signal.SIGKILL)\n    real(a, b)\n"
              "def patched(self):\n    os.replace = rep\n    commit(self)\n"
              "transact.Transaction.commit = patched\n"
              f"tasks.run('coadd', inputs=[{str(tmp_path / 'in')!r}], out_folder={str(tmp_path / 'out')!r}, window=4, "
              f"stride=4, out_layer={str(tmp_path / 'out' / 'obs.gpkg')!r})\n")
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == -signal.SIGKILL
    assert any(p.name.startswith(transact.PREFIX) for p in (tmp_path / "out").iterdir())
    transact.recover(tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len([n for n in names if n.endswith(".fits")]) == 6 and "obs.gpkg" in names
    assert not any(n.startswith(transact.PREFIX) for n in names)


def test_output_folder_errors_are_one_clear_sentence(tmp_path):
    rng = np.random.default_rng(1)
    _write_frames(tmp_path / "in", [rng.poisson(2.0, 2048).astype(float) for _ in range(4)],
                  datetime(2020, 1, 1, tzinfo=timezone.utc))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ClassXRFError, match=r"afile: the output folder is a file"):
        coadd.coadd_folder(tmp_path / "in", tmp_path / "afile", window=4)
    with pytest.raises(ClassXRFError, match=r"/proc/classxrf_no.*cannot create the output folder"):
        coadd.coadd_folder(tmp_path / "in", "/proc/classxrf_no/out", window=4)
    # a layer that cannot be written (its name is taken by a folder): nothing is written at all
    (tmp_path / "taken.gpkg").mkdir()
    with pytest.raises(ClassXRFError, match="taken.gpkg"):
        tasks.run("coadd", inputs=[tmp_path / "in"], out_folder=tmp_path / "out", window=4,
                  out_layer=tmp_path / "taken.gpkg")
    assert not (tmp_path / "out").exists() or not any(p.suffix == ".fits" for p in (tmp_path / "out").iterdir())


def test_every_frame_not_used_is_reported_with_its_reason(tmp_path):
    """A 1024-channel frame inside a run of 2048-channel frames breaks the run: the frames that fall
    out are each reported (fewer than MIN_FRAMES, the change of channel count named); a duplicate
    file with the same counts is reported as a duplicate; with other counts it is an error naming
    both files."""
    rng = np.random.default_rng(6)
    spectra = [rng.poisson(2.0, 2048).astype(float) for _ in range(8)]
    spectra[5] = rng.poisson(4.0, 1024).astype(float)
    t0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
    _write_frames(tmp_path / "in", spectra, t0)
    res = coadd.coadd_folder(tmp_path / "in", tmp_path / "out", window=4, stride=4)
    assert res.attributes["n_frames"] == [4]
    why = dict(res.unused)
    assert len(why) == 4 and all("fewer than MIN_FRAMES = 4" in w for w in why.values())
    assert sum("1024 channels among 2048-channel frames" in w for w in why.values()) == 1
    # the same frame twice with the same counts, then with other counts
    src = sorted((tmp_path / "in").glob("*.fits"))[0]
    dup = tmp_path / "in" / "zz_copy.fits"
    dup.write_bytes(src.read_bytes())
    res2 = coadd.coadd_folder(tmp_path / "in", tmp_path / "out2", window=4, stride=4)
    assert "a duplicate" in dict(res2.unused)[str(dup)]
    with fits.open(dup, mode="update") as h:
        h[1].data["COUNTS"][10] += 5
    with pytest.raises(ClassXRFError, match=r"zz_copy.fits.*same interval.*different counts"):
        coadd.coadd_folder(tmp_path / "in", tmp_path / "out3", window=4)


def test_scattered_frames_say_what_to_change_and_min_frames_one_keeps_each(tmp_path):
    rng = np.random.default_rng(7)
    _write_frames(tmp_path / "in", [rng.poisson(2.0, 2048).astype(float) for _ in range(5)],
                  datetime(2020, 1, 1, tzinfo=timezone.utc), gaps=(1, 2, 3, 4))
    with pytest.raises(ClassXRFError, match=r"longest run of contiguous frames has 1.*lower MIN_FRAMES to 1"):
        coadd.coadd_folder(tmp_path / "in", tmp_path / "out", window=12)
    res = coadd.coadd_folder(tmp_path / "in", tmp_path / "out", window=12, min_frames=1)
    assert res.attributes["n_frames"] == [1] * 5 and res.attributes["exposure"] == [8.0] * 5


def test_a_window_over_the_pole_gets_the_frames_union_and_a_3d_mean_boresight():
    """Frames of a pass over the north pole (along the 0 / 180 deg meridian): the co-added
    footprint's area on the sphere equals the union of the frames' quadrilaterals measured in a polar
    Lambert equal-area projection (pyproj; built independently from the corners), where merging in
    lon/lat overstates it; the boresight is the mean direction (the pole), not the mean of latitudes
    and longitudes."""
    from types import SimpleNamespace
    from pyproj import Transformer
    from shapely.geometry import Polygon
    from shapely.ops import unary_union
    from class_qgis_plugin import geo
    R = geo.MOON_RADIUS_KM
    frames = []
    for t in np.radians(np.linspace(88.3, 91.7, 9)):        # centres 0.425 deg (12.9 km) apart
        p = np.array([np.cos(t), 0.0, np.sin(t)])
        along, across = np.array([-np.sin(t), 0.0, np.cos(t)]), np.array([0.0, 1.0, 0.0])
        corners = [p + (sa * 6.45 * along + sc * 6.25 * across) / R for sa, sc in ((1, 1), (1, -1), (-1, -1), (-1, 1))]
        lat, lon = geo.to_latlon(np.array(corners))
        blat, blon = geo.to_latlon(p)
        frames.append(SimpleNamespace(corner_lat=lat, corner_lon=lon, bore_lat=float(blat), bore_lon=float(blon)))
    ours = geo.footprint_area_km2(coadd._footprint(frames))
    tr = Transformer.from_proj(f"+proj=longlat +R={R * 1000:.0f}", f"+proj=laea +lat_0=90 +lon_0=0 +R={R * 1000:.0f} "
                               "+units=km", always_xy=True)
    quads = [Polygon(zip(*tr.transform(f.corner_lon, f.corner_lat))) for f in frames]
    truth = unary_union(quads).area
    assert truth == pytest.approx(12.5 * (8 * 0.425 * np.pi / 180 * R + 12.9), rel=0.02)   # strip by hand
    assert ours == pytest.approx(truth, rel=0.01)
    lonlat = geo.union_footprints([geo.footprint_polygon(f.corner_lat, f.corner_lon) for f in frames])
    assert geo.footprint_area_km2(lonlat) > 1.05 * truth      # what merging in lon/lat gives (+8 % here)
    lat, lon = coadd.mean_direction([f.bore_lat for f in frames], [f.bore_lon for f in frames])
    assert lat == pytest.approx(90.0, abs=1e-6)
    naive = np.mean([f.bore_lat for f in frames])
    assert naive < 89.4                                        # the mean of latitudes is off the pole


def test_frames_without_a_footprint_are_reported_and_empty_geometries_refused(tmp_path):
    from shapely.geometry import Polygon
    from class_qgis_plugin import geo
    rng = np.random.default_rng(12)
    _write_frames(tmp_path / "in", [rng.poisson(2.0, 2048).astype(float) for _ in range(5)],
                  datetime(2020, 1, 1, tzinfo=timezone.utc))
    last = sorted((tmp_path / "in").glob("*.fits"))[-1]
    with fits.open(last, mode="update") as h:
        for i in range(4):
            h[1].header[f"V{i}_LAT"] = 0.0
            h[1].header[f"V{i}_LON"] = 0.0
    res = coadd.coadd_folder(tmp_path / "in", tmp_path / "out", window=4)
    assert res.attributes["n_frames"] == [4] and "no footprint" in dict(res.unused)[str(last)]
    with pytest.raises(ClassXRFError, match=r"bad.gpkg: obs_id 7 has an empty footprint"):
        geo.write_vector(tmp_path / "bad.gpkg", [Polygon([(0, 0), (1, 0), (1, 1)]), Polygon()],
                         dict(obs_id=np.array([6, 7])))
