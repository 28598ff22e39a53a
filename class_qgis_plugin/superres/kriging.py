"""The hybrid's kriging of its residuals, and the footprints behind the GIB pixels.

* :func:`dual_ordinary_kriging`: ordinary kriging on at most ``max_points`` observations, the variogram
  fitted as PyKrige fits it and the system solved once in the dual form (:mod:`.baselines`);
* :func:`pixel_residual_kriging`: the residuals of a set of pixels kriged onto others (settings of
  :class:`~.settings.SuperResSettings`);
* :class:`FootprintGroups`: the co-added footprints behind the GIB pixels of a grid (read from the GIB's
  sidecar by :func:`class_qgis_plugin.gib.footprint_groups_of_gib`), their measured values and
  confidences;
* :func:`footprint_residual_kriging`: one residual per footprint (measurement minus the mean of a map
  over its sub-footprints' pixels) kriged from the footprint's centre.
"""
import numpy as np

from .baselines import _subset, dual_kriging, fit_variogram


def dual_ordinary_kriging(x, y, z, qx, qy, variogram_model="spherical", max_points=4000, seed=0, nlags=6,
                          exact=True):
    """Ordinary kriging of ``z`` at (x, y) (km) onto the query points (qx, qy), on at most ``max_points``
    observations (a seeded subset beyond): the variogram fitted by PyKrige's ``OrdinaryKriging`` with
    ``nlags`` lag bins, the system solved once in the dual form (:func:`.baselines.dual_kriging`;
    ``exact=False``: the nugget filtered as measurement noise)."""
    sub = _subset(len(z), max_points, seed)
    x, y, z = np.asarray(x, float)[sub], np.asarray(y, float)[sub], np.asarray(z, float)[sub]
    if len(z) < 3 or np.ptp(z) == 0:
        return np.full(len(qx), float(np.mean(z)) if len(z) else 0.0)
    vg = fit_variogram(x, y, z, variogram_model, nlags)
    return dual_kriging(x, y, z, qx, qy, vg, exact=exact)


def _kriged_residuals(x, y, resid, qx, qy, s):
    """``resid`` at (x, y) kriged onto (qx, qy) (settings ``s``); their mean with fewer than 3."""
    if len(resid) < 3:
        return np.full(len(qx), float(np.mean(resid)) if len(resid) else 0.0)
    return dual_ordinary_kriging(x, y, resid, qx, qy, max_points=s.kriging_points, seed=s.seed,
                                 nlags=s.variogram_lags, exact=not s.kriging_nugget)


def pixel_residual_kriging(gx, gy, sel, resid, qsel, s):
    """Ordinary kriging of the residuals ``resid`` of the pixels ``sel`` (n_pixels,) bool, at their
    coordinates (``gx``, ``gy`` km), onto the pixels ``qsel`` (settings ``s``:
    :func:`dual_ordinary_kriging` with ``kriging_points``, ``seed`` and ``variogram_lags``); their mean
    with fewer than 3 pixels."""
    return _kriged_residuals(gx[sel], gy[sel], resid, gx[qsel], gy[qsel], s)


