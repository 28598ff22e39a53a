"""Baselines the super-resolved map is judged against, on the same observed and held-out points.

* :func:`idw`: inverse-distance weighting (Shepard 1968) with great-circle distances, the
  ``n_neighbors`` nearest observations, power ``power``.
* :func:`ordinary_kriging`: the variogram of PyKrige's ``OrdinaryKriging`` (constant unknown mean);
* :func:`kriging_albedo_drift`: the variogram of PyKrige's ``UniversalKriging`` with
  ``drift_terms=['specified']``: the mean is a linear function of the albedo given at the observed
  and at the query points (kriging with an external drift, Wackernagel 2003, ch. 37). PyKrige's
  ``external_drift`` term takes a drift *raster* sampled at the nearest grid node; passing the
  albedo at the points themselves is the same model without the resampling step.

Both krigings use at most ``max_points`` observations (a seeded subset beyond; default: every
observation of a simulated region's training set): the variogram is fitted as PyKrige fits it
(:func:`fit_variogram`) and the kriging system is solved once, in the dual form (:func:`dual_kriging`;
equal to PyKrige's ``execute``, tests check both for ordinary and universal kriging). Coordinates are local
equirectangular km about the points' centre (distortion below 1 % over a 22.5 deg region away from the poles).

The evaluation protocol: :func:`block_holdout` (observed pixels held out in square blocks),
:func:`block_folds` and :func:`track_folds` (column-block folds of the observed pixels: the hybrid's
drift selection and the validation hold-out of its network) and :func:`synthetic_region`. The
hybrid's own kriging (of its residuals, per pixel or per footprint) is in :mod:`.kriging`.
"""
import numpy as np

from ..errors import ClassXRFError

MOON_RADIUS_KM = 1737.4


def _xyz(lat, lon):
    la, lo = np.radians(np.asarray(lat, float)), np.radians(np.asarray(lon, float))
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def idw(obs_lat, obs_lon, obs_val, q_lat, q_lon, power=2.0, n_neighbors=16):
    """Inverse-distance weighted values at the query points: (n_query,) or (n_query, T)."""
    from scipy.spatial import cKDTree

    v = np.asarray(obs_val, float)
    squeeze = v.ndim == 1
    v = v.reshape(len(v), -1)
    if len(v) == 0:
        raise ClassXRFError(None, "IDW needs at least one observation", key="obs_val")
    k = int(min(n_neighbors, len(v)))
    tree = cKDTree(_xyz(obs_lat, obs_lon))
    chord, idx = tree.query(_xyz(q_lat, q_lon), k=k)
    chord, idx = chord.reshape(len(chord), k), idx.reshape(len(idx), k)
    d = 2 * MOON_RADIUS_KM * np.arcsin(np.clip(chord / 2, 0, 1))
    exact = d[:, 0] < 1e-9
    with np.errstate(divide="ignore"):
        w = 1.0 / np.maximum(d, 1e-12) ** power
    w /= w.sum(axis=1, keepdims=True)
    out = np.einsum("qk,qkt->qt", w, v[idx])
    out[exact] = v[idx[exact, 0]]
    return out[:, 0] if squeeze else out


def _local_km(lat, lon, lat0, lon0):
    x = MOON_RADIUS_KM * np.cos(np.radians(lat0)) * np.radians(((np.asarray(lon) - lon0 + 180) % 360) - 180)
    y = MOON_RADIUS_KM * np.radians(np.asarray(lat) - lat0)
    return x, y


def _subset(n, max_points, seed):
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def fit_variogram(x, y, z, variogram_model="spherical", nlags=6):
    """Variogram of ``z`` at (x, y) (km) as PyKrige fits it (``nlags`` lag bins over the whole range of
    distances; PyKrige's default 6): ``(variogram_function, parameters)``.

    PyKrige's ``UniversalKriging`` fits its variogram to the data themselves with the same routine
    as ``OrdinaryKriging`` (drift terms do not enter the fit), so one fit serves both krigings; the
    ``OrdinaryKriging`` route skips ``UniversalKriging``'s fit statistics, which cost O(n^4) and
    cannot be turned off (a test checks the parameters are the same)."""
    from pykrige.ok import OrdinaryKriging

    kr = OrdinaryKriging(np.asarray(x, float), np.asarray(y, float), np.asarray(z, float),
                         variogram_model=variogram_model, nlags=int(nlags))
    return kr.variogram_function, list(kr.variogram_model_parameters)


