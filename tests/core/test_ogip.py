"""OGIP PHA/RMF/ARF read and write: round trips, type II, RATE, and the real CLASS responses."""
import numpy as np
import pytest
from astropy.io import fits

from conftest import shared_data
from class_qgis_plugin.errors import ClassXRFError
from class_qgis_plugin.ogip import (ARF, PHA, RMF, header_float, parse_card_image, read_arf,
                                    read_pha, read_pha_typeii, read_rmf, write_arf, write_pha,
                                    write_rmf)


def test_pha_round_trip_with_all_columns(tmp_path):
    rng = np.random.default_rng(1)
    n = 64
    counts = rng.poisson(20, n).astype(float)
    pha = PHA(counts=counts, channel=np.arange(1, n + 1), exposure=123.5,
              stat_err=np.sqrt(counts + 1), quality=(np.arange(n) < 3).astype(int),
              grouping=np.where(np.arange(n) % 2 == 0, 1, -1), backscal=0.25,
              areascal=np.linspace(0.5, 1.0, n),
              header={"TELESCOP": "CHANDRAYAAN-2", "RESPFILE": "x.rmf", "SOLARANG": 31.5,
                      "BACKFILE": "/a/very/long/folder/" + "sub'dir/" * 20 + "bkg.pha",
                      "NOTE": "it's a test"})
    out = tmp_path / "a.pha"
    write_pha(out, pha)
    with fits.open(out) as h:  # astropy validates the file we wrote byte by byte
        h.verify("exception")
        assert h["SPECTRUM"].header["EXPOSURE"] == 123.5
        assert np.array_equal(h["SPECTRUM"].data["COUNTS"], counts)
    back = read_pha(out)
    assert np.array_equal(back.counts, counts)
    assert np.array_equal(back.channel, np.arange(1, n + 1))
    assert np.allclose(back.stat_err, np.sqrt(counts + 1))
    assert np.array_equal(back.quality, pha.quality)
    assert np.array_equal(back.grouping, pha.grouping)
    assert back.backscal == 0.25 and np.allclose(back.areascal, pha.areascal)
    assert back.header["RESPFILE"] == "x.rmf" and back.header["SOLARANG"] == 31.5
    assert back.header["NOTE"] == "it's a test"
    # a path longer than one card survives (OGIP long-string CONTINUE cards)
    assert back.header["BACKFILE"] == pha.header["BACKFILE"]
    with fits.open(out) as h:
        assert h[1].header["BACKFILE"] == pha.header["BACKFILE"]


def test_rate_file_is_converted_to_counts(tmp_path):
    rate = np.array([0.5, 1.0, 2.0, 0.0])
    cols = [fits.Column(name="CHANNEL", format="J", array=np.arange(4)),
            fits.Column(name="RATE", format="E", array=rate),
            fits.Column(name="STAT_ERR", format="E", array=np.full(4, 0.1))]
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    hdu.header["EXPOSURE"] = 10.0
    hdu.header["HDUCLAS3"] = "RATE"
    p = tmp_path / "rate.pha"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(p)
    pha = read_pha(p)
    assert np.allclose(pha.counts, [5, 10, 20, 0])
    assert np.allclose(pha.stat_err, 1.0)


def test_type_ii_read(tmp_path):
    counts = np.arange(3 * 8, dtype=float).reshape(3, 8)
    cols = [fits.Column(name="SPEC_NUM", format="J", array=[1, 2, 3]),
            fits.Column(name="CHANNEL", format="8J", array=np.tile(np.arange(8), (3, 1))),
            fits.Column(name="COUNTS", format="8D", array=counts),
            fits.Column(name="EXPOSURE", format="D", array=[10.0, 20.0, 40.0])]
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    hdu.header["HDUCLAS4"] = "TYPE:II"
    hdu.header["BACKSCAL"] = 0.5
    p = tmp_path / "t2.pha"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(p)
    spectra = read_pha_typeii(p)
    assert len(spectra) == 3
    for k, s in enumerate(spectra):
        assert np.array_equal(s.counts, counts[k])
        assert s.backscal == 0.5
    assert [s.exposure for s in spectra] == [10.0, 20.0, 40.0]
    with pytest.raises(ClassXRFError, match="type II"):
        read_pha(p)


