"""classxrf:coadd through processing.run on real CLASS files, as a PyQGIS batch user calls it."""
import numpy as np
import pytest
from astropy.io import fits
from qgis.core import QgsCoordinateReferenceSystem, QgsProcessingException, QgsVectorLayer

from conftest import shared_data


def test_coadd_real_flare_run_to_layer(run_alg, tmp_path):
    src = shared_data("class", "raw8s", "20240123")
    res = run_alg("classxrf:coadd", {"INPUT": str(src), "STRATEGY": "sliding", "WINDOW": 12, "STRIDE": 1,
                                     "OUTPUT_FOLDER": str(tmp_path / "pha"),
                                     "OUTPUT": str(tmp_path / "obs.shp")})
    assert res["N_SPECTRA"] == 1
    layer = QgsVectorLayer(res["OUTPUT"], "obs", "ogr")
    assert layer.isValid() and layer.featureCount() == 1
    crs = layer.crs()
    assert crs.isValid() and crs.isGeographic()
    moon = QgsCoordinateReferenceSystem("ESRI:104903")
    assert abs(crs.toProj().find("1737400")) >= 0 and moon.isValid()
    f = next(layer.getFeatures())
    assert f["n_frames"] == 12 and f["exposure"] == pytest.approx(96.0)
    # counts: independent channel-by-channel sum of the 12 gap-free frames read with astropy
    files = sorted(src.glob("*.fits"))
    total = np.zeros(2048)
    for p in files:
        start = fits.getheader(p, 1)["STARTIME"]
        if "03:32:22" <= start[11:19] < "03:33:58":
            total += fits.getdata(p, 1)["COUNTS"]
    with fits.open(f["pha_path"]) as h:
        assert np.array_equal(h[1].data["COUNTS"], total)
        assert h[1].header["EXPOSURE"] == pytest.approx(96.0)
    assert f["counts"] == pytest.approx(total.sum())


def test_coadd_bad_input_raises_processing_exception(run_alg, tmp_path):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "ch2_cla_l1_20240123T000000000_20240123T000008000.fits").write_bytes(b"SIMPLE  = not really fits")
    with pytest.raises(QgsProcessingException, match="ch2_cla_l1_20240123T000000000"):
        run_alg("classxrf:coadd", {"INPUT": str(bad), "OUTPUT_FOLDER": str(tmp_path / "pha"),
                                   "OUTPUT": str(tmp_path / "obs.gpkg")})


def test_cancel_stops_coadd_and_writes_no_layer(run_alg, tmp_path):
    from qgis.core import QgsProcessingFeedback
    src = shared_data("class", "raw8s", "20240123")
    fb = QgsProcessingFeedback()
    fb.cancel()
    with pytest.raises(QgsProcessingException, match="cancelled"):
        run_alg("classxrf:coadd", {"INPUT": str(src), "OUTPUT_FOLDER": str(tmp_path / "pha"),
                                   "OUTPUT": str(tmp_path / "obs.gpkg")}, feedback=fb)
    assert not (tmp_path / "obs.gpkg").exists()
    assert not list((tmp_path / "pha").glob("*.fits")) if (tmp_path / "pha").exists() else True
