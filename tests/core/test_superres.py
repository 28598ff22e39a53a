"""Super-resolution: features, graph construction, training, baselines and the small fixed case."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from class_qgis_plugin.errors import Cancelled, ClassXRFError  # noqa: E402
from class_qgis_plugin.progress import Progress  # noqa: E402
from class_qgis_plugin.superres import baselines as B  # noqa: E402
from class_qgis_plugin.superres import drift as D  # noqa: E402
from class_qgis_plugin.superres import features as Fe  # noqa: E402
from class_qgis_plugin.superres import graph as G  # noqa: E402
from class_qgis_plugin.superres import kriging as K  # noqa: E402
from class_qgis_plugin.superres import train as T  # noqa: E402
from class_qgis_plugin.superres.settings import SuperResSettings  # noqa: E402

torch.set_num_threads(1)
R_MOON = 1737.4


def _hav_np(lat1, lon1, lat2, lon2):
    """Haversine written out independently of the code under test (km)."""
    p1, p2, dl = np.radians(lat1), np.radians(lat2), np.radians(lon2 - lon1)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * R_MOON * np.arcsin(np.sqrt(a))


# ---------------------------------------------------------------- graph
def test_region_has_78_subgraphs_covering_every_pixel():
    wins = G.subgraph_windows(342, 682, 100, 50)
    assert len(wins) == 78
    assert G.window_starts(342, 100, 50) == [0, 50, 100, 150, 200, 242]
    assert G.window_starts(682, 100, 50) == [0, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 550, 582]
    cover = np.zeros((342, 682), int)
    for r0, r1, c0, c1 in wins:
        assert (r1 - r0, c1 - c0) == (100, 100)
        assert 0 <= r0 and r1 <= 342 and 0 <= c0 and c1 <= 682
        cover[r0:r1, c0:c1] += 1
    assert cover.min() == 1 and cover[0, 0] == 1 and cover[120, 120] == 4
    # next to the far edges the extra flush window adds a third layer: rows 242-249 lie in the
    # windows starting at 150, 200 and 242, columns 582-599 in those at 500, 550 and 582
    assert cover[245, 590] == 9 and cover.max() == 9
    # a grid smaller than a subgraph is one subgraph
    assert G.subgraph_windows(60, 80, 100, 50) == [(0, 60, 0, 80)]


def test_weight_formula_two_points_on_equator():
    # 1 degree of longitude on the equator: R pi / 180 = 30.3233 km; ||W_i - W_j||^2 = 3^2 + 4^2 = 25
    w_feat = np.array([[0.0, 0.0], [3.0, 4.0]], np.float32)
    ei, w = G.topk_edges(w_feat, np.array([0.0, 0.0]), np.array([10.0, 11.0]), k=1, alpha=0.01, beta=0.02)
    assert ei.tolist() == [[1, 0], [0, 1]]
    expect = math.exp(-0.01 * 30.323252 - 0.02 * 25)
    assert w.numpy() == pytest.approx([expect, expect], rel=1e-5)


def test_topk_matches_brute_force():
    rng = np.random.default_rng(3)
    n, k, alpha, beta = 37, 5, 0.02, 0.5
    lat = rng.uniform(-5, 5, n)
    lon = rng.uniform(100, 110, n)
    wf = rng.standard_normal((n, 4)).astype(np.float32)
    ei, w = G.topk_edges(wf, lat, lon, k, alpha, beta, block=8)
    d = _hav_np(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    dw2 = ((wf[:, None, :].astype(float) - wf[None, :, :]) ** 2).sum(-1)
    cost = alpha * d + beta * dw2
    np.fill_diagonal(cost, np.inf)
    src, dst = ei.numpy()
    assert np.all(src != dst)
    for i in range(n):
        mine = src[dst == i]
        assert len(mine) == k
        best = np.sort(cost[i])[:k]
        np.testing.assert_allclose(np.sort(cost[i, mine]), best, rtol=1e-5)
        np.testing.assert_allclose(np.sort(w.numpy()[dst == i])[::-1], np.exp(-best), rtol=1e-5)


def test_beta_must_exceed_alpha():
    with pytest.raises(ClassXRFError, match="beta"):
        G.topk_edges(np.zeros((3, 2), np.float32), np.zeros(3), np.arange(3.0), 1, alpha=1.0, beta=0.5)
    with pytest.raises(ClassXRFError, match="beta"):
        SuperResSettings(alpha=0.2, beta=0.1).validate()


def test_grid_edges():
    e = G.grid_edges(1, 3)
    assert sorted(map(tuple, e.T.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1)]
    e = G.grid_edges(2, 2)       # 2 horizontal + 2 vertical pairs, both directions
    assert sorted(map(tuple, e.T.tolist())) == [(0, 1), (0, 2), (1, 0), (1, 3), (2, 0), (2, 3), (3, 1), (3, 2)]


# ---------------------------------------------------------------- features
def test_default_features_on_a_ramp():
    a = np.tile(0.1 + 0.01 * np.arange(40), (30, 1))          # albedo rising 0.01 per column
    f, names = Fe.default_features(a, window=6)
    col = dict(zip(names, range(len(names))))
    inner = f[10:20, 10:30]
    assert inner[..., col["grad_x"]] == pytest.approx(0.01, abs=1e-6)
    assert inner[..., col["grad_y"]] == pytest.approx(0.0, abs=1e-6)
    # std of 6 consecutive values 0.01 apart: 0.01 sqrt((6^2 - 1) / 12)
    assert inner[..., col["std_6"]] == pytest.approx(0.01 * math.sqrt(35 / 12), rel=1e-3)
    assert inner[..., col["range_6"]] == pytest.approx(0.05, abs=1e-6)
    assert inner[..., col["contrast_h_6"]] == pytest.approx(1e-4, rel=1e-3)
    assert inner[..., col["contrast_v_6"]] == pytest.approx(0.0, abs=1e-9)
    assert inner[..., col["log_1"]] == pytest.approx(0.0, abs=1e-6)    # a plane has no curvature
    f2, _ = Fe.default_features(a, window=6)
    assert np.array_equal(f, f2)                                      # deterministic
    assert np.isfinite(f).all()


def test_mrmr_prefers_complementary_over_redundant():
    rng = np.random.default_rng(0)
    n = 3000
    u, v = rng.uniform(size=n), rng.uniform(size=n)
    y = u + v
    x = np.stack([u, u + 1e-4 * rng.standard_normal(n), v, rng.uniform(size=n), np.ones(n)], axis=1)
    sel = Fe.mrmr_select(x, y, k=3)
    assert set(sel[:2].tolist()) in ({0, 2}, {1, 2})     # one of the twins, and the complement
    assert sel[2] == 3                                    # noise beats the redundant twin
    all_sel = Fe.mrmr_select(x, y, k=300)                 # fewer than K exist: all but the constant
    assert sorted(all_sel.tolist()) == [0, 1, 2, 3]


def test_region_features_cache(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.uniform(0.05, 0.3, (20, 30)).astype(np.float32)
    w1, n1 = Fe.region_features(a, k=10, cache_dir=tmp_path)
    files = list(tmp_path.glob("superres_features_*.npz"))
    assert len(files) == 1
    w2, n2 = Fe.region_features(a, k=10, cache_dir=tmp_path)
    assert n1 == n2 and np.array_equal(w1, w2) and w1.shape == (20, 30, 10)
    assert np.allclose(w1.reshape(-1, 10).mean(0), 0, atol=1e-5)
    Fe.region_features(a * 1.1, k=10, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("superres_features_*.npz"))) == 2


def test_resnet50_architecture_and_weights_file(tmp_path):
    torch.manual_seed(0)
    net = Fe.ResNet50()
    # torchvision's resnet50 has 25,557,032 parameters (He et al. 2016 architecture, 1000 classes)
    assert sum(p.numel() for p in net.parameters()) == 25_557_032
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in net.state_dict().items()}}, path)
    loaded = Fe.load_resnet50(str(path))
    a = np.random.default_rng(0).uniform(0.05, 0.3, (3, 4))
    f1, names = Fe.resnet50_features(a, net.eval(), window=6, input_size=32, batch=5)
    f2, _ = Fe.resnet50_features(a, loaded, window=6, input_size=32, batch=12)
    assert f1.shape == (3, 4, 2048) and len(names) == 2048 and np.isfinite(f1).all()
    np.testing.assert_allclose(f1, f2, rtol=1e-4, atol=1e-5)
    bad = tmp_path / "bad.pt"
    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    with pytest.raises(ClassXRFError, match="bad.pt"):
        Fe.load_resnet50(str(bad))
    with pytest.raises(ClassXRFError, match="not found"):
        Fe.load_resnet50(str(tmp_path / "missing.pt"))


# ---------------------------------------------------------------- baselines and protocol
def test_idw_by_hand():
    # two observations on the equator at lon 0 and 2 (values 1, 3); query at lon 0.5:
    # distances 0.5 and 1.5 deg -> weights 4 and 4/9 -> (4 + 4/3) / (40/9) = 1.2
    v = B.idw([0.0, 0.0], [0.0, 2.0], [1.0, 3.0], [0.0, 0.0], [0.5, 0.0])
    assert v == pytest.approx([1.2, 1.0], rel=1e-9)


def test_kriging_with_albedo_drift_recovers_a_linear_albedo_field():
    rng = np.random.default_rng(2)
    lat, lon = rng.uniform(0, 5, 300), rng.uniform(0, 5, 300)
    alb = rng.uniform(0.05, 0.3, 300)
    z = 2.0 + 40.0 * alb + 0.01 * rng.standard_normal(300)
    ked = B.kriging_albedo_drift(lat[:200], lon[:200], z[:200], alb[:200], lat[200:], lon[200:], alb[200:])
    ok = B.ordinary_kriging(lat[:200], lon[:200], z[:200], lat[200:], lon[200:])
    truth = 2.0 + 40.0 * alb[200:]
    assert np.sqrt(np.mean((ked - truth) ** 2)) < 0.05
    assert np.sqrt(np.mean((ok - truth) ** 2)) > 1.0      # without the drift the albedo term is noise


def test_block_holdout():
    track = np.zeros((100, 100), bool)
    track[:, 10:16] = track[:, 50:56] = track[:, 80:86] = True
    train, test = B.block_holdout(track, block=25, fraction=0.2, seed=4)
    assert not (train & test).any() and np.array_equal(train | test, track)
    assert test.sum() >= 0.2 * track.sum()
    for r in range(0, 100, 25):                  # a block is held out whole or not at all
        for c in range(0, 100, 25):
            blk = track[r:r + 25, c:c + 25]
            t = test[r:r + 25, c:c + 25][blk]
            assert t.all() or not t.any()


def test_support_distance():
    lat = 10.0 - (22.5 / 342) * (np.arange(5) + 0.5)
    lon = np.arange(4) * (45 / 682)
    m = np.zeros((5, 4), bool)
    m[2, 1] = True
    d = T.support_distance_km(m, lat, lon)
    assert d[2, 1] == pytest.approx(0.0, abs=1e-6)
    assert d[3, 1] == pytest.approx(R_MOON * math.radians(22.5 / 342), rel=1e-5)   # one row: 1.995 km


# ---------------------------------------------------------------- training
def _tiny_case(seed=1, rows=24, cols=36):
    d = B.synthetic_region(rows, cols, n_tracks=3, seed=seed)
    w, _ = Fe.region_features(d["albedo"], k=8)
    mare = (d["albedo"] < 0.12).astype(np.float32)
    return d, w, mare


TINY = dict(subgraph_size=12, stride=6, k=4, hidden=8, cnn_channels=(4, 4, 4), fusion=8, steps_per_subgraph=1)


def test_training_is_reproducible_and_reports_progress():
    d, w, mare = _tiny_case()
    seen = []

    class Rec(Progress):
        def set(self, fraction, message=None):
            seen.append((fraction, message))

    full = dict(TINY, gate_probe=0)          # every sweep (the probe may stop a network that cannot pass)
    p1, c1 = T.fit_predict_grid(w, d["lat"], d["lon"], mare, d["observed"], d["track_mask"], None, full,
                                progress=Rec())
    p2, c2 = T.fit_predict_grid(w, d["lat"], d["lon"], mare, d["observed"], d["track_mask"], None, full)
    assert p1.shape == (8, 24, 36) and np.isfinite(p1).all() and (p1 > 0).all()
    assert np.array_equal(p1, p2)
    assert [c["loss"] for c in c1] == [c["loss"] for c in c2]
    assert {c["phase"] for c in c1} == {1, 2} and max(c["sweep"] for c in c1) == 3
    assert "log" in c1[-1] and "feat" in c1[-1] and "spat" in c1[-1]
    assert any("sweep 3/3" in (m or "") for _, m in seen)
    fr = [f for f, _ in seen]
    assert fr == sorted(fr) and fr[-1] == pytest.approx(1.0)


def test_training_honours_cancel():
    d, w, mare = _tiny_case()

    class Stop(Progress):
        n = 0

        @property
        def cancelled(self):
            return self.n > 3

        def set(self, fraction, message=None):
            self.n += 1

    with pytest.raises(Cancelled):
        T.fit_predict_grid(w, d["lat"], d["lon"], mare, d["observed"], d["track_mask"], None, TINY, progress=Stop())


def test_bad_gib_raster_is_named(tmp_path):
    from class_qgis_plugin import geo
    path = tmp_path / "gib_r0_c0.tif"
    geo.write_geotiff(path, np.ones((10, 342, 682), np.float32), -180, 90, 45 / 682, 22.5 / 342)
    with pytest.raises(ClassXRFError, match="gib_r0_c0.tif.*17 bands"):
        T.superresolve_region(path, np.ones((342, 682)), (0, 0))
    with pytest.raises(ClassXRFError, match="unknown super-resolution setting"):
        T.superresolve_region(path, np.ones((342, 682)), (0, 0), {"kk": 3})


def test_hybrid_beats_idw_on_held_out_tracks():
    """A 60 x 120 crop: composition = mare/highland mix set nonlinearly by the albedo + a smooth
    position trend, observed along 5 north-south tracks; 20 % of the track pixels held out in
    20 x 20 pixel blocks. The hybrid uses the albedo (drift + network); IDW cannot."""
    d = B.synthetic_region(60, 120, n_tracks=5, seed=1)
    train, test = B.block_holdout(d["track_mask"], block=20, fraction=0.2, seed=0)
    obs = np.where(train[..., None], d["observed"], np.nan)
    w, _ = Fe.region_features(d["albedo"], target=obs, target_mask=train)
    mare = (d["albedo"] < np.sqrt(0.2 * 0.07)).astype(np.float32)
    s = dict(subgraph_size=30, stride=15, steps_per_subgraph=10, seed=0)
    pred, _ = T.fit_predict_grid(w, d["lat"], d["lon"], mare, obs, train, None, s, albedo=d["albedo"])
    la, lo = np.meshgrid(d["lat"], d["lon"], indexing="ij")
    truth = d["truth"][test]
    idw = B.idw(la[train], lo[train], d["observed"][train], la[test], lo[test])
    hyb = pred.transpose(1, 2, 0)[test]
    rel = lambda p: np.mean(np.sqrt(np.mean((p - truth) ** 2, axis=0)) / truth.mean(axis=0))  # noqa: E731
    assert rel(hyb) < 0.85 * rel(idw)


# ---------------------------------------------------------------- drift, residual kriging, missing elements
def test_fit_drift_matches_numpy_lstsq():
    rng = np.random.default_rng(5)
    n = 400
    X = np.column_stack([np.ones(n), rng.standard_normal((n, 3))])
    y = np.column_stack([X @ [1.0, 2.0, -1.0, 0.5] + 0.1 * rng.standard_normal(n), 3.0 + 0 * X[:, 0]])
    w = rng.uniform(0.5, 2.0, n)
    em = np.ones((n, 2), bool)
    em[::3, 0] = False
    coef, rms = D.fit_drift(X, y, em, w, ridge=0.0)
    sw = np.sqrt(w[em[:, 0]])
    ref = np.linalg.lstsq(X[em[:, 0]] * sw[:, None], y[em[:, 0], 0] * sw, rcond=None)[0]
    np.testing.assert_allclose(coef[:, 0], ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(coef[:, 1], [3.0, 0, 0, 0], atol=1e-9)
    r = y[em[:, 0], 0] - X[em[:, 0]] @ ref
    assert rms[0] == pytest.approx(np.sqrt(np.sum(w[em[:, 0]] * r ** 2) / w[em[:, 0]].sum()), rel=1e-9)
    # too few observations for the full model: the weighted mean; none: NaN
    em2 = np.zeros((n, 2), bool)
    em2[:7, 0] = True
    coef2, rms2 = D.fit_drift(X, y, em2, w, ridge=0.0)
    assert coef2[0, 0] == pytest.approx(np.average(y[:7, 0], weights=w[:7])) and (coef2[1:, 0] == 0).all()
    assert np.isnan(coef2[:, 1]).all() and np.isnan(rms2[1])


def test_dual_kriging_equals_pykrige():
    from pykrige.ok import OrdinaryKriging
    rng = np.random.default_rng(7)
    x, y = rng.uniform(0, 300, 150), rng.uniform(0, 200, 150)
    z = np.sin(x / 60) + np.cos(y / 45) + 0.05 * rng.standard_normal(150)
    qx, qy = rng.uniform(0, 300, 40), rng.uniform(0, 200, 40)
    mine = K.dual_ordinary_kriging(x, y, z, qx, qy)
    ref, _ = OrdinaryKriging(x, y, z, variogram_model="spherical").execute("points", qx, qy)
    np.testing.assert_allclose(mine, np.asarray(ref), rtol=1e-6, atol=1e-8)


def test_kriging_with_the_nugget_as_noise_equals_pykrige_and_leaves_no_dots():
    """Queries on the observations and between them: with the nugget as measurement noise the estimate
    is PyKrige's ``exact_values=False`` one, a smooth surface through the noisy data; the exact
    interpolator returns each observation's own value on it (a dot where the data are noisy)."""
    from pykrige.ok import OrdinaryKriging
    rng = np.random.default_rng(3)
    # pairs of nearby observations with noise of unit variance: PyKrige fits a nugget (0.74)
    x = np.repeat(rng.uniform(0, 300, 100), 2) + rng.normal(0, 2, 200)
    y = np.repeat(rng.uniform(0, 200, 100), 2) + rng.normal(0, 2, 200)
    z = np.sin(x / 60) + np.cos(y / 45) + rng.standard_normal(200)
    qx, qy = np.concatenate([x[:30], rng.uniform(0, 300, 30)]), np.concatenate([y[:30], rng.uniform(0, 200, 30)])
    ok = OrdinaryKriging(x, y, z, variogram_model="spherical", exact_values=False)
    assert ok.variogram_model_parameters[2] > 0.5
    ref, _ = ok.execute("points", qx, qy)
    smooth = K.dual_ordinary_kriging(x, y, z, qx, qy, exact=False)
    np.testing.assert_allclose(smooth, np.asarray(ref), rtol=1e-6, atol=1e-8)
    exact = K.dual_ordinary_kriging(x, y, z, qx, qy)
    np.testing.assert_allclose(exact[:30], z[:30], atol=1e-9)
    truth = np.sin(x[:30] / 60) + np.cos(y[:30] / 45)
    assert np.sqrt(np.mean((smooth[:30] - truth) ** 2)) < 0.8 * np.sqrt(np.mean((exact[:30] - truth) ** 2))