def _banded_rmf(first):
    n_e, n_chan = 40, 30
    m = np.zeros((n_e, n_chan))
    for i in range(n_e):
        j = min(i * n_chan // n_e, n_chan - 1)
        m[i, max(j - 1, 0):j + 2] = [0.2, 0.6, 0.2][: min(j + 2, n_chan) - max(j - 1, 0)]
        if i % 5 == 0 and j + 6 < n_chan:
            m[i, j + 5] = 0.05  # a second group (escape-peak like): N_GRP = 2
    e = np.linspace(0.5, 4.5, n_e + 1)
    ce = np.linspace(0.5, 4.5, n_chan + 1)
    return RMF(energ_lo=e[:-1], energ_hi=e[1:], e_min=ce[:-1], e_max=ce[1:], matrix=m,
               first_channel=first)


@pytest.mark.parametrize("first", [0, 1])
def test_rmf_round_trip_multi_group(tmp_path, first):
    rmf = _banded_rmf(first)
    p = tmp_path / "r.rmf"
    write_rmf(p, rmf)
    with fits.open(p) as h:
        h.verify("exception")
        ngrp = h["MATRIX"].data["N_GRP"]
        assert ngrp.max() == 2  # really exercises N_GRP > 1 with variable-length F_CHAN
        assert h["MATRIX"].header["TLMIN4"] == first
    back = read_rmf(p)
    assert back.first_channel == first
    assert np.allclose(back.matrix, rmf.matrix, atol=1e-7)
    assert np.allclose(back.energ_lo, rmf.energ_lo, atol=1e-6)
    # folding: a photon in bin i lands with the weights of row i
    x = np.zeros(40)
    x[10] = 100.0
    assert np.allclose(back.fold(x), 100.0 * rmf.matrix[10], atol=1e-4)


def test_arf_round_trip_and_e_low_columns(tmp_path):
    arf = ARF(energ_lo=np.linspace(1, 2, 11)[:-1], energ_hi=np.linspace(1, 2, 11)[1:],
              specresp=np.linspace(10, 20, 10))
    p = tmp_path / "a.arf"
    write_arf(p, arf)
    back = read_arf(p)
    assert np.allclose(back.specresp, arf.specresp, rtol=1e-6)
    cols = [fits.Column(name="E_LOW", format="E", array=arf.energ_lo),
            fits.Column(name="E_HIGH", format="E", array=arf.energ_hi),
            fits.Column(name="SPECRESP", format="E", array=arf.specresp)]
    q = tmp_path / "b.arf"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="SPECRESP")]
                 ).writeto(q)
    back2 = read_arf(q)
    assert np.allclose(back2.energ_hi, arf.energ_hi) and np.allclose(back2.specresp, arf.specresp)


@pytest.mark.realdata
@pytest.mark.parametrize("name,channels,width", [
    (("class", "response", "class_rmf_v1_2048ch.rmf"), 2048, 0.0135),
    (("class", "x2abund_test", "class_rmf_v1.rmf"), 1024, 0.027)])
def test_real_rmf_delta_lines_peak_at_their_channel(name, channels, width):
    """The CLASS RMFs carry no TLMIN4, only a bare TLMIN = 0. Read as XSPEC reads them (first channel
    1, so F_CHAN 0 is dropped and every row lands one channel lower than its F_CHAN says), a line of
    known energy (Mg, Al, Si, Ca, Fe K alpha) peaks 0.5 to 2.5 channels below its energy; counted from
    0 (what the bare key suggests the files' authors meant) within 1.5 channels. The one-channel
    difference is what ISRO's gain offset (0.0316 keV, calibrated in XSPEC) makes up for."""
    rmf = read_rmf(shared_data(*name))
    assert rmf.matrix.shape == (2048, channels) and rmf.first_channel == 1
    assert any("TLMIN" in n for n in rmf.notes) and any("dropped" in n for n in rmf.notes)
    # rows are probabilities: sum to ~1 where the response is defined
    assert np.allclose(rmf.matrix[200:1500].sum(axis=1), 1.0, atol=1e-3)
    centre = 0.5 * (rmf.e_min + rmf.e_max)
    for e_kev in (1.2536, 1.4866, 1.7398, 3.6917, 6.4039):  # Mg, Al, Si, Ca, Fe K-alpha
        i = int(np.searchsorted(rmf.energ_hi, e_kev))
        x = np.zeros(rmf.n_energies)
        x[i] = 1.0
        j = int(np.argmax(rmf.fold(x)))
        assert -2.5 * width <= centre[j] - e_kev <= -0.5 * width, (e_kev, centre[j])
        assert abs(centre[j + 1] - e_kev) <= 1.5 * width, (e_kev, centre[j + 1])


@pytest.mark.realdata
def test_real_arfs_and_pha_with_odd_cards():
    a1 = read_arf(shared_data("class", "response", "class_arf_v1.arf"))
    a2 = read_arf(shared_data("class", "x2abund_test", "class_arf_v1.arf"))  # E_LOW/E_HIGH
    assert a1.specresp.size == 2048 and np.allclose(a1.specresp, a2.specresp)
    assert a2.header["GAIN USE"] == 13.5
    p = shared_data("class", "x2abund_test",
                    "ch2_cla_l1_20210827T210316000_20210827T210332000_1024.fits")
    pha = read_pha(p)
    with fits.open(p) as h:
        ref = np.asarray(h[1].data["COUNTS"], float)
    assert pha.exposure == 16.0 and np.array_equal(pha.counts, ref)
    assert header_float(pha.header, "EMISNANG", p) == pytest.approx(3.83034e-09)