def dual_kriging(x, y, z, qx, qy, variogram, drift_obs=None, drift_q=None, chunk=8192, exact=True):
    """Ordinary (no drift) or universal kriging (drift columns ``drift_obs`` (n, D) at the observations,
    ``drift_q`` (m, D) at the queries, plus the constant) of ``z`` at (x, y) onto (qx, qy), in the dual
    form: the system [[-gamma, F], [F^T, 0]] [lambda; mu] = [z; 0] (F = [1, drift]) is solved once and
    z*(q) = sum_i -gamma(|q - x_i|) lambda_i + f(q) . mu, equal to the usual weights-times-data form
    (the system is symmetric) at the cost of one product per query. ``variogram``: (function,
    parameters) as :func:`fit_variogram` returns; gamma(0) = 0 (an exact interpolator, PyKrige's
    convention). ``exact=False``: the nugget is measurement noise, not signal: at a query on an
    observation gamma takes its limit from above (the nugget) instead of 0, so the estimate there is
    the smooth kriged signal, as PyKrige's ``exact_values=False``."""
    from scipy.spatial.distance import cdist

    fn, par = variogram
    x, y, z = np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)
    n = len(z)
    F = np.ones((n, 1))
    Fq = np.ones((len(qx), 1))
    if drift_obs is not None:
        F = np.concatenate([F, np.asarray(drift_obs, float).reshape(n, -1)], axis=1)
        Fq = np.concatenate([Fq, np.asarray(drift_q, float).reshape(len(qx), -1)], axis=1)
    obs = np.stack([x, y], 1)
    d = F.shape[1]
    a = np.zeros((n + d, n + d))
    a[:n, :n] = -fn(par, cdist(obs, obs))
    np.fill_diagonal(a[:n, :n], 0.0)
    a[:n, n:] = F
    a[n:, :n] = F.T
    rhs = np.concatenate([z, np.zeros(d)])
    try:
        lam = np.linalg.solve(a, rhs)
    except np.linalg.LinAlgError:
        lam = np.linalg.lstsq(a, rhs, rcond=None)[0]
    q = np.stack([np.asarray(qx, float), np.asarray(qy, float)], 1)
    out = np.empty(len(q))
    for s0 in range(0, len(q), chunk):
        dq = cdist(q[s0:s0 + chunk], obs)
        b = -fn(par, dq)
        if exact:
            b[dq == 0] = 0.0
        out[s0:s0 + chunk] = b @ lam[:n] + Fq[s0:s0 + chunk] @ lam[n:]
    return out


def _krige(obs_lat, obs_lon, obs_val, q_lat, q_lon, drift_obs=None, drift_q=None, variogram_model="spherical",
           max_points=4000, seed=0):
    v = np.asarray(obs_val, float)
    squeeze = v.ndim == 1
    v = v.reshape(len(v), -1)
    sub = _subset(len(v), max_points, seed)
    lat0 = float(np.mean(obs_lat))
    lon0 = float(np.degrees(np.arctan2(np.mean(np.sin(np.radians(obs_lon))), np.mean(np.cos(np.radians(obs_lon))))))
    ox, oy = _local_km(np.asarray(obs_lat)[sub], np.asarray(obs_lon)[sub], lat0, lon0)
    qx, qy = _local_km(q_lat, q_lon, lat0, lon0)
    do = None if drift_obs is None else np.asarray(drift_obs, float)[sub]
    out = np.empty((len(qx), v.shape[1]))
    for t in range(v.shape[1]):
        z = v[sub, t]
        vg = fit_variogram(ox, oy, z, variogram_model)
        out[:, t] = dual_kriging(ox, oy, z, qx, qy, vg, do, drift_q)
    return out[:, 0] if squeeze else out


def ordinary_kriging(obs_lat, obs_lon, obs_val, q_lat, q_lon, variogram_model="spherical", max_points=4000, seed=0):
    """Ordinary kriging predictions at the query points: (n_query,) or (n_query, T)."""
    return _krige(obs_lat, obs_lon, obs_val, q_lat, q_lon, None, None, variogram_model, max_points, seed)