def test_dual_universal_kriging_equals_pykrige():
    # kriging with an external drift in the dual form, against PyKrige's own UniversalKriging.execute
    # with the same observations and its fitted variogram
    from pykrige.uk import UniversalKriging
    rng = np.random.default_rng(11)
    x, y = rng.uniform(0, 300, 160), rng.uniform(0, 200, 160)
    alb = rng.uniform(0.05, 0.3, 200)
    z = 3.0 + 20.0 * alb[:160] + np.sin(x / 50) + 0.05 * rng.standard_normal(160)
    qx, qy = rng.uniform(0, 300, 40), rng.uniform(0, 200, 40)
    kr = UniversalKriging(x, y, z, variogram_model="spherical", drift_terms=["specified"],
                          specified_drift=[alb[:160]])
    ref, _ = kr.execute("points", qx, qy, specified_drift_arrays=[alb[160:]])
    vg = B.fit_variogram(x, y, z)
    assert vg[1] == pytest.approx(list(kr.variogram_model_parameters), rel=1e-12)
    mine = B.dual_kriging(x, y, z, qx, qy, vg, alb[:160, None], alb[160:, None])
    np.testing.assert_allclose(mine, np.asarray(ref), rtol=1e-6, atol=1e-8)


def test_unconstrained_element_is_not_predicted():
    d, w, mare = _tiny_case()
    obs = d["observed"].copy()
    obs[..., 6] = np.nan                      # Ti never constrained
    obs[:5, :, 1] = np.nan                    # Na missing on some pixels only
    p, _ = T.fit_predict_grid(w, d["lat"], d["lon"], mare, obs, d["track_mask"], None, TINY)
    assert np.isnan(p[6]).all()
    others = np.delete(p, 6, axis=0)
    assert np.isfinite(others).all() and (others > 0).all()