def test_header_float_embedded_comment_and_errors():
    assert header_float({"EMISNANG": "4.53672e-09 / Angle btwn"}, "EMISNANG") == 4.53672e-09
    assert parse_card_image("EMISNANG= '4.53672e-09 / A' / c")[1] == "4.53672e-09 / A"
    assert parse_card_image("GAIN USE=              13.5000 / Gain")[:2] == ("GAIN USE", 13.5)
    with pytest.raises(ClassXRFError, match=r"f\.fits: SAT_ALT"):
        header_float({}, "SAT_ALT", "f.fits")
    with pytest.raises(ClassXRFError, match="V0_LAT"):
        header_float({"V0_LAT": "NaN"}, "V0_LAT", "f.fits")


def test_not_fits_and_truncated(tmp_path):
    bad = tmp_path / "bad.pha"
    bad.write_text("hello")
    with pytest.raises(ClassXRFError, match="bad.pha.*not a FITS"):
        read_pha(bad)
    pha = PHA(counts=np.ones(100), channel=np.arange(100), exposure=8.0)
    good = tmp_path / "good.pha"
    write_pha(good, pha)
    cut = tmp_path / "cut.pha"
    cut.write_bytes(good.read_bytes()[:2880 * 2 + 100])
    with pytest.raises(ClassXRFError, match="cut.pha"):
        read_pha(cut)


def test_pha_first_legal_channel_as_xspec_reads_it(tmp_path):
    """The first legal channel of a PHA file is TLMIN of its CHANNEL column; without the key it is 0
    when the channels start at 0 and 1 otherwise (XSPEC's OGIP reader). Spectrum rows map to the
    response's columns by channel - first legal channel; a spectrum that does not cover the
    response's channels one to one is refused with the file named."""
    counts = np.arange(8.0)
    p0 = tmp_path / "zero.pha"
    write_pha(p0, PHA(counts=counts, channel=np.arange(8), exposure=1.0))
    a = read_pha(p0)
    assert a.legal_first_channel == 0 and np.array_equal(a.response_index, np.arange(8))
    cols = [fits.Column(name="CHANNEL", format="J", array=np.arange(1, 9)),
            fits.Column(name="COUNTS", format="J", array=counts.astype(int))]
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    hdu.header["EXPOSURE"] = 1.0
    p1 = tmp_path / "one.pha"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(p1)
    b = read_pha(p1)
    assert b.tlmin is None and b.legal_first_channel == 1 and np.array_equal(b.counts_on_response(8), counts)
    hdu.header["TLMIN1"] = 0                     # channels 1..8 of a detector whose first channel is 0
    p2 = tmp_path / "shifted.pha"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(p2)
    c = read_pha(p2)
    assert c.legal_first_channel == 0 and np.array_equal(c.response_index, np.arange(1, 9))
    with pytest.raises(ClassXRFError, match="shifted.pha.*do not match the response's 8 channels"):
        c.counts_on_response(8)


def _same_pha(a, b):
    import dataclasses
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True), f.name
        else:
            assert x == y, f.name


def _by_astropy(path, monkeypatch):
    from class_qgis_plugin import ogip
    with monkeypatch.context() as m:
        m.setattr(ogip, "_fast_spectrum", lambda p: None)
        return ogip.read_pha(path)


def test_fast_pha_reader_equals_astropy_on_written_and_real_files(tmp_path, monkeypatch):
    """The byte parser of simple-layout PHA files gives the PHA astropy's path gives, field for field
    (header included), on a file written with every column (long CONTINUE strings) and on the real
    CLASS L1 files; a file of another layout (an image before the table) goes through astropy."""
    from class_qgis_plugin import ogip
    rng = np.random.default_rng(3)
    counts = rng.poisson(5, 128).astype(float)
    pha = PHA(counts=counts, channel=np.arange(1, 129), exposure=96.0, quality=np.zeros(128, int),
              header={"RESPFILE": "r.rmf", "BACKFILE": "/long/" + "x" * 150 + ".pha", "SOLARANG": 12.5})
    out = tmp_path / "a.pha"
    write_pha(out, pha)
    assert ogip._fast_spectrum(str(out)) is not None
    _same_pha(read_pha(out), _by_astropy(out, monkeypatch))
    odd = tmp_path / "odd.pha"
    table = fits.BinTableHDU.from_columns([fits.Column(name="CHANNEL", format="J", array=np.arange(1, 9)),
                                           fits.Column(name="COUNTS", format="E", array=np.ones(8))], name="SPECTRUM")
    table.header["EXPOSURE"] = 10.0
    fits.HDUList([fits.PrimaryHDU(np.zeros((2, 2))), table]).writeto(odd)
    assert ogip._fast_spectrum(str(odd)) is None and read_pha(odd).counts.sum() == 8
    real = sorted(shared_data("class", "raw8s").rglob("*.fits"))[:20]
    assert real
    for p in real:
        assert ogip._fast_spectrum(str(p)) is not None, p
        _same_pha(read_pha(p), _by_astropy(p, monkeypatch))
