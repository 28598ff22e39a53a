"""Track population: the exact constrained least squares, footprint splitting, albedo classes."""
import numpy as np
import pytest
from scipy.optimize import minimize

from class_qgis_plugin import geo
from class_qgis_plugin.albedo import (MarePolygons, luminance, otsu_threshold, read_albedo,
                                      read_mare_polygons)
from class_qgis_plugin.composition import ELEMENTS, HIGHLAND_WT, MARE_WT
from class_qgis_plugin.population import (constraint_violation, exact_penalty_merit,
                                          gradient_descent_population, populate_footprints,
                                          population_errors, population_loss, solve_population,
                                          split_footprint, strip_corners)


def _priors(mare):
    """D (N, 8, n) from a boolean (N, n) mare pattern."""
    return np.where(np.asarray(mare)[:, None, :], MARE_WT[None, :, None], HIGHLAND_WT[None, :, None])


def _scipy_solve(a, D):
    """Independent solver: SLSQP with the equality and bound constraints written out, one element
    (one row of C) at a time, since the objective and constraints do not couple elements."""
    K, n = D.shape
    out = np.empty((K, n))
    for k in range(K):
        d = D[k]
        cons = [{"type": "eq", "fun": lambda x, k=k: np.array([x.mean() - a[k]]),
                 "jac": lambda x: np.full((1, n), 1.0 / n)}]
        r = minimize(lambda x, d=d: np.sum((x - d) ** 2), np.full(n, a[k]), jac=lambda x, d=d: 2 * (x - d),
                     bounds=[(0, None)] * n, constraints=cons, method="SLSQP",
                     options=dict(ftol=1e-14, maxiter=1000))
        assert r.success, r.message
        out[k] = r.x
    return out


# ----------------------------------------------------------------------------- exact solver
def test_exact_meets_constraints_and_never_loses_to_gradient_descent():
    rng = np.random.default_rng(3)
    N, n = 300, 8
    mare = rng.random((N, n)) < 0.4
    D = _priors(mare)
    # wide range of footprint values so that many rows clamp at zero (Ti, Fe, Na low)
    a = (0.5 * MARE_WT + 0.5 * HIGHLAND_WT) * rng.uniform(0.05, 1.6, (N, 8))
    C, active = solve_population(a, D)
    eq, neg = constraint_violation(C, a)
    assert eq.max() < 1e-9
    assert neg.min() >= 0.0
    assert np.any(active < n)                                  # clamping did occur
    G = gradient_descent_population(a, D)
    me, mg = exact_penalty_merit(C, a, D), exact_penalty_merit(G, a, D)
    assert np.all(me <= mg + 1e-9)
    # the merit of a feasible point is its loss
    np.testing.assert_allclose(me, population_loss(C, D), rtol=1e-9)
    # against an independent solver on a few footprints, clamped and not
    for f in range(6):
        ref = _scipy_solve(a[f], D[f])
        np.testing.assert_allclose(C[f], ref, atol=1e-6)
        assert population_loss(C[f:f + 1], D[f:f + 1])[0] <= np.sum((ref - D[f]) ** 2) + 1e-9


def test_pure_mare_and_pure_highland_keep_the_footprint_value():
    a = np.array([44.0, 0.3, 5.0, 10.0, 21.0, 9.5, 1.2, 9.0])
    for mare in (True, False):
        D = _priors(np.full((1, 8), mare))
        C, active = solve_population(a[None], D)
        # every prior column is the same, so the closest mass-balanced C is constant = a
        np.testing.assert_allclose(C[0], np.repeat(a[:, None], 8, axis=1), atol=1e-12)
        assert np.all(active == 8)


def test_mixed_footprint_by_hand():
    # 3 mare then 5 highland sub-footprints, Fe and Al of a footprint with Fe 8 wt%, Al 11 wt%
    mare = np.array([[True, True, True, False, False, False, False, False]])
    D = _priors(mare)
    a = 0.5 * (MARE_WT + HIGHLAND_WT)
    a[7], a[3] = 8.0, 11.0
    C, _ = solve_population(a[None], D)
    fe_m, fe_h = MARE_WT[7], HIGHLAND_WT[7]
    # by hand: c = d + a - mean(d); mean(d) = (3 d_mare + 5 d_high) / 8
    shift = 8.0 - (3 * fe_m + 5 * fe_h) / 8.0
    np.testing.assert_allclose(C[0, 7, :3], fe_m + shift, rtol=1e-12)
    np.testing.assert_allclose(C[0, 7, 3:], fe_h + shift, rtol=1e-12)
    shift_al = 11.0 - (3 * MARE_WT[3] + 5 * HIGHLAND_WT[3]) / 8.0
    np.testing.assert_allclose(C[0, 3, :3], MARE_WT[3] + shift_al, rtol=1e-12)
    # written out with the composition table's numbers as the hand computation would be
    assert C[0, 7, 0] - C[0, 7, 5] == pytest.approx(fe_m - fe_h, abs=1e-12)
    np.testing.assert_allclose(C[0], _scipy_solve(a, D[0]), atol=1e-6)