def test_block_folds_by_hand():
    m = np.zeros((4, 12), bool)
    m[:, [0, 1, 4, 5, 8, 9]] = True             # three 2-column "tracks"
    f = B.block_folds(m, block=4, n_folds=3, seed=0)
    assert (f[~m] == -1).all()
    # 4-px column blocks 0, 1, 2: one track each, dealt to three different folds, whole columns alike
    assert sorted({int(f[0, c]) for c in (0, 4, 8)}) == [0, 1, 2]
    for c in (0, 4, 8):
        assert (f[:, c] == f[0, c]).all() and (f[:, c + 1] == f[0, c]).all()
    # block narrowed to cols // (2 n_folds) = 2 px when asked wider than the grid allows
    f2 = B.block_folds(m, block=50, n_folds=3, seed=0)
    assert len(np.unique(f2[m])) == 3


def test_drift_selection_keeps_albedo_only_where_it_helps():
    """Element 0 = 10 + 3 x (window-mean albedo) + noise; element 1 = 5 + noise, independent of the
    albedo. Cross-validation must give element 0 an albedo drift and element 1 the plain mean."""
    rng = np.random.default_rng(3)
    rows, cols = 30, 60
    lat = np.linspace(10, 9, rows)
    lon = np.linspace(0, 2, cols)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    from scipy import ndimage
    alb = ndimage.gaussian_filter(rng.standard_normal((rows, cols)), 3) + 0.3 * rng.standard_normal((rows, cols))
    cand = D.drift_candidates(la, lo, alb, window=6)
    assert set(cand) == {"mean", "albedo", "albedo+position"}
    f = cand["albedo"][..., 1]
    np.testing.assert_allclose([f.mean(), f.std()], [0, 1], atol=1e-9)
    ref = ndimage.uniform_filter(alb, 6, mode="reflect")
    np.testing.assert_allclose(f, (ref - ref.mean()) / ref.std(), atol=1e-9)
    y = np.stack([10 + 3 * f + 0.05 * rng.standard_normal(f.shape), 5 + 0.3 * rng.standard_normal(f.shape)], -1)
    mask = np.zeros((rows, cols), bool)
    mask[:, ::4] = True
    em = np.repeat(mask.reshape(-1, 1), 2, axis=1)
    s = dict(residual_kriging=False, cv_block=8)
    base, rms, choice = D.classical_drift(la, lo, None, alb, y.reshape(-1, 2), em, None, s)
    assert choice[0] in ("albedo", "albedo+position") and choice[1] == "mean"
    assert rms[0] == pytest.approx(0.05, rel=0.3)
    np.testing.assert_allclose(base[:, 1], y.reshape(-1, 2)[mask.ravel(), 1].mean(), rtol=1e-5)  # ridge 1e-6