def kriging_albedo_drift(obs_lat, obs_lon, obs_val, obs_albedo, q_lat, q_lon, q_albedo, variogram_model="spherical",
                         max_points=4000, seed=0):
    """Kriging with the albedo as external (specified) drift: (n_query,) or (n_query, T)."""
    if len(obs_albedo) != len(obs_lat) or len(q_albedo) != len(q_lat):
        raise ClassXRFError(None, "the albedo drift must be given at every observed and query point", key="albedo")
    return _krige(obs_lat, obs_lon, obs_val, q_lat, q_lon, obs_albedo, q_albedo, variogram_model, max_points, seed)


# --------------------------------------------------------------------------------------------------
# evaluation protocol: tracks held out in spatial blocks (the hold-out of the benchmark, the folds of the
# hybrid's drift selection and validation), and a synthetic region to run it on


def _deal_blocks(block_ids, n_folds, seed):
    """Fold of each entry of ``block_ids``: the distinct blocks dealt to ``n_folds`` folds in a seeded
    random order."""
    ub, inv = np.unique(block_ids, return_inverse=True)
    fold_of = np.empty(len(ub), np.int64)
    fold_of[np.random.default_rng(seed).permutation(len(ub))] = np.arange(len(ub)) % max(1, int(n_folds))
    return fold_of[inv.ravel()]