def test_clamped_cases_by_hand_and_error_propagation():
    # d = [10, 0, 0, 0], a = 1: the sum 4 cannot be shared without going negative -> [4, 0, 0, 0]
    # d = [5, 3, 0, 0], a = 1: active set {1, 2}, tau = (8 - 4) / 2 = 2 -> [3, 1, 0, 0]
    D = np.array([[[10.0, 0, 0, 0]], [[5.0, 3, 0, 0]]])
    a = np.array([[1.0], [1.0]])
    C, active = solve_population(a, D)
    np.testing.assert_allclose(C[0, 0], [4, 0, 0, 0], atol=1e-15)
    np.testing.assert_allclose(C[1, 0], [3, 1, 0, 0], atol=1e-15)
    np.testing.assert_array_equal(active[:, 0], [1, 2])
    sig = population_errors(np.array([[0.1], [0.1]]), active, np.ones((2, 4), bool))
    np.testing.assert_allclose(sig[0, 0], 0.4)                # n / |S| = 4
    np.testing.assert_allclose(sig[1, 0], 0.2)                # 4 / 2
    # the derivative on the active set by finite differences of the solution
    h = 1e-6
    Cp, _ = solve_population(a + h, D)
    np.testing.assert_allclose((Cp - C)[1, 0, :2] / h, [2.0, 2.0], rtol=1e-6)
    # a = 0 forces the row to 0; a negative value is infeasible and gives NaN
    C0, _ = solve_population(np.array([[0.0, -1.0]]), np.array([[[3.0, 2.0], [1.0, 1.0]]]))
    np.testing.assert_array_equal(C0[0, 0], [0.0, 0.0])
    assert np.all(np.isnan(C0[0, 1]))


def test_padding_for_footprints_with_fewer_sub_footprints():
    rng = np.random.default_rng(5)
    D = rng.uniform(0, 20, (2, 8, 8))
    a = rng.uniform(1, 10, (2, 8))
    mask = np.ones((2, 8), bool)
    mask[1, 3:] = False
    C, _ = solve_population(a, D, mask)
    C3, _ = solve_population(a[1:], D[1:, :, :3])
    np.testing.assert_allclose(C[1, :, :3], C3[0], atol=1e-12)
    assert np.all(np.isnan(C[1, :, 3:]))
    np.testing.assert_allclose(np.nanmean(C[1], axis=1), a[1], atol=1e-12)


# ----------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("lat, lon, heading, length, n_expected", [
    (10.0, 20.0, 0.0, 100.0, 8), (-35.0, -120.0, 160.0, 100.0, 8), (5.0, 50.0, 20.0, 50.0, 4),
    (0.0, 0.0, 90.0, 12.5, 1), (10.0, 179.98, 10.0, 100.0, 8), (80.0, -179.9, 0.0, 75.0, 6)])
def test_split_strip_into_sub_footprints(lat, lon, heading, length, n_expected):
    la, lo = strip_corners(lat, lon, length, 12.5, heading)
    # independent check of the strip: corner distances by the haversine formula
    assert geo.haversine_km(la[0], lo[0], la[3], lo[3]) == pytest.approx(length, rel=1e-3)
    assert geo.haversine_km(la[0], lo[0], la[1], lo[1]) == pytest.approx(12.5, rel=1e-3)
    sp = split_footprint(geo.footprint_polygon(la, lo))
    assert len(sp.lat) == n_expected
    assert sp.length_km == pytest.approx(length, rel=2e-3)
    assert sp.width_km == pytest.approx(12.5, rel=5e-3)
    step = geo.haversine_km(sp.lat[:-1], sp.lon[:-1], sp.lat[1:], sp.lon[1:])
    np.testing.assert_allclose(step, length / n_expected, rtol=5e-3)
    # the centres run along the track through the footprint's centre
    mid = geo.haversine_km(lat, lon, sp.lat, sp.lon)
    np.testing.assert_allclose(np.sort(mid)[:2], length / n_expected / 2 if n_expected % 2 == 0 else 0,
                               atol=0.1)
    assert np.all((sp.lon >= -180) & (sp.lon < 180))