def test_gated_off_network_leaves_drift_plus_residual_kriging():
    """When no network correction passes the validation gate (a required gain of 100 %), the map is
    exactly the classical drift + ordinarily-kriged residuals. Rebuilt here without the module: the
    "linear" drift (1, mare flag, latitude and longitude scaled to [-1, 1]) fitted by numpy's least
    squares on the observed pixels, its residuals kriged by PyKrige's OrdinaryKriging (spherical, 20 lag
    bins: the default ``variogram_lags``; the nugget as measurement noise, ``exact_values=False``: the
    default ``kriging_nugget``) on local equirectangular km. With the gate open the network's
    correction is in the map and the same comparison sees it."""
    from pykrige.ok import OrdinaryKriging
    d, w, mare = _tiny_case()
    obs, mask = d["observed"], d["track_mask"]
    s = dict(TINY, drift="linear", net_min_gain=1.0, cv_block=6)
    pred, curve = T.fit_predict_grid(w, d["lat"], d["lon"], mare, obs, mask, None, s)
    assert curve[-1]["net_kept"] == " ".join(["0"] * 8)
    la, lo = np.meshgrid(d["lat"], d["lon"], indexing="ij")
    unit = lambda v: (2 * (v - v.min()) / (v.max() - v.min()) - 1).ravel()   # noqa: E731
    X = np.stack([np.ones(la.size), mare.ravel(), unit(la), unit(lo)], axis=1)
    x = (R_MOON * np.cos(np.radians(la.mean())) * np.radians(lo - lo.mean())).ravel()
    y = (R_MOON * np.radians(la - la.mean())).ravel()
    m = mask.ravel()
    ref = np.empty((8, la.size))
    for e in range(8):
        t = obs[..., e].ravel()[m].astype(np.float64)
        drift = X @ np.linalg.lstsq(X[m], t, rcond=None)[0]
        rk, _ = OrdinaryKriging(x[m], y[m], t - drift[m], variogram_model="spherical", nlags=20,
                                exact_values=False).execute("points", x, y)    # the nugget as noise
        ref[e] = np.maximum(drift + np.asarray(rk), 0.0)
    tol = dict(rtol=3e-5, atol=1e-5)       # the drift's ridge (1e-6 of the normal matrix's trace) and float32
    np.testing.assert_allclose(pred.reshape(8, -1), ref, **tol)
    opened, curve = T.fit_predict_grid(w, d["lat"], d["lon"], mare, obs, mask, None, dict(s, net_min_gain=-1.0))
    assert curve[-1]["net_kept"] == " ".join(["1"] * 8)
    assert not np.allclose(opened.reshape(8, -1), ref, **tol)


