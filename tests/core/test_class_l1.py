"""CLASS L1 reader: real files (fast path == astropy), rebinning, and bad files."""
import glob
from datetime import datetime, timezone

import numpy as np
import pytest
from astropy.io import fits

from conftest import shared_data
from class_qgis_plugin.class_l1 import read_class_l1, rebin_channels
from class_qgis_plugin.errors import ClassXRFError

RAW = ("class", "raw8s", "20240123", "ch2_cla_l1_20240123T033222609_20240123T033230609.fits")


@pytest.mark.realdata
def test_reads_raw_frame_like_astropy():
    p = shared_data(*RAW)
    f = read_class_l1(p)
    with fits.open(p) as h:
        d, hd = h[1].data, h[1].header
        assert np.array_equal(f.counts, np.asarray(d["COUNTS"], float))
        assert f.n_channels == 2048 and f.first_channel == 0
        assert f.exposure == hd["EXPOSURE"] == 8.0
        assert np.allclose(f.corner_lat, [hd[f"V{i}_LAT"] for i in range(4)])
        assert np.allclose(f.corner_lon, [hd[f"V{i}_LON"] for i in range(4)])
        assert (f.bore_lat, f.bore_lon, f.sat_alt) == (hd["BORE_LAT"], hd["BORE_LON"], hd["SAT_ALT"])
        assert (f.solar_angle, f.phase_angle) == (hd["SOLARANG"], hd["PHASEANG"])
        assert f.emission_angle == pytest.approx(hd["EMISNANG"])
    assert f.start == datetime(2024, 1, 23, 3, 32, 22, 609000, tzinfo=timezone.utc)
    assert f.end == datetime(2024, 1, 23, 3, 32, 30, 609000, tzinfo=timezone.utc)
    assert f.mid == datetime(2024, 1, 23, 3, 32, 26, 609000, tzinfo=timezone.utc)


@pytest.mark.realdata
def test_fast_path_equals_astropy_path_on_all_real_files():
    files = sorted(glob.glob(str(shared_data("class", "raw8s") / "*" / "*.fits")))
    files += sorted(glob.glob(str(shared_data("class", "x2abund_test") / "*_1024.fits")))
    assert len(files) > 100
    for p in files:
        a, b = read_class_l1(p), read_class_l1(p, use_fast=False)
        assert np.array_equal(a.counts, b.counts), p
        assert (a.start, a.end, a.mid, a.exposure) == (b.start, b.end, b.mid, b.exposure)
        assert np.array_equal(a.corner_lat, b.corner_lat) and np.array_equal(a.corner_lon, b.corner_lon)
        assert (a.solar_angle, a.emission_angle, a.sat_alt) == (b.solar_angle, b.emission_angle, b.sat_alt)


@pytest.mark.realdata
def test_1024_channel_file_and_rebin():
    f = read_class_l1(shared_data("class", "x2abund_test",
                                  "ch2_cla_l1_20210827T210316000_20210827T210332000_1024.fits"))
    assert f.n_channels == 1024 and f.exposure == 16.0
    raw = read_class_l1(shared_data(*RAW))
    r = rebin_channels(raw.counts)
    assert r.shape == (1024,)
    assert np.array_equal(r, raw.counts[0::2] + raw.counts[1::2])
    assert r.sum() == raw.counts.sum()
    assert np.array_equal(rebin_channels(np.arange(8)[None, :], 4), [[6, 22]])
    with pytest.raises(ClassXRFError):
        rebin_channels(np.ones(10), 4)


def _write_frame(path, n=2048, drop=(), set_keys=None):
    """A synthetic L1 frame written with astropy, with keys dropped or changed."""
    cols = [fits.Column(name="CHANNEL", format="I", array=np.arange(n)),
            fits.Column(name="COUNTS", format="E", array=np.ones(n))]
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    keys = dict(EXPOSURE=8.0, STARTIME="2024-01-23T03:32:22.609",
                ENDTIME="2024-01-23T03:32:30.609", MID_UTC="2024-01-23T03:32:26.609",
                SAT_ALT=76.2, BORE_LAT=-11.1, BORE_LON=3.7, SOLARANG=32.1, PHASEANG=32.1,
                EMISNANG=4.4e-9, V0_LAT=-10.6, V1_LAT=-11.7, V2_LAT=-11.7, V3_LAT=-10.6,
                V0_LON=3.46, V1_LON=3.48, V2_LON=4.12, V3_LON=4.10)
    keys.update(set_keys or {})
    for k, v in keys.items():
        if k not in drop:
            hdu.header[k] = v
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return path


def test_synthetic_frame_reads(tmp_path):
    f = read_class_l1(_write_frame(tmp_path / "ok.fits"))
    assert f.counts.sum() == 2048 and f.bore_lat == -11.1


@pytest.mark.parametrize("drop,keys,key", [
    (("SOLARANG",), None, "SOLARANG"),
    (("STARTIME",), None, "STARTIME"),
    (("V2_LON",), None, "V2_LON"),
    ((), {"EXPOSURE": 0.0}, "EXPOSURE"),
    ((), {"SAT_ALT": "abc"}, "SAT_ALT"),
    ((), {"V1_LAT": 123.0}, "V1_LAT"),
])
def test_bad_keys_name_file_and_key(tmp_path, drop, keys, key):
    p = _write_frame(tmp_path / "bad.fits", drop=drop, set_keys=keys)
    for fast in (True, False):
        with pytest.raises(ClassXRFError) as exc:
            read_class_l1(p, use_fast=fast)
        assert exc.value.key == key and "bad.fits" in str(exc.value)


def test_nan_corner(tmp_path):
    p = _write_frame(tmp_path / "nan.fits")
    raw = bytearray(p.read_bytes())
    i = raw.find(b"V3_LAT  =")
    raw[i:i + 80] = b"V3_LAT  =                  NaN / corner".ljust(80)
    p.write_bytes(bytes(raw))
    with pytest.raises(ClassXRFError) as exc:
        read_class_l1(p)
    assert exc.value.key == "V3_LAT" and "nan.fits" in str(exc.value)


def test_wrong_channel_count_truncated_and_not_fits(tmp_path):
    with pytest.raises(ClassXRFError) as exc:
        read_class_l1(_write_frame(tmp_path / "n512.fits", n=512))
    assert exc.value.key == "NAXIS2" and "n512.fits" in str(exc.value)
    good = _write_frame(tmp_path / "g.fits").read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(good[:len(good) - 5000])
    with pytest.raises(ClassXRFError) as exc:
        read_class_l1(cut)
    assert "cut.fits" in str(exc.value) and "truncated" in str(exc.value)
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"PK\x03\x04 not a fits file" * 10)
    with pytest.raises(ClassXRFError) as exc:
        read_class_l1(junk)
    assert "junk.fits" in str(exc.value) and exc.value.key == "SIMPLE"
    with pytest.raises(ClassXRFError, match="missing.fits"):
        read_class_l1(tmp_path / "missing.fits")