def test_split_polar_footprint_given_with_its_pole_edge():
    # a 100 x 12.5 km strip passing 1.5 km from the north pole, written in lon/lat the way a
    # polygon enclosing the pole must be: corners by longitude, closed along the 90N edge
    la, lo = strip_corners(89.95, 30.0, 100.0, 12.5, 0.0)
    order = np.argsort(lo)
    from shapely.geometry import Polygon
    ring = [(-180.0, 90.0)] + [(lo[k], la[k]) for k in order] + [(180.0, 90.0)]
    # the polygon only has to hold the true corners among its vertices
    sp = split_footprint(Polygon(ring))
    assert len(sp.lat) == 8
    assert sp.length_km == pytest.approx(100.0, rel=2e-3)
    step = geo.haversine_km(sp.lat[:-1], sp.lon[:-1], sp.lat[1:], sp.lon[1:])
    np.testing.assert_allclose(step, 12.5, rtol=5e-3)


class _HalfMoon:
    """Mare west of longitude 0, highland east of it, unknown south of 60S."""

    def mare_flag(self, lat, lon):
        lat, lon = np.asarray(lat), np.asarray(lon)
        return np.where(lat < -60, -1, np.where(lon < 0, 1, 0)).astype(np.int8)


def test_populate_footprints_mixed_track_and_skip_reasons():
    # east-west strip centred on lon 0: 4 sub-footprints in mare, 4 in highland
    la, lo = strip_corners(0.0, 0.0, 100.0, 12.5, 90.0)
    good = geo.footprint_polygon(la, lo)
    la2, lo2 = strip_corners(-70.0, 10.0, 100.0, 12.5, 0.0)
    off_map = geo.footprint_polygon(la2, lo2)
    from shapely.geometry import Polygon
    degenerate = Polygon([(1, 1), (2, 2), (3, 3)])
    a = 0.5 * (MARE_WT + HIGHLAND_WT)
    values = np.tile(a, (4, 1))
    errors = np.full((4, 8), 0.5)
    ok = np.ones((4, 8))
    ok[0, 6] = 0                     # Ti not constrained in footprint 0
    ok[3] = 0                        # nothing constrained in footprint 3
    res = populate_footprints([good, off_map, degenerate, good], values, errors, ok, _HalfMoon(),
                              MARE_WT, HIGHLAND_WT, ELEMENTS)
    reasons = dict(res.skipped)
    assert set(reasons) == {1, 2, 3}
    assert "albedo" in reasons[1] and "split" in reasons[2] and "constrained" in reasons[3]
    assert res.element_skips["Ti"] == 2 and res.element_skips["Fe"] == 1
    assert np.all(res.footprint == 0) and len(res.lat) == 8
    west = res.lon < 0
    np.testing.assert_array_equal(res.mare, west.astype(np.int8))
    # by hand: 4 mare + 4 highland, a = the mean of the priors -> c = the priors themselves
    fe = ELEMENTS.index("Fe")
    np.testing.assert_allclose(res.value[west, fe], MARE_WT[fe], rtol=1e-12)
    np.testing.assert_allclose(res.value[~west, fe], HIGHLAND_WT[fe], rtol=1e-12)
    assert np.all(np.isnan(res.value[:, ELEMENTS.index("Ti")]))
    np.testing.assert_allclose(res.sigma[:, fe], 0.5)         # nothing clamped: sigma carried over
    assert res.loss[0] == pytest.approx(0.0, abs=1e-20) and np.isnan(res.loss[1])


