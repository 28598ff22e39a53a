"""The classical drift the hybrid's network corrects: per element, a least-squares linear model.

* :func:`drift_design`: the "linear" drift's covariates (1, mare flag, position, albedo and its window
  mean);
* :func:`drift_candidates`: the designs the "select" drift chooses among (:data:`DRIFT_CANDIDATES`);
* :func:`fit_drift`: per-element weighted least squares on a design;
* :func:`classical_drift`: the drift of every element on a grid, the candidate chosen per element by
  spatial-block cross-validation of drift + residual kriging (folds: :func:`.baselines.block_folds`,
  kriging: :func:`.kriging.pixel_residual_kriging`).
"""
import numpy as np

from ..errors import ClassXRFError
from .baselines import _local_km, block_folds
from .kriging import pixel_residual_kriging
from .settings import SuperResSettings


def _unit(v):
    """``v`` scaled linearly to [-1, 1] over its range (zeros when constant)."""
    lo_, hi_ = float(v.min()), float(v.max())
    return np.zeros_like(v) if hi_ <= lo_ else 2 * (v - lo_) / (hi_ - lo_) - 1


def _standardised(f):
    """``f`` less its mean over its standard deviation (zeros when constant)."""
    sd = f.std()
    return (f - f.mean()) / sd if sd > 0 else np.zeros_like(f)


def _albedo_and_window_mean(albedo, window):
    """The albedo (NaN filled from the nearest valid pixel) and its mean over the ``window``."""
    from scipy import ndimage

    from .features import _fill_nan
    a = _fill_nan(albedo)
    return a, ndimage.uniform_filter(a, size=max(1, int(window)), mode="reflect")


def drift_design(lat2, lon2, mare, albedo=None, window=6):
    """Covariates of the classical drift, (rows, cols, D): 1, the mare flag, latitude u and longitude v
    scaled to [-1, 1] over the grid and, with an ``albedo``, its standardised value and its
    standardised mean over the ``window`` (the 12.5 km footprint scale). Linear in position: a
    quadratic trend extrapolates badly beyond the outer tracks."""
    u, v = _unit(np.asarray(lat2, np.float64)), _unit(np.asarray(lon2, np.float64))
    cols = [np.ones_like(u), np.asarray(mare, np.float64), u, v]
    if albedo is not None:
        cols += [_standardised(f) for f in _albedo_and_window_mean(albedo, window)]
    return np.stack(cols, axis=-1)


DRIFT_CANDIDATES = ("mean", "albedo", "albedo+position")


def drift_candidates(lat2, lon2, albedo=None, window=6, mare=None):
    """Candidate drift designs, dict name -> (rows, cols, D): "mean" (intercept only: ordinary kriging's
    constant mean), "albedo" (1 and the standardised albedo mean over the ``window``, the 12.5 km
    footprint scale: the window mean averages out the crater texture that makes the point albedo a
    noisy proxy of the mare fraction) and "albedo+position" (also latitude and longitude scaled to
    [-1, 1]: a regional linear trend). Without an albedo, the ``mare`` flag (when given) takes its place
    ("mare", "mare+position"), else only "mean" and "position"."""
    u, v = _unit(np.asarray(lat2, np.float64)), _unit(np.asarray(lon2, np.float64))
    one = np.ones_like(u)
    out = {"mean": one[..., None]}
    if albedo is None:
        if mare is None:
            out["position"] = np.stack([one, u, v], axis=-1)
        else:
            mf = np.asarray(mare, np.float64)
            out["mare"] = np.stack([one, mf], axis=-1)
            out["mare+position"] = np.stack([one, mf, u, v], axis=-1)
        return out
    f = _standardised(_albedo_and_window_mean(albedo, window)[1])
    out["albedo"] = np.stack([one, f], axis=-1)
    out["albedo+position"] = np.stack([one, f, u, v], axis=-1)
    return out


def _drift_weight(s, weight):
    """The pixel weights of the drift fit (``s.drift_weight``): None (all alike) or ``weight``."""
    if s.drift_weight == "none" or weight is None:
        return None
    if s.drift_weight == "pixel":
        return np.asarray(weight, np.float64).ravel()
    raise ClassXRFError(None, f"unknown drift_weight {s.drift_weight!r} (none or pixel)", key="drift_weight")


def _drift_designs(s, lat2, lon2, mare, albedo):
    """The designs ``s.drift`` chooses among, dict name -> (rows, cols, D)."""
    if s.drift == "linear":
        return {"linear": drift_design(lat2, lon2, mare, albedo, s.window)}
    if s.drift == "none":
        return {"mean": np.ones(np.shape(lat2) + (1,))}
    if s.drift == "select":
        return drift_candidates(lat2, lon2, albedo, s.window, mare)
    raise ClassXRFError(None, f"unknown drift {s.drift!r} (select, linear or none)", key="drift")