class FootprintGroups:
    """The footprints behind the GIB pixels of a grid: contribution c (one sub-footprint of one co-added
    footprint) lies on flat pixel ``pix[c]``, belongs to footprint ``group[c]`` (0 .. G-1) and carries
    the populated wt% ``value[c]`` (E,) (NaN: element not constrained). The population keeps each
    footprint's mean over its sub-footprints equal to the measured value, so the mean of the values of
    a footprint's contributions is its measurement (the mean of those inside the grid where it is cut).
    ``weight`` (G,): confidence of each footprint, 1 / (its mean relative variance + 0.05^2), mean 1.
    """

    def __init__(self, pix, group, value, sigma=None):
        self.pix = np.asarray(pix, np.int64).ravel()
        _, self.group = np.unique(np.asarray(group).ravel(), return_inverse=True)
        self.group = self.group.astype(np.int64).ravel()
        self.value = np.asarray(value, np.float64).reshape(len(self.pix), -1)
        self.sigma = None if sigma is None else np.asarray(sigma, np.float64).reshape(self.value.shape)
        self.n_groups = int(self.group.max()) + 1 if self.group.size else 0
        if sigma is None:
            self.weight = np.ones(self.n_groups)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = (self.sigma / np.where(self.value > 0, self.value, np.nan)) ** 2
            ok = np.isfinite(rel)
            num = np.bincount(self.group, weights=np.where(ok, rel, 0).sum(axis=1), minlength=self.n_groups)
            den = np.bincount(self.group, weights=ok.sum(axis=1), minlength=self.n_groups)
            w = np.where(den > 0, 1.0 / (num / np.maximum(den, 1) + 0.05 ** 2), np.nan)
            fill = float(np.nanmedian(w)) if np.isfinite(w).any() else 1.0
            w = np.where(np.isfinite(w), w, fill)
            self.weight = w / w.mean() if self.n_groups else w

    def select(self, keep):
        """The contributions where ``keep`` (C,) is True (groups renumbered)."""
        k = np.asarray(keep, bool)
        out = FootprintGroups.__new__(FootprintGroups)
        out.pix, out.value = self.pix[k], self.value[k]
        out.sigma = None if self.sigma is None else self.sigma[k]
        used, out.group = np.unique(self.group[k], return_inverse=True)
        out.group = out.group.astype(np.int64).ravel()
        out.n_groups = len(used)
        out.weight = self.weight[used]
        return out

    def element_means(self, e, pixel_values=None):
        """For element ``e``: per footprint the mean of ``pixel_values`` (n_pixels,) (None: not computed)
        and of its own values over its contributions with a value of ``e``, and their count:
        ``(mean_pixels, mean_values, count)`` (G,) each."""
        fin = np.isfinite(self.value[:, e])
        cnt = np.bincount(self.group, weights=fin.astype(np.float64), minlength=self.n_groups)
        sv = np.bincount(self.group, weights=np.where(fin, self.value[:, e], 0.0), minlength=self.n_groups)
        sp = None
        if pixel_values is not None:
            pv = np.asarray(pixel_values, np.float64)[self.pix]
            sp = np.bincount(self.group, weights=np.where(fin, pv, 0.0), minlength=self.n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            return None if sp is None else sp / cnt, sv / cnt, cnt

    def noise_fraction(self, e, base):
        """Mean recorded measurement variance of element ``e``'s footprints (the mean sigma^2 of their
        contributions) over the variance of their measured values about ``base`` (n_pixels,) averaged
        over each footprint: near 1 or above, the footprints' departures from ``base`` are mostly
        measurement error. NaN without sigmas or with fewer than 3 footprints."""
        if self.sigma is None:
            return float("nan")
        pm, vm, cnt = self.element_means(e, base)
        ok = (cnt > 0) & np.isfinite(pm)
        s2 = np.where(np.isfinite(self.value[:, e]) & np.isfinite(self.sigma[:, e]), self.sigma[:, e] ** 2, np.nan)
        n2 = np.bincount(self.group, weights=np.isfinite(s2).astype(np.float64), minlength=self.n_groups)
        m2 = np.bincount(self.group, weights=np.nan_to_num(s2), minlength=self.n_groups) / np.maximum(n2, 1)
        ok &= n2 > 0
        if ok.sum() < 3:
            return float("nan")
        v = float(np.var(vm[ok] - pm[ok]))
        return float(np.mean(m2[ok]) / v) if v > 0 else float("inf")


def footprint_residual_kriging(fg, e, base, gx, gy, qx, qy, s):
    """Ordinary kriging of element ``e``'s footprint residuals: each footprint of ``fg`` (its measured
    value minus the mean of ``base`` (n_pixels,) over its sub-footprints' pixels) placed at the centre
    of those pixels (``gx``, ``gy`` km), kriged (:func:`dual_ordinary_kriging`, settings ``s``) onto
    (``qx``, ``qy``)."""
    pm, vm, cnt = fg.element_means(e, base)
    cx = fg.element_means(e, gx)[0]
    cy = fg.element_means(e, gy)[0]
    ok = (cnt > 0) & np.isfinite(pm) & np.isfinite(vm)
    return _kriged_residuals(cx[ok], cy[ok], vm[ok] - pm[ok], qx, qy, s)