# ----------------------------------------------------------------------------- albedo
def test_otsu_threshold_hand_case():
    # values 0,0,0,1,3,3: cut after 0 gives sigma_B^2 = (1/2)(1/2)(0 - 7/3)^2 = 1.361,
    # cut after 1 gives (2/3)(1/3)(1/4 - 3)^2 = 1.681: the threshold lies between 1 and 3,
    # in the middle of the empty bins (= 2 up to a bin width)
    v = np.array([0, 0, 0, 1, 3, 3], float)
    t = otsu_threshold(v, bins=300)
    assert 1.0 < t < 3.0
    assert t == pytest.approx(2.0, abs=3.0 / 300)
    # a lone bright value: cut after 0 -> (1/7)(6/7)(0 - 8/6)^2 = 0.218;
    # cut after 1 -> (6/7)(1/7)(5/6 - 3)^2 = 0.575: the cut is between 1 and 3, not between 0 and 1
    v2 = np.array([0, 1, 1, 1, 1, 1, 3], float)
    assert 1.0 < otsu_threshold(v2, bins=300) < 3.0
    # weights change the answer: the 0 counting 12 times (W = 18): cut after 0 ->
    # (12/18)(6/18)(0 - 8/6)^2 = 0.395; after 1 -> (17/18)(1/18)(5/17 - 3)^2 = 0.384:
    # now the cut falls between 0 and 1 (mid point 0.5 up to a bin width)
    w2 = np.array([12, 1, 1, 1, 1, 1, 1], float)
    assert otsu_threshold(v2, weights=w2, bins=300) == pytest.approx(0.5, abs=3.0 / 300)


def test_luminance_and_image_albedo(tmp_path):
    assert luminance(np.array([[[255]], [[255]], [[255]]]))[0, 0] == pytest.approx(1.0)
    assert luminance(np.array([[[255]], [[0]], [[0]]]))[0, 0] == pytest.approx(0.2126)
    # sRGB 128 -> linear ((128/255 + 0.055)/1.055)^2.4 = 0.2158
    assert luminance(np.full((3, 1, 1), 128))[0, 0] == pytest.approx(0.21586, abs=1e-4)
    # a 4 x 8 grey PNG, dark left half (mare), bright right half
    import rasterio
    img = np.full((3, 4, 8), 200, np.uint8)
    img[:, :, :4] = 40
    path = tmp_path / "alb.png"
    with rasterio.open(path, "w", driver="PNG", width=8, height=4, count=3, dtype="uint8") as ds:
        ds.write(img)
    m = read_albedo(path)
    # pixel (row 1, col 2) spans lat 0..45, lon -90..-45; (row 3, col 7) lat -90..-45, lon 135..180
    assert m.sample_albedo(20.0, -60.0) == pytest.approx(luminance(np.full((3, 1, 1), 40))[0, 0])
    np.testing.assert_array_equal(m.mare_flag([20.0, -60.0, 0.0, 10.0], [-60.0, 170.0, 179.9, -180.0]),
                                  [1, 0, 0, 1])
    assert m.mare_flag(np.nan, 0.0) == -1


def test_albedo_geotiff_and_mare_polygons(tmp_path):
    # a GeoTIFF over 0..10E, 0..10N at 1 deg: albedo = column index; threshold given
    data = np.tile(np.arange(10, dtype=np.float32) + 1, (10, 1))[None]
    path = tmp_path / "alb.tif"
    geo.write_geotiff(path, data, 0.0, 10.0, 1.0, 1.0)
    m = read_albedo(path, threshold=5.5)
    np.testing.assert_allclose(m.sample_albedo([5.0, 5.0, 5.0], [0.5, 9.5, 12.0]), [1.0, 10.0, np.nan])
    np.testing.assert_array_equal(m.mare_flag([5, 5, 5], [3.2, 7.7, -3.0]), [1, 0, -1])
    # mare polygon layer (round trip through a GeoPackage)
    from shapely.geometry import box
    vec = tmp_path / "mare.gpkg"
    geo.write_vector(vec, [box(-10, -10, 10, 10), box(170, 0, 180, 5)], {"mare": np.array([1, 1])})
    mp = read_mare_polygons(vec)
    assert isinstance(mp, MarePolygons)
    np.testing.assert_array_equal(mp.mare_flag([0, 20, 2, 2], [0, 0, 175, -175]), [1, 0, 1, 0])


def test_real_basemap_threshold_and_known_places():
    from conftest import shared_data
    path = shared_data("basemap", "lroc_color_poles_1k.jpg")
    m = read_albedo(path)
    # reproducible and in the valley between the dark (~0.08) and bright (~0.3) modes
    assert read_albedo(path).threshold == m.threshold
    assert 0.1 < m.threshold < 0.25
    assert 0.1 < m.mare_fraction() < 0.3        # 16-17 % of the Moon is mare basalt
    # Mare Imbrium, Mare Tranquillitatis, Mare Crisium; Tycho's surroundings, far-side highlands
    np.testing.assert_array_equal(m.mare_flag([33.0, 8.5, 17.0, -43.0, 0.0], [-16.0, 31.4, 59.0, -11.0, 180.0]),
                                  [1, 1, 1, 0, 0])