def _cv_sse(X, y, sel, w, fold, gx, gy, s):
    """Cross-validated sum of squared errors of drift design ``X`` (+ residual kriging) for one element
    ``y`` (n,) observed on ``sel``: each fold predicted from the others."""
    tot = 0.0
    for f in np.unique(fold[sel]):
        tr, te = sel & (fold != f), sel & (fold == f)
        c, _ = fit_drift(X, y[:, None], tr[:, None], w)
        d = X @ np.nan_to_num(c[:, 0])
        pe = d[te]
        if s.residual_kriging:
            pe = pe + pixel_residual_kriging(gx, gy, tr, y[tr] - d[tr], te, s)
        tot += float(np.sum((y[te] - pe) ** 2))
    return tot


def classical_drift(lat2, lon2, mare, albedo, target, emask, weight=None, settings=None, gx=None, gy=None):
    """The hybrid's classical drift of every element on the whole grid.

    ``target`` (n, E), ``emask`` (n, E) observed, ``weight`` (n,) pixel confidence (used when
    ``settings.drift_weight == "pixel"``). ``settings.drift``: "linear" (:func:`drift_design`), "none",
    or "select": per element, the candidate of :func:`drift_candidates` with the least
    cross-validated error of drift + residual kriging (``settings.cv_folds`` folds of column blocks
    of the observed pixels, :func:`.baselines.block_folds`; kriging on the local km coordinates ``gx``,
    ``gy``), refitted on all observed pixels. A drift term an element does not follow (e.g. albedo for
    an element alike in mare and highland) only adds the noise of its fitted slope: the selection
    drops it. Returns ``(base (n, E), residual_rms (E,), chosen (E,) candidate names or None)``.
    """
    s = SuperResSettings.from_dict(settings)
    rows, cols = np.shape(lat2)
    n = rows * cols
    y = np.asarray(target, np.float64).reshape(n, -1)
    em = np.asarray(emask, bool).reshape(n, -1)
    n_el = y.shape[1]
    w = _drift_weight(s, weight)
    X = {k: v.reshape(n, -1) for k, v in _drift_designs(s, lat2, lon2, mare, albedo).items()}
    names = list(X)
    choice = [names[0]] * n_el
    if len(names) > 1:
        if gx is None:
            gx, gy = _local_km(np.ravel(lat2), np.ravel(lon2), float(np.mean(lat2)), float(np.mean(lon2)))
        fold = block_folds(em.any(axis=1).reshape(rows, cols), s.cv_block, s.cv_folds, s.seed).ravel()
        for e in range(n_el):
            if em[:, e].sum() >= 3 and len(np.unique(fold[em[:, e]])) >= 2:
                sse = [_cv_sse(X[k], y[:, e], em[:, e], w, fold, gx, gy, s) for k in names]
                choice[e] = names[int(np.argmin(sse))]
    base = np.zeros((n, n_el))
    rms = np.full(n_el, np.nan)
    for e in range(n_el):
        c, r = fit_drift(X[choice[e]], y[:, [e]], em[:, [e]], w)
        if np.isfinite(c).all():
            base[:, e] = X[choice[e]] @ c[:, 0]
            rms[e] = r[0]
    return base, rms, choice


def fit_drift(design, target, emask, weight=None, ridge=1e-6, min_per_coef=5):
    """Per-element weighted least squares of ``target`` (n, E) on ``design`` (n, D) over the pixels of
    ``emask`` (n, E). An element with fewer than ``min_per_coef`` observations per coefficient
    falls back to its weighted mean (intercept only); one without observations gets NaN.
    Returns ``(coef (D, E), residual_rms (E,))`` (NaN for elements without observations)."""
    X = np.asarray(design, np.float64)
    n, d = X.shape
    y = np.asarray(target, np.float64)
    em = np.asarray(emask, bool)
    w = np.ones(n) if weight is None else np.asarray(weight, np.float64)
    coef = np.full((d, y.shape[1]), np.nan)
    rms = np.full(y.shape[1], np.nan)
    for e in range(y.shape[1]):
        sel = em[:, e] & np.isfinite(y[:, e]) & (w > 0)
        if not sel.any():
            continue
        cols = np.arange(d) if sel.sum() >= min_per_coef * d else np.arange(1)
        Xs, ys, ws = X[sel][:, cols], y[sel, e], w[sel]
        A = Xs.T @ (Xs * ws[:, None]) + ridge * np.trace(Xs.T @ (Xs * ws[:, None])) / len(cols) * np.eye(len(cols))
        b = np.linalg.solve(A, Xs.T @ (ws * ys))
        coef[:, e] = 0.0
        coef[cols, e] = b
        r = ys - Xs @ b
        rms[e] = float(np.sqrt(np.sum(ws * r * r) / np.sum(ws)))
    return coef, rms