def _fold_block_width(block, cols, n_folds):
    """``block`` narrowed so that ``cols`` columns hold at least 2 ``n_folds`` blocks."""
    return max(1, min(int(block), cols // max(1, 2 * int(n_folds))))


def block_folds(mask, block=50, n_folds=3, seed=0):
    """Fold id (rows, cols) of every True pixel of ``mask`` (-1 elsewhere): the columns are cut into
    ``block``-pixel-wide blocks (narrowed so that there are at least 2 ``n_folds`` blocks), and the
    blocks holding observed pixels are dealt to the folds in a seeded random order. Whole stretches of
    north-south tracks leave together, so a fold is not predicted from its own track neighbours."""
    m = np.asarray(mask, bool)
    rows, cols = m.shape
    b = _fold_block_width(block, cols, n_folds)
    bid = np.broadcast_to(np.arange(cols)[None, :] // b, m.shape)
    out = np.full(m.shape, -1, np.int64)
    out[m] = _deal_blocks(bid[m], n_folds, seed)
    return out


def track_folds(mask, block=50, n_folds=3, seed=0, join=4):
    """Like :func:`block_folds`, but a strip of observed pixels goes to one fold whole: the observed
    pixels are joined into strips (connected after a dilation of ``join`` rows north-south and 1
    column east-west, so the sub-footprints along a track, a few pixels apart, join up until a gap
    in the track), each strip is placed in the ``block``-pixel-wide column block of its mean column,
    and the blocks are dealt to the folds in a seeded random order. A column cut through a slanted
    strip would leave parts of its footprints on each side. Returns the fold id (rows, cols), -1 off
    the mask."""
    from scipy import ndimage

    m = np.asarray(mask, bool)
    rows, cols = m.shape
    out = np.full(m.shape, -1, np.int64)
    if not m.any():
        return out
    b = _fold_block_width(block, cols, n_folds)
    lab, _ = ndimage.label(ndimage.binary_dilation(m, structure=np.ones((2 * int(join) + 1, 3), bool)))
    lab = np.where(m, lab, 0)
    ids = np.unique(lab[m])
    cc = np.broadcast_to(np.arange(cols, dtype=np.float64)[None, :], m.shape)
    mean_col = np.asarray(ndimage.mean(cc, labels=lab, index=ids))
    bid = (mean_col // b).astype(np.int64)
    out[m] = _deal_blocks(bid, n_folds, seed)[np.searchsorted(ids, lab[m])]
    return out


def block_holdout(track_mask, block=50, fraction=0.2, seed=0):
    """Split observed pixels into training and held-out sets by spatial blocks.

    The grid is cut into ``block`` x ``block`` pixel blocks; blocks holding observed pixels are
    drawn in a seeded random order and held out whole until at least ``fraction`` of the observed
    pixels are held out. Whole track segments thus leave together: a held-out pixel's neighbours
    along its track are held out too (random pixels would leak through their neighbours).
    Returns ``(train_mask, test_mask)``.
    """
    tm = np.asarray(track_mask, bool)
    rows, cols = tm.shape
    bid = (np.arange(rows)[:, None] // block) * ((cols + block - 1) // block) + np.arange(cols)[None, :] // block
    ids, counts = np.unique(bid[tm], return_counts=True)
    order = np.random.default_rng(seed).permutation(len(ids))
    target = fraction * tm.sum()
    held, n = [], 0
    for o in order:
        if n >= target:
            break
        held.append(ids[o])
        n += counts[o]
    test = tm & np.isin(bid, held)
    return tm & ~test, test


def synthetic_region(rows=342, cols=682, lat0=22.5, lon0=-45.0, dlat=22.5 / 342, dlon=45.0 / 682, n_tracks=None,
                     track_width=6, noise=0.02, seed=0):
    """A synthetic region with a known composition field that depends on the albedo and position.

    * albedo: a bimodal field, dark mare basins (about 0.07) among bright highlands (about 0.2),
      from thresholded smooth noise, with fine texture (craters/roughness as filtered noise);
    * mare fraction m: a sigmoid of the 12 km window mean of log albedo (nonlinear in the albedo);
    * composition: m MARE_WT + (1 - m) HIGHLAND_WT of the landing-site soils, times a smooth
      position trend per element (up to +/- 15 %), renormalised to 100 wt%;
    * observations: north-south tracks ``track_width`` pixels wide (a polar orbit's 12.5 km
      footprints) at random columns covering about a quarter of the grid, with multiplicative
      Gaussian noise ``noise``.

    Returns a dict: lat (rows,), lon (cols,), albedo, truth (rows, cols, 8), observed (rows, cols, 8)
    NaN off the tracks, track_mask.
    """
    from scipy import ndimage

    from ..composition import HIGHLAND_WT, MARE_WT

    rng = np.random.default_rng(seed)
    lat = lat0 - dlat * (np.arange(rows) + 0.5)
    lon = lon0 + dlon * (np.arange(cols) + 0.5)
    big = ndimage.gaussian_filter(rng.standard_normal((rows, cols)), 18, mode="wrap")
    big = (big - big.mean()) / big.std()
    mid = ndimage.gaussian_filter(rng.standard_normal((rows, cols)), 5, mode="wrap")
    mid = (mid - mid.mean()) / mid.std()
    fine = ndimage.gaussian_filter(rng.standard_normal((rows, cols)), 1.0, mode="wrap")
    fine = (fine - fine.mean()) / fine.std()
    basin = 1.0 / (1.0 + np.exp(-(big + 0.3 * mid - 0.4) / 0.15))          # 1 in mare basins
    log_alb = np.log(0.2) + basin * np.log(0.07 / 0.2) + 0.08 * mid + 0.06 * fine
    albedo = np.exp(log_alb)
    win = ndimage.uniform_filter(log_alb, 6, mode="reflect")
    m = 1.0 / (1.0 + np.exp((win - 0.5 * (np.log(0.2) + np.log(0.07))) / 0.12))
    comp = m[..., None] * MARE_WT + (1 - m[..., None]) * HIGHLAND_WT
    la, lo = np.meshgrid((lat - lat.mean()) / np.ptp(lat), (lon - lon.mean()) / np.ptp(lon), indexing="ij")
    phase = rng.uniform(0, 2 * np.pi, size=(len(MARE_WT), 2))
    amp = rng.uniform(0.05, 0.15, size=len(MARE_WT))
    trend = 1 + amp * (np.sin(2.0 * la[..., None] * np.pi + phase[:, 0]) * 0.6
                       + np.cos(1.5 * lo[..., None] * np.pi + phase[:, 1]) * 0.4)
    truth = comp * trend
    truth = 100.0 * truth / truth.sum(axis=-1, keepdims=True)
    if n_tracks is None:
        n_tracks = max(2, int(round(0.25 * cols / track_width)))
    starts = np.sort(rng.choice(max(1, cols - track_width), size=n_tracks, replace=False))
    track = np.zeros((rows, cols), bool)
    for s in starts:
        track[:, s:s + track_width] = True
    obs = truth * (1 + noise * rng.standard_normal(truth.shape))
    obs[~track] = np.nan
    return dict(lat=lat, lon=lon, albedo=albedo.astype(np.float32), truth=truth.astype(np.float32),
                observed=obs.astype(np.float32), track_mask=track)