def test_track_folds_keep_a_slanted_strip_whole():
    m = np.zeros((40, 40), bool)
    rows = np.arange(0, 40, 3)                     # sub-footprint centres 3 rows apart
    m[rows, 8 + rows // 4] = True                  # slanted strip, columns 8..17: crosses the 10-px block edge
    m[rows, 32] = True                             # straight strip in block 3
    f = B.track_folds(m, block=10, n_folds=2, seed=0)
    assert (f[~m] == -1).all()
    assert len(np.unique(f[:, :20][m[:, :20]])) == 1          # the slanted strip in one fold
    b = B.block_folds(m, block=10, n_folds=2, seed=0)
    assert len(np.unique(b[:, :20][m[:, :20]])) == 2          # column blocks cut it in two


# ---------------------------------------------------------------- footprint-level fit
def test_footprint_groups_means_by_hand():
    # two footprints: A on pixels 0, 1, 1 (two sub-footprints on pixel 1), B on pixels 5, 6; element 1 of B's
    # second sub-footprint unconstrained (NaN)
    val = np.array([[1.0, 10.0], [3.0, 20.0], [5.0, 30.0], [2.0, 4.0], [4.0, np.nan]])
    fg = K.FootprintGroups([0, 1, 1, 5, 6], ["A", "A", "A", "B", "B"], val)
    pix = np.arange(8, dtype=float)
    pm, vm, cnt = fg.element_means(0, pix)
    np.testing.assert_allclose(vm, [3.0, 3.0])
    np.testing.assert_allclose(pm, [(0 + 1 + 1) / 3, 5.5])
    np.testing.assert_array_equal(cnt, [3, 2])
    pm, vm, cnt = fg.element_means(1, 100 * pix)
    np.testing.assert_allclose(vm, [20.0, 4.0])
    np.testing.assert_allclose(pm, [100 * 2 / 3, 500.0])
    np.testing.assert_array_equal(cnt, [3, 1])
    assert fg.element_means(1)[0] is None
    sub = fg.select(np.array([False, False, False, True, True]))
    assert sub.n_groups == 1 and np.array_equal(sub.group, [0, 0])
    # confidence: 1 / (mean relative variance + 0.05^2), mean 1 over the footprints
    sig = 0.1 * np.nan_to_num(val, nan=1.0)
    sig[3] = 0.2 * val[3]
    w = K.FootprintGroups([0, 1, 1, 5, 6], ["A", "A", "A", "B", "B"], val, sig).weight
    raw = np.array([1 / (0.01 + 0.0025), 1 / ((0.04 * 2 + 0.01) / 3 + 0.0025)])
    np.testing.assert_allclose(w, raw / raw.mean())


def _split_case():
    """Footprints of 8 rows x 6 columns on 3 tracks; every footprint measures the same composition c0,
    and the GIB spreads it over the footprint's pixels by the albedo (a prior split, as the population
    spreads a footprint's value by its mare/highland prior): pixel value = c0 + x delta, x the pixel's
    albedo minus the footprint's mean of it (scaled to a standard deviation of 1), so each footprint's
    mean stays c0."""
    from class_qgis_plugin.composition import HIGHLAND_WT, MARE_WT
    d, w, mare = _tiny_case(rows=24, cols=36)
    mask = d["track_mask"]
    rr, cc = np.nonzero(mask)
    group = (rr // 8) * 1000 + cc // 6
    c0 = 0.5 * (MARE_WT + HIGHLAND_WT)
    delta = 0.1 * c0 * np.sign(HIGHLAND_WT - MARE_WT)      # a 10 % split (standard deviation)
    u = (d["albedo"] - d["albedo"].mean()) / d["albedo"].std()
    gi = np.unique(group, return_inverse=True)[1].ravel()
    x = u[rr, cc] - (np.bincount(gi, weights=u[rr, cc]) / np.bincount(gi))[gi]
    x /= x.std()
    vals = c0[None] + x[:, None] * delta[None]
    target = np.full(mask.shape + (8,), np.nan)
    target[rr, cc] = vals
    fg = K.FootprintGroups(rr * mask.shape[1] + cc, group, vals)
    return d, w, mare, mask, target, fg, delta, x


def test_footprint_fit_does_not_learn_the_population_split():
    """Fitted per GIB pixel, the network reproduces the prior's split inside the footprints; fitted per
    footprint it cannot: every footprint measured the same composition."""
    d, w, mare, mask, target, fg, delta, x = _split_case()
    s = dict(TINY, steps_per_subgraph=40, drift="none", residual_kriging=False, net_validation=0.0)
    e = 3                                                            # Al
    assert abs(delta[e]) > 0.5
    slope = {}
    for level, fp in (("pixel", None), ("footprint", fg)):
        pred, _ = T.fit_predict_grid(w, d["lat"], d["lon"], mare, target, mask, None, s, footprints=fp)
        p = pred[e].ravel()[fg.pix]
        p = p - fg.element_means(e, pred[e].ravel())[0][fg.group]       # within-footprint part of the map
        slope[level] = float(np.sum(p * x) / np.sum(x ** 2))
    # the split in the map, as a fraction of the GIB's (1: learnt whole)
    assert slope["pixel"] / delta[e] > 0.3, slope
    assert abs(slope["footprint"] / delta[e]) < 0.05, slope


def test_footprint_element_means_and_noise_fraction_by_hand():
    # footprints A (pixels 0, 1), B (2, 3), C (4, 5), D (6, 7); one element
    val = np.array([[1.0], [3.0], [4.0], [4.0], [0.0], [2.0], [6.0], [8.0]])
    sig = np.full((8, 1), 0.5)
    sig[1, 0] = 1.5                                   # A: mean sigma^2 (0.25 + 2.25) / 2 = 1.25
    fg = K.FootprintGroups(np.arange(8), list("AABBCCDD"), val, sig)
    base = np.array([0.0, 2.0, 1.0, 1.0, 0.0, 0.0, 5.0, 5.0])
    pm, vm, cnt = fg.element_means(0, base)
    np.testing.assert_allclose(pm, [1.0, 1.0, 0.0, 5.0])
    np.testing.assert_allclose(vm, [2.0, 4.0, 1.0, 7.0])
    np.testing.assert_array_equal(cnt, [2, 2, 2, 2])
    r = np.array([1.0, 3.0, 1.0, 2.0])                # footprint residuals vm - pm
    s2 = np.array([1.25, 0.25, 0.25, 0.25])
    assert fg.noise_fraction(0, base) == pytest.approx(s2.mean() / r.var())
    assert np.isnan(K.FootprintGroups(np.arange(8), list("AABBCCDD"), val).noise_fraction(0, base))


def test_footprint_residual_kriging_is_kriging_of_footprint_means():
    """Each footprint becomes one observation, its residual (measured value minus the mean of the base
    over its pixels) at the centre of its pixels; compared with PyKrige's ordinary kriging of those
    points, computed here by hand, with the same variogram."""
    from pykrige.ok import OrdinaryKriging
    rng = np.random.default_rng(3)
    n_fp, per = 30, 3
    gx = rng.uniform(0, 300, n_fp * per + 50)
    gy = rng.uniform(0, 300, n_fp * per + 50)
    pix = np.arange(n_fp * per)
    grp = np.repeat(np.arange(n_fp), per)
    base = rng.normal(5, 1, len(gx))
    val = (np.repeat(rng.normal(6, 1, n_fp), per) + rng.normal(0, 0.2, n_fp * per))[:, None]
    fg = K.FootprintGroups(pix, grp, val)
    s = SuperResSettings()
    q = np.arange(n_fp * per, len(gx))
    got = K.footprint_residual_kriging(fg, 0, base, gx, gy, gx[q], gy[q], s)
    cx = np.array([gx[pix][grp == g].mean() for g in range(n_fp)])
    cy = np.array([gy[pix][grp == g].mean() for g in range(n_fp)])
    res = np.array([val[grp == g, 0].mean() - base[:n_fp * per][grp == g].mean() for g in range(n_fp)])
    ok = OrdinaryKriging(cx, cy, res, variogram_model="spherical", nlags=s.variogram_lags)
    ref, _ = ok.execute("points", gx[q], gy[q])
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-8)


def test_noisy_element_is_kriged_by_footprint():
    """Two elements on the same footprints: one whose footprints differ only by their shared measurement
    error (recorded sigma = the scatter: noise fraction ~1), one with a real field and a small error.
    The first is kriged as footprint means, the second per pixel (the curve's last row says so)."""
    d, w, mare = _tiny_case()
    mask = d["track_mask"]
    rr, cc = np.nonzero(mask)
    group = (rr // 8) * 1000 + cc // 6
    gi = np.unique(group, return_inverse=True)[1].ravel()
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1.0, gi.max() + 1)[gi]             # one error per footprint, 1 sigma = 1 wt%
    vals = d["truth"][rr, cc].copy()
    vals[:, 0] = 45.0 + noise                                 # element 0: flat surface, noisy footprints
    sig = np.full_like(vals, 0.01)
    sig[:, 0] = 1.0
    target = np.full(mask.shape + (8,), np.nan)
    target[rr, cc] = vals
    fg = K.FootprintGroups(rr * mask.shape[1] + cc, group, vals, sig)
    s = dict(TINY, sweeps=1, phase1_sweeps=1, drift="none", net_validation=0.0)
    _, curve = T.fit_predict_grid(w, d["lat"], d["lon"], mare, target, mask, None, s, footprints=fg)
    frac = [float(v) for v in curve[-1]["noise_fraction"].split()]
    flags = curve[-1]["footprint_kriging"].split()
    # by hand: the drift "none" is the mean over the pixels, each footprint's mean departs by its noise
    fp_mean = np.bincount(gi, weights=vals[:, 0]) / np.bincount(gi)
    assert frac[0] == pytest.approx(1.0 / np.var(fp_mean - vals[:, 0].mean()), rel=1e-2) and flags[0] == "1"
    assert all(f < 0.5 for f in frac[1:]) and flags[1:] == ["0"] * 7


def test_gate_probe_stops_a_network_that_cannot_pass_and_leaves_others_untouched():
    """After the first sweep the gate is tried: when no correction can pass (a required gain of 100 %)
    training stops there and the map is the one full training gives (the gate rejects it too); when
    every correction passes (gain > -100 %) training goes on and the map is the unprobed one, value for
    value (the probe predicts in eval mode and consumes no random numbers)."""
    d, w, mare = _tiny_case()
    obs, mask = d["observed"], d["track_mask"]
    for gain, stops in ((1.0, True), (-1.0, False)):
        s = dict(TINY, drift="linear", net_min_gain=gain, cv_block=6, sweeps=3)
        probed, c1 = T.fit_predict_grid(w, d["lat"], d["lon"], mare, obs, mask, None, dict(s, gate_probe=1))
        full, c0 = T.fit_predict_grid(w, d["lat"], d["lon"], mare, obs, mask, None, dict(s, gate_probe=0))
        np.testing.assert_array_equal(probed, full)
        assert max(r["sweep"] for r in c1) == (1 if stops else 3) and max(r["sweep"] for r in c0) == 3
        assert ("training stopped" in c1[-1]["gate_probe"]) == stops and "gate_probe" not in c0[-1]
