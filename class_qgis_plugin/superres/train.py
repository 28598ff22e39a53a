"""Training and prediction of the super-resolution network, and the region entry point.

:func:`fit_predict_grid` trains one :class:`~.model.SuperResNet` on the observed pixels of a grid
(any size: a whole region or a crop) and predicts every pixel:

* the grid is cut into overlapping subgraphs (:func:`~.graph.subgraph_windows`); each gets its top-k
  similarity edges (:func:`~.graph.topk_edges`) and its 4-neighbour grid edges;
* phase 1 (the first ``phase1_sweeps`` sweeps): weighted masked MSE + deviation from 100 %;
  phase 2 (the remaining sweeps): all five losses (:mod:`.losses`);
* a sweep visits the subgraphs in sliding (row-major) order and takes ``steps_per_subgraph``
  optimiser steps on each; the optimiser is Yogi (Zaheer et al. 2018, ``torch_optimizer.Yogi``),
  the learning rate follows one cosine annealing from ``lr`` to ``lr_min`` over all steps, and
  gradients are clipped to norm 1.0;
* with the GIB's footprint records (:class:`FootprintGroups`, from the region's sidecar) the MSE and
  log losses are taken per footprint: its measured value against the mean of the prediction over its
  sub-footprints' pixels (``footprint_loss``; per GIB pixel, as in the paper, without them);
* prediction runs every subgraph and averages the overlapping predictions of each pixel;
* the network corrects a classical drift (:func:`classical_drift`, per element chosen by spatial-block
  cross-validation) and is validated on column blocks of observed pixels it did not train on: per
  element, its correction is kept only where it lowers the validation error (of the validation
  footprints' means, when the footprints are known) by more than ``net_min_gain``; residual kriging last
  (every observation up to ``kriging_points``, variogram with ``variogram_lags`` lag bins): per pixel,
  or, for an element whose GIB-recorded errors make up at least ``footprint_kriging`` of its footprint
  residuals' variance, one residual per footprint at the footprint's centre.

Seeded (``seed``): the same inputs and settings give the same map on the same machine/thread count
(bit for bit on small grids, a test; on the simulated region with 2 threads two runs differed by at
most one float32 rounding step, 4e-6 wt%).

:func:`superresolve_region` reads a GIB region raster (contract 6) and an albedo, builds the
features and returns the (8, 342, 682) prediction, a support band (great-circle distance in km from
each pixel to the nearest observed GIB pixel: 0 on the tracks, growing away from them) and the
training curve. :func:`write_superres_geotiff` / :func:`write_training_curve` write them.
"""
import csv
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ClassXRFError
from ..composition import ELEMENTS
from ..progress import as_progress, subrange


@dataclass
class SuperResSettings:
    """Training settings (defaults: a 342 x 682 region trains in minutes on 2 CPU cores)."""
    k: int = 16                    # top-k similarity neighbours per node (paper: 100)
    alpha: float = 0.01            # 1/km, distance term of w
    beta: float = 1.0              # feature term of w; W is scaled so ||W_i - W_j||^2 averages ~2
    n_features: int = 300          # K kept by mRMR (fewer when fewer exist)
    extractor: str = "default"     # "default" or "resnet50"
    resnet_weights: str = None     # state_dict file for "resnet50"
    window: int = 6                # feature window in pixels (12.5 km / 2 km)
    subgraph_size: int = 100
    stride: int = 50
    hidden: int = 32
    heads: int = 1
    cnn_channels: tuple = (16, 32, 32)
    fusion: int = 64
    pos_freqs: tuple = ()          # Fourier encoding of latitude/longitude, e.g. (1, 2, 4); default raw only:
                                   # with it the network interpolates in space and does worse than the kriging
    sweeps: int = 3
    phase1_sweeps: int = 1
    steps_per_subgraph: int = 8
    lr: float = 0.03
    lr_min: float = 1e-4
    clip: float = 1.0
    w_mse: float = 1.0
    w_log: float = 0.5
    w_feat: float = 0.05
    w_spat: float = 0.05
    w_dev: float = 1.0
    seed: int = 0
    train_empty: bool = False      # also visit subgraphs without observed pixels (phase 2 only)
    cache_dir: str = None          # feature cache; default: ".superres_cache" beside the GIB
    graph_cache_mb: float = 1500.0  # keep the subgraphs' edges in memory below this size
    threads: int = None            # torch CPU threads (None: leave torch's setting)
    drift: str = "select"          # classical drift the network corrects: "select" (per element, chosen by
                                   # spatial-block cross-validation among DRIFT_CANDIDATES), "linear" (mare flag,
                                   # position, albedo and its window mean) or "none" (the element's mean)
    drift_weight: str = "none"     # weights of the drift fit: "none" or "pixel" (the GIB pixel confidence)
    cv_folds: int = 3              # folds of the drift selection (column blocks of the observed pixels)
    cv_block: int = 50             # block width in pixels of the cross-validation and validation splits
    net_validation: float = 0.2    # fraction of the observed pixels (column blocks) kept out of network training
                                   # to validate it: per element its correction is kept only where it lowers
                                   # the validation error of drift + residual kriging (0: always kept)
    net_min_gain: float = 0.01     # ... by more than this fraction of it: a smaller gain is within the noise of a
                                   # few validation blocks
    residual_kriging: bool = True  # add the ordinary-kriged residuals of the observed pixels (regression kriging)
    kriging_points: int = 4000     # observations in the residual kriging system (seeded subset beyond)
    variogram_lags: int = 20       # lag bins of the residual variogram fit (PyKrige's default 6 spreads them over
                                   # the whole region: ~250 km bins cannot resolve 50-100 km correlation lengths)
    min_obs: int = 10              # an element observed on fewer pixels is not predicted (NaN band)
    footprint_loss: bool = True    # with the GIB's footprint records (its .npz sidecar): the MSE and log losses and
                                   # the validation gate compare each footprint's measurement with the mean of the
                                   # network's pixels over its sub-footprints (the within-footprint split of the GIB
                                   # is the population's prior, not a measurement); False: per GIB pixel (the paper)
    footprint_kriging: float = 0.5  # with the footprint records: an element whose GIB-recorded measurement variance is
                                   # at least this fraction of the variance of its footprints' drift residuals has its
                                   # residuals kriged as footprint means at the footprints' centres (the along-track
                                   # correlation of its sub-footprints is then mostly their one shared error);
                                   # others per pixel. Above 1: never
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d):
        if d is None:
            return cls()
        if isinstance(d, cls):
            return d
        known = {f for f in cls.__dataclass_fields__}
        bad = [k for k in d if k not in known]
        if bad:
            raise ClassXRFError(None, f"unknown super-resolution setting {bad[0]!r}", key=bad[0])
        return cls(**d)

    def validate(self):
        from .graph import check_alpha_beta
        check_alpha_beta(self.alpha, self.beta)
        for name in ("k", "n_features", "window", "subgraph_size", "stride", "sweeps", "steps_per_subgraph",
                     "hidden", "fusion"):
            if int(getattr(self, name)) < 1:
                raise ClassXRFError(None, f"{name} must be at least 1, got {getattr(self, name)}", key=name)
        if not 0 <= self.phase1_sweeps <= self.sweeps:
            raise ClassXRFError(None, "phase1_sweeps must lie between 0 and sweeps", key="phase1_sweeps")


def _resolve_device(device):
    import torch
    dev = str(device or "cpu")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise ClassXRFError(None, f"device {dev!r} asked for but CUDA is not available here", key="device")
    return torch.device(dev)


class _Subgraph:
    """The tensors of one window: node rows, edges (similarity and grid) and their weights."""

    def __init__(self, win, nodes, edge_index, w, feat_sim, grid_ei, grid_sim):
        self.win, self.nodes = win, nodes
        self.edge_index, self.w, self.feat_sim = edge_index, w, feat_sim
        self.grid_ei, self.grid_sim = grid_ei, grid_sim


def _build_subgraph(win, lat2, lon2, wg, cols, s, device):
    import torch
    from .graph import grid_edges, haversine_torch, topk_edges

    r0, r1, c0, c1 = win
    rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
    nodes = (rr * cols + cc).ravel()
    la, lo, wf = lat2.ravel()[nodes], lon2.ravel()[nodes], wg[nodes]
    ei, w = topk_edges(wf, la, lo, s.k, s.alpha, s.beta, device=device)
    wt = torch.from_numpy(wf)
    dw2 = ((wt[ei[0]] - wt[ei[1]]) ** 2).sum(dim=1)
    feat_sim = torch.exp(-s.beta * dw2).float()
    g = torch.from_numpy(grid_edges(r1 - r0, c1 - c0))
    lat_t, lon_t = torch.from_numpy(la), torch.from_numpy(lo)
    d = haversine_torch(lat_t[g[0]], lon_t[g[0]], lat_t[g[1]], lon_t[g[1]])
    grid_sim = torch.exp(-s.alpha * d).float()
    return _Subgraph(win, nodes, ei.to(torch.int32), w, feat_sim, g.to(torch.int32), grid_sim)


def _unit(v):
    """``v`` scaled linearly to [-1, 1] over its range (zeros when constant)."""
    lo_, hi_ = float(v.min()), float(v.max())
    return np.zeros_like(v) if hi_ <= lo_ else 2 * (v - lo_) / (hi_ - lo_) - 1


def _deal_blocks(block_ids, n_folds, seed):
    """Fold of each entry of ``block_ids``: the distinct blocks dealt to ``n_folds`` folds in a seeded
    random order."""
    ub, inv = np.unique(block_ids, return_inverse=True)
    fold_of = np.empty(len(ub), np.int64)
    fold_of[np.random.default_rng(seed).permutation(len(ub))] = np.arange(len(ub)) % max(1, int(n_folds))
    return fold_of[inv.ravel()]


def drift_design(lat2, lon2, mare, albedo=None, window=6):
    """Covariates of the classical drift, (rows, cols, D): 1, the mare flag, latitude u and longitude v
    scaled to [-1, 1] over the grid and, with an ``albedo``, its standardised value and its
    standardised mean over the ``window`` (the 12.5 km footprint scale). Linear in position: a
    quadratic trend extrapolates badly beyond the outer tracks."""
    from scipy import ndimage

    u, v = _unit(np.asarray(lat2, np.float64)), _unit(np.asarray(lon2, np.float64))
    cols = [np.ones_like(u), np.asarray(mare, np.float64), u, v]
    if albedo is not None:
        from .features import _fill_nan
        a = _fill_nan(albedo)
        for f in (a, ndimage.uniform_filter(a, size=max(1, int(window)), mode="reflect")):
            sd = f.std()
            cols.append((f - f.mean()) / sd if sd > 0 else np.zeros_like(f))
    return np.stack(cols, axis=-1)


DRIFT_CANDIDATES = ("mean", "albedo", "albedo+position")


def drift_candidates(lat2, lon2, albedo=None, window=6, mare=None):
    """Candidate drift designs, dict name -> (rows, cols, D): "mean" (intercept only: ordinary kriging's
    constant mean), "albedo" (1 and the standardised albedo mean over the ``window``, the 12.5 km
    footprint scale: the window mean averages out the crater texture that makes the point albedo a
    noisy proxy of the mare fraction) and "albedo+position" (also latitude and longitude scaled to
    [-1, 1]: a regional linear trend). Without an albedo, the ``mare`` flag (when given) takes its place
    ("mare", "mare+position"), else only "mean" and "position"."""
    from scipy import ndimage

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
    from .features import _fill_nan
    f = ndimage.uniform_filter(_fill_nan(albedo).astype(np.float64), size=max(1, int(window)), mode="reflect")
    sd = f.std()
    f = (f - f.mean()) / sd if sd > 0 else np.zeros_like(f)
    out["albedo"] = np.stack([one, f], axis=-1)
    out["albedo+position"] = np.stack([one, f, u, v], axis=-1)
    return out


def block_folds(mask, block=50, n_folds=3, seed=0):
    """Fold id (rows, cols) of every True pixel of ``mask`` (-1 elsewhere): the columns are cut into
    ``block``-pixel-wide blocks (narrowed so that there are at least 2 ``n_folds`` blocks), and the
    blocks holding observed pixels are dealt to the folds in a seeded random order. Whole stretches of
    north-south tracks leave together, so a fold is not predicted from its own track neighbours."""
    m = np.asarray(mask, bool)
    rows, cols = m.shape
    b = max(1, min(int(block), cols // max(1, 2 * int(n_folds))))
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
    b = max(1, min(int(block), cols // max(1, 2 * int(n_folds))))
    lab, _ = ndimage.label(ndimage.binary_dilation(m, structure=np.ones((2 * int(join) + 1, 3), bool)))
    lab = np.where(m, lab, 0)
    ids = np.unique(lab[m])
    cc = np.broadcast_to(np.arange(cols, dtype=np.float64)[None, :], m.shape)
    mean_col = np.asarray(ndimage.mean(cc, labels=lab, index=ids))
    bid = (mean_col // b).astype(np.int64)
    out[m] = _deal_blocks(bid, n_folds, seed)[np.searchsorted(ids, lab[m])]
    return out


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
    if ok.sum() < 3:
        return np.full(len(qx), float(np.mean(vm[ok] - pm[ok])) if ok.any() else 0.0)
    return dual_ordinary_kriging(cx[ok], cy[ok], vm[ok] - pm[ok], qx, qy, max_points=s.kriging_points, seed=s.seed,
                                 nlags=s.variogram_lags)


def footprint_groups_of_gib(gib_tif, region=None):
    """:class:`FootprintGroups` of a GIB region raster from its sidecar (``gib_r{i}_c{j}.npz`` beside
    it, :mod:`class_qgis_plugin.gib`), or None when there is no sidecar. A footprint is identified by
    its observation key."""
    from ..geo import REGION_COLS
    from ..gib import load_region_records

    stem = os.path.splitext(os.path.abspath(str(gib_tif)))[0]
    if not os.path.isfile(stem + ".npz"):
        return None
    name = os.path.basename(stem)
    try:
        i, j = (int(v) for v in name[len("gib_r"):].split("_c")) if region is None else region
    except ValueError:
        return None
    if name != f"gib_r{int(i)}_c{int(j)}":      # a renamed raster: its sidecar cannot be told apart
        return None
    rec = load_region_records(os.path.dirname(stem), i, j)
    if rec["key"].size == 0:
        return None
    return FootprintGroups(rec["row"] * REGION_COLS + rec["col"], rec["key"], rec["value"], rec["sigma"])


def _rk_at(gx, gy, sel, resid, qsel, s):
    """Ordinary-kriged residuals ``resid`` (of the pixels ``sel``) at the pixels ``qsel`` (settings ``s``)."""
    if sel.sum() < 3:
        return np.full(int(qsel.sum()), float(np.mean(resid)) if len(resid) else 0.0)
    return dual_ordinary_kriging(gx[sel], gy[sel], resid, gx[qsel], gy[qsel], max_points=s.kriging_points,
                                 seed=s.seed, nlags=s.variogram_lags)


def classical_drift(lat2, lon2, mare, albedo, target, emask, weight=None, settings=None, gx=None, gy=None):
    """The hybrid's classical drift of every element on the whole grid.

    ``target`` (n, E), ``emask`` (n, E) observed, ``weight`` (n,) pixel confidence (used when
    ``settings.drift_weight == "pixel"``). ``settings.drift``: "linear" (:func:`drift_design`), "none",
    or "select": per element, the candidate of :func:`drift_candidates` with the least
    cross-validated error of drift + residual kriging (``settings.cv_folds`` folds of column blocks
    of the observed pixels, :func:`block_folds`; kriging on the local km coordinates ``gx``, ``gy``),
    refitted on all observed pixels. A drift term an element does not follow (e.g. albedo for an
    element alike in mare and highland) only adds the noise of its fitted slope: the selection
    drops it. Returns ``(base (n, E), residual_rms (E,), chosen (E,) candidate names or None)``.
    """
    s = SuperResSettings.from_dict(settings)
    rows, cols = np.shape(lat2)
    n = rows * cols
    y = np.asarray(target, np.float64).reshape(n, -1)
    em = np.asarray(emask, bool).reshape(n, -1)
    n_el = y.shape[1]
    if s.drift_weight == "none" or weight is None:
        w = None
    elif s.drift_weight == "pixel":
        w = np.asarray(weight, np.float64).ravel()
    else:
        raise ClassXRFError(None, f"unknown drift_weight {s.drift_weight!r} (none or pixel)", key="drift_weight")
    if s.drift == "linear":
        cands = {"linear": drift_design(lat2, lon2, mare, albedo, s.window)}
    elif s.drift == "none":
        cands = {"mean": np.ones((rows, cols, 1))}
    elif s.drift == "select":
        cands = drift_candidates(lat2, lon2, albedo, s.window, mare)
    else:
        raise ClassXRFError(None, f"unknown drift {s.drift!r} (select, linear or none)", key="drift")
    names = list(cands)
    X = {k: v.reshape(n, -1) for k, v in cands.items()}
    choice = [names[0]] * n_el
    if len(names) > 1:
        if gx is None:
            from .baselines import _local_km
            gx, gy = _local_km(np.ravel(lat2), np.ravel(lon2), float(np.mean(lat2)), float(np.mean(lon2)))
        fold = block_folds(em.any(axis=1).reshape(rows, cols), s.cv_block, s.cv_folds, s.seed).ravel()
        for e in range(n_el):
            if em[:, e].sum() < 3 or len(np.unique(fold[em[:, e]])) < 2:
                continue
            sse = []
            for k in names:
                tot = 0.0
                for f in np.unique(fold[em[:, e]]):
                    tr, te = em[:, e] & (fold != f), em[:, e] & (fold == f)
                    c, _ = fit_drift(X[k], y[:, [e]], tr[:, None], w)
                    d = X[k] @ np.nan_to_num(c[:, 0])
                    r = y[tr, e] - d[tr]
                    pe = d[te]
                    if s.residual_kriging:
                        pe = pe + _rk_at(gx, gy, tr, r, te, s)
                    tot += float(np.sum((y[te, e] - pe) ** 2))
                sse.append(tot)
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


def dual_ordinary_kriging(x, y, z, qx, qy, variogram_model="spherical", max_points=4000, seed=0, nlags=6):
    """Ordinary kriging of ``z`` at (x, y) (km) onto the query points (qx, qy), on at most ``max_points``
    observations (a seeded subset beyond): the variogram fitted by PyKrige's ``OrdinaryKriging`` with
    ``nlags`` lag bins, the system solved once in the dual form (:func:`.baselines.dual_kriging`)."""
    from .baselines import _subset, dual_kriging, fit_variogram

    sub = _subset(len(z), max_points, seed)
    x, y, z = np.asarray(x, float)[sub], np.asarray(y, float)[sub], np.asarray(z, float)[sub]
    if len(z) < 3 or np.ptp(z) == 0:
        return np.full(len(qx), float(np.mean(z)) if len(z) else 0.0)
    vg = fit_variogram(x, y, z, variogram_model, nlags)
    return dual_kriging(x, y, z, qx, qy, vg)


def fit_predict_grid(w_feat, lat, lon, mare, target, mask, pixel_weight=None, settings=None, device="cpu",
                     progress=None, albedo=None, footprints=None):
    """Train on the observed pixels of a grid and predict all of them.

    ``w_feat`` (rows, cols, K) standardised features; ``lat``/``lon`` (rows, cols) or the axes
    (rows,) and (cols,) in degrees; ``mare`` (rows, cols) 1 mare / 0 highland; ``target``
    (rows, cols, 8) wt% (NaN where unknown: an element may be missing on its own, e.g. one the
    inversion left unconstrained); ``mask`` (rows, cols) True where observed (training pixels);
    ``pixel_weight`` (rows, cols) confidence of each observed pixel (default 1); ``albedo``
    (rows, cols) enters the classical drift (``settings.drift``).

    The prediction is drift + network correction (+ kriged residual, ``settings.residual_kriging``):

    1. drift: per element, a least-squares linear model over the element's observed pixels
       (:func:`classical_drift`; ``drift="select"``: the candidate of :func:`drift_candidates`, mean,
       window-mean albedo, or window-mean albedo + position, with the least cross-validated error);
       the classical trend of kriging with an external drift;
    2. the GATv2 + CNN network predicts the normalised correction z_e, pred_e = drift_e + s_e z_e with
       s_e the residual RMS of the drift, trained with the five losses; the MSE terms weigh each
       element by 1 / s_e^2 (inverse residual variance: every element counts alike). The network
       trains on all but ``settings.net_validation`` of the observed pixels (column blocks); per
       element its correction is kept only if drift + correction (+ residual kriging from the
       training pixels) beats drift (+ the same kriging) on those validation pixels by more than
       ``settings.net_min_gain`` (relative RMSE);
    3. residual kriging (regression kriging, Hengl, Heuvelink and Rossiter 2007, Comput. Geosci. 33,
       1301): the network's residuals on the observed pixels, ordinary-kriged
       (:func:`dual_ordinary_kriging`) and added: what is left spatially correlated along the tracks.
       With ``footprints``, an element whose recorded measurement variance is at least
       ``settings.footprint_kriging`` of the variance of its footprints' residuals about the drift
       (:meth:`FootprintGroups.noise_fraction`) is kriged as one residual per footprint at the centre
       of its sub-footprints (:func:`footprint_residual_kriging`): the sub-footprints of a footprint
       share one measurement error, which pixel kriging would read as along-track correlation and
       copy into the map. The validation gate kriges the same way.

    ``footprints`` (:class:`FootprintGroups`, with ``settings.footprint_loss``): the network's MSE and log
    losses and the validation gate compare each footprint's measured value with the mean of the
    prediction over its sub-footprints' pixels, instead of each GIB pixel's populated value: the split
    of a footprint's value among its sub-footprints is the population's mare/highland prior, and a
    network fitted to it learns the prior's contrast, not the surface's. The feature- and
    spatial-similarity losses decide how the network distributes a footprint's value.

    Elements with fewer than ``settings.min_obs`` observed pixels are not predicted: NaN band.
    Returns ``(prediction (8, rows, cols) float32, curve)``: ``curve`` is a list of dicts, one per
    subgraph visit: sweep, phase, subgraph, step, lr, loss and each loss term (means over the visit).
    """
    import torch
    import torch_optimizer
    from . import losses as L
    from .model import SuperResNet

    s = SuperResSettings.from_dict(settings)
    s.validate()
    p = as_progress(progress)
    dev = _resolve_device(device)
    if s.threads:
        torch.set_num_threads(int(s.threads))
    w_feat = np.asarray(w_feat, dtype=np.float32)
    rows, cols, nfeat = w_feat.shape
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if lat.ndim == 1:
        lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    else:
        lat2, lon2 = lat, lon
    target = np.asarray(target, dtype=np.float32)
    n_el = target.shape[-1]
    emask = np.asarray(mask, dtype=bool)[..., None] & np.isfinite(target)
    counts = emask.reshape(-1, n_el).sum(axis=0)
    el_ok = counts >= max(1, int(s.min_obs))
    emask &= el_ok.reshape(1, 1, -1)
    mask = emask.any(axis=-1)
    if not mask.any():
        raise ClassXRFError(None, "no observed pixel with a constrained element to train on", key="mask")
    pw = np.ones((rows, cols), np.float32) if pixel_weight is None else np.asarray(pixel_weight, np.float32)
    pw = np.where(np.isfinite(pw) & (pw > 0), pw, 0.0).astype(np.float32)
    pw = np.where(mask, pw, 0.0).astype(np.float32)
    mare = np.asarray(mare, np.float32)

    # node inputs: W, mare flag, latitude and longitude scaled to ~[-1, 1] over the grid
    x_all = np.concatenate([w_feat.reshape(-1, nfeat), mare.reshape(-1, 1),
                            _unit(lat2).reshape(-1, 1).astype(np.float32),
                            _unit(lon2).reshape(-1, 1).astype(np.float32)], axis=1)
    wg = np.ascontiguousarray(w_feat.reshape(-1, nfeat) / math.sqrt(nfeat))   # graph distance features
    flat_t = target.reshape(-1, n_el)
    flat_em = emask.reshape(-1, n_el)
    scale = np.array([np.mean(flat_t[flat_em[:, e], e]) if el_ok[e] else np.nan for e in range(n_el)])

    # 1. drift
    from .baselines import _local_km
    lat0 = float(np.mean(lat2))
    lon0 = float(np.degrees(np.arctan2(np.mean(np.sin(np.radians(lon2))), np.mean(np.cos(np.radians(lon2))))))
    gx, gy = _local_km(lat2.ravel(), lon2.ravel(), lat0, lon0)
    drift_all, res_rms, drift_choice = classical_drift(lat2, lon2, mare, albedo, flat_t, flat_em, pw.ravel(), s,
                                                       gx, gy)
    base = np.zeros((rows * cols, n_el), np.float64)
    prior = None
    if n_el == len(ELEMENTS) and not el_ok.all():
        from ..composition import HIGHLAND_WT, MARE_WT
        prior = mare.reshape(-1, 1) * MARE_WT[None] + (1 - mare.reshape(-1, 1)) * HIGHLAND_WT[None]
    for e in range(n_el):
        if el_ok[e]:
            base[:, e] = drift_all[:, e]
        elif prior is not None:      # unconstrained element: its prior keeps the 100 % sum meaningful
            base[:, e] = prior[:, e]
    if prior is not None:
        scale = np.where(el_ok, scale, prior.mean(axis=0))
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0).astype(np.float32)
    res_scale = np.where(el_ok & np.isfinite(res_rms), np.maximum(np.nan_to_num(res_rms), 1e-3 * scale),
                         0.1 * scale).astype(np.float32)

    # validation pixels (whole tracks in column blocks) kept out of network training
    val = np.zeros(rows * cols, bool)
    if s.net_validation > 0:
        nf = max(2, int(round(1.0 / min(0.5, float(s.net_validation)))))
        vf = track_folds(mask, s.cv_block, nf, s.seed + 1).ravel()
        if len(np.unique(vf[vf >= 0])) >= 2:
            val = vf == 0
    full_em = flat_em.copy()
    flat_em = flat_em & ~val[:, None]
    fp_tr = fp_val = fp_all = None
    fp_krige = np.zeros(n_el, bool)        # elements whose residuals are kriged as footprint means
    noise_frac = np.full(n_el, np.nan)
    if footprints is not None:
        fpg = footprints.select(mask.ravel()[footprints.pix])
        fp_tr = fpg.select(~val[fpg.pix])
        all_val = np.bincount(fpg.group, weights=(~val[fpg.pix]).astype(float), minlength=fpg.n_groups) == 0
        fp_val = fpg.select(all_val[fpg.group])
        fp_all = fpg if fpg.n_groups else None
        if fp_all is not None:
            for e in range(n_el):
                if el_ok[e]:
                    noise_frac[e] = fp_all.noise_fraction(e, base[:, e])
            fp_krige = el_ok & np.isfinite(noise_frac) & (noise_frac >= float(s.footprint_kriging))
        if fp_tr.n_groups == 0 or not s.footprint_loss:
            fp_tr = fp_val = None

    from .graph import subgraph_windows
    wins = subgraph_windows(rows, cols, s.subgraph_size, s.stride)
    flat_mask = mask.ravel() & ~val
    n_obs = [int(flat_mask[(np.arange(r0, r1)[:, None] * cols + np.arange(c0, c1)[None, :]).ravel()].sum())
             for (r0, r1, c0, c1) in wins]
    train_ids = [i for i, n in enumerate(n_obs) if n > 0 or s.train_empty]
    n_nodes_max = max((r1 - r0) * (c1 - c0) for (r0, r1, c0, c1) in wins)
    est_mb = len(wins) * n_nodes_max * (s.k * 16 + 4 * 16) / 1e6
    keep_graphs = est_mb <= s.graph_cache_mb
    graphs = {}

    fp_cache = {}

    def fp_batch(i):
        """Training footprints cut to window i: local node, group, element mask, counts, targets, weights."""
        if i in fp_cache:
            return fp_cache[i]
        r0, r1, c0, c1 = wins[i]
        rr, cc = fp_tr.pix // cols, fp_tr.pix % cols
        inside = (rr >= r0) & (rr < r1) & (cc >= c0) & (cc < c1)
        out = None
        if inside.any():
            sub = fp_tr.select(inside)
            local = (sub.pix // cols - r0) * (c1 - c0) + (sub.pix % cols - c0)
            fin = np.isfinite(sub.value) & el_ok[None]
            vm_cnt = [sub.element_means(e)[1:] for e in range(n_el)]
            cnt = np.stack([c for _, c in vm_cnt], axis=1) * el_ok[None]
            tgt = np.where(cnt > 0, np.stack([v for v, _ in vm_cnt], axis=1), 0.0)
            gw = sub.weight[:, None] * (cnt > 0)
            out = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (
                local.astype(np.int64), sub.group, fin.astype(np.float32), np.maximum(cnt, 1).astype(np.float32),
                tgt.astype(np.float32), gw.astype(np.float32)))
        fp_cache[i] = out
        return out

    def get_graph(i):
        if i in graphs:
            return graphs[i]
        g = _build_subgraph(wins[i], lat2, lon2, wg, cols, s, dev)
        if keep_graphs:
            graphs[i] = g
        return g

    torch.manual_seed(int(s.seed))
    np.random.seed(int(s.seed) % (2 ** 32))
    x_t = torch.from_numpy(x_all)
    y_t = torch.from_numpy(np.nan_to_num(flat_t))
    m_t = torch.from_numpy(flat_mask)
    em_t = torch.from_numpy(flat_em.astype(np.float32))
    base_t = torch.from_numpy(base.astype(np.float32))
    pw_t = torch.from_numpy(pw.ravel())
    scale_t = torch.from_numpy(scale).to(dev)
    el_w = torch.from_numpy(1.0 / res_scale ** 2).to(dev).reshape(1, -1)
    model = SuperResNet(x_all.shape[1], res_scale, hidden=s.hidden, heads=s.heads,
                        cnn_channels=tuple(s.cnn_channels), fusion=s.fusion, n_out=n_el,
                        pos_freqs=tuple(s.pos_freqs)).to(dev)
    opt = torch_optimizer.Yogi(model.parameters(), lr=s.lr)
    total_steps = max(1, s.sweeps * len(train_ids) * s.steps_per_subgraph)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=s.lr_min)
    curve = []
    n_visits = s.sweeps * len(train_ids)
    p_train = subrange(p, 0.0, 0.8)
    visit = 0
    t0 = time.monotonic()
    for sweep in range(s.sweeps):
        phase = 1 if sweep < s.phase1_sweeps else 2
        for gi in train_ids:
            p.check()
            if phase == 1 and n_obs[gi] == 0:
                visit += 1
                continue
            g = get_graph(gi)
            h, w = g.win[1] - g.win[0], g.win[3] - g.win[2]
            nodes = torch.from_numpy(g.nodes)
            x = x_t[nodes].to(dev)
            y = y_t[nodes].to(dev)
            m = m_t[nodes].to(dev)
            b = base_t[nodes].to(dev)
            emn = em_t[nodes].to(dev)
            wgt = pw_t[nodes].to(dev).reshape(-1, 1) * emn * el_w
            wlog = pw_t[nodes].to(dev).reshape(-1, 1) * emn
            ei = g.edge_index.long().to(dev)
            ew = g.w.to(dev)
            fb = None
            if fp_tr is not None:
                fb = fp_batch(gi)
                if fb is not None:
                    fb = tuple(t.to(dev) for t in fb)
                    g_ones = torch.ones(fb[3].shape[0], device=dev)
                    g_wmse = fb[5] * el_w

            def fit_terms(pred):
                """MSE and log loss: per footprint when the footprints are known, else per GIB pixel."""
                if fp_tr is None:
                    return L.weighted_masked_mse(pred, y, m, wgt), L.weighted_masked_log_loss(pred, y, m, wlog)
                if fb is None:
                    z = pred.sum() * 0.0
                    return z, z
                local, grp, fin, cnt, tgt, gw = fb
                pm = torch.zeros_like(tgt).index_add(0, grp, pred[local] * fin) / cnt
                return (L.weighted_masked_mse(pm, tgt, g_ones, g_wmse),
                        L.weighted_masked_log_loss(pm, tgt, g_ones, gw))
            model.train()
            acc = {}
            for step in range(s.steps_per_subgraph):
                opt.zero_grad(set_to_none=True)
                pred = model(x, ei, ew, (h, w), base=b)
                mse, log = fit_terms(pred)
                terms = {"mse": mse, "dev": L.deviation_from_100_loss(pred)}
                loss = s.w_mse * terms["mse"] + s.w_dev * terms["dev"]
                if phase == 2:
                    terms["log"] = log
                    terms["feat"] = L.feature_similarity_loss(pred, ei, g.feat_sim.to(dev), scale_t)
                    terms["spat"] = L.spatial_similarity_loss(pred, g.grid_ei.long().to(dev),
                                                              g.grid_sim.to(dev), scale_t)
                    loss = (loss + s.w_log * terms["log"] + s.w_feat * terms["feat"]
                            + s.w_spat * terms["spat"])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), s.clip)
                opt.step()
                sched.step()
                acc["loss"] = acc.get("loss", 0.0) + float(loss.detach()) / s.steps_per_subgraph
                for k_, v in terms.items():
                    acc[k_] = acc.get(k_, 0.0) + float(v.detach()) / s.steps_per_subgraph
            curve.append(dict(sweep=sweep + 1, phase=phase, subgraph=gi, step=(visit + 1) * s.steps_per_subgraph,
                              lr=float(sched.get_last_lr()[0]), n_obs=n_obs[gi], **acc))
            visit += 1
            p_train.set(visit / max(1, n_visits),
                        f"sweep {sweep + 1}/{s.sweeps}, subgraph {train_ids.index(gi) + 1}/{len(train_ids)}, "
                        f"loss {acc['loss']:.4g}")
    # prediction: average of the overlapping subgraphs
    model.eval()
    acc_sum = np.zeros((rows * cols, n_el), np.float64)
    acc_n = np.zeros(rows * cols, np.float64)
    p_pred = subrange(p, 0.8, 0.9)
    with torch.no_grad():
        for i, win in enumerate(wins):
            p.check()
            g = get_graph(i)
            h, w = win[1] - win[0], win[3] - win[2]
            nodes = torch.from_numpy(g.nodes)
            pred = model(x_t[nodes].to(dev), g.edge_index.long().to(dev), g.w.to(dev), (h, w),
                         base=base_t[nodes].to(dev))
            acc_sum[g.nodes] += pred.cpu().numpy()
            acc_n[g.nodes] += 1
            p_pred.set((i + 1) / len(wins), f"predicting subgraph {i + 1}/{len(wins)}")
    flat_pred = acc_sum / acc_n[:, None]
    if curve:
        curve[-1]["train_seconds"] = time.monotonic() - t0
    # the network's correction of an element is kept only where it lowers the validation error of
    # drift (+ residual kriging from the other pixels): it can only improve on the classical model
    keep = np.zeros(n_el, bool) if val.any() else np.ones(n_el, bool)
    net_gain = {}
    for e in range(n_el):
        if not (val.any() and el_ok[e]):
            continue
        tr, te = flat_em[:, e], full_em[:, e] & val
        if te.sum() == 0 or tr.sum() < 3:
            continue
        err = []
        for cand in (base[:, e], flat_pred[:, e]):
            pe = cand[te]
            if s.residual_kriging and fp_krige[e]:
                ftr = fp_all.select(~val[fp_all.pix])
                pe = pe + footprint_residual_kriging(ftr, e, cand, gx, gy, gx[te], gy[te], s)
            elif s.residual_kriging:
                pe = pe + _rk_at(gx, gy, tr, flat_t[tr, e] - cand[tr], te, s)
            if fp_val is not None and fp_val.n_groups:
                # footprint level: the mean over each validation footprint's pixels against its measurement
                col = np.full(rows * cols, np.nan)
                col[te] = pe
                pm, vm, cnt = fp_val.element_means(e, col)
                ok = (cnt > 0) & np.isfinite(pm)
                if ok.any():
                    err.append(float(np.sqrt(np.mean((vm[ok] - pm[ok]) ** 2))))
                    continue
            err.append(float(np.sqrt(np.mean((flat_t[te, e] - pe) ** 2))))
        keep[e] = err[1] < (1.0 - s.net_min_gain) * err[0]
        net_gain[ELEMENTS[e] if n_el == len(ELEMENTS) else str(e)] = (err[0], err[1])
    flat_pred[:, ~keep] = base[:, ~keep]
    flat_em = full_em
    if curve:
        curve[-1]["drift"] = " ".join(str(c) for c in drift_choice)
        curve[-1]["net_kept"] = " ".join(str(int(k)) for k in keep)
        curve[-1]["net_validation_rmse"] = " ".join(f"{k}:{a:.4g}/{b:.4g}" for k, (a, b) in net_gain.items())
        curve[-1]["noise_fraction"] = " ".join(f"{v:.3g}" for v in noise_frac)
        curve[-1]["footprint_kriging"] = " ".join(str(int(k)) for k in fp_krige)
    # 3. residual kriging of what the network left on the observed pixels
    if s.residual_kriging:
        p_rk = subrange(p, 0.9, 1.0)
        for e in range(n_el):
            p.check()
            sel = flat_em[:, e]
            if el_ok[e] and fp_krige[e]:
                flat_pred[:, e] += footprint_residual_kriging(fp_all, e, flat_pred[:, e].copy(), gx, gy, gx, gy, s)
            elif el_ok[e] and sel.sum() >= 3:
                r = flat_t[sel, e] - flat_pred[sel, e]
                flat_pred[:, e] += dual_ordinary_kriging(gx[sel], gy[sel], r, gx, gy, max_points=s.kriging_points,
                                                         seed=s.seed, nlags=s.variogram_lags)
            p_rk.set((e + 1) / n_el, f"residual kriging {e + 1}/{n_el}")
    flat_pred[:, ~el_ok] = np.nan
    flat_pred = np.where(np.isfinite(flat_pred), np.maximum(flat_pred, 0.0), np.nan)
    out = flat_pred.astype(np.float32).reshape(rows, cols, n_el).transpose(2, 0, 1)
    return np.ascontiguousarray(out), curve


# --------------------------------------------------------------------------------------------------
# region level


def _albedo_on_region(albedo, lat, lon):
    """The albedo (rows, cols) on the region grid from an array already on it or a raster path."""
    rows, cols = lat.size, lon.size
    if isinstance(albedo, (str, os.PathLike)):
        from ..albedo import read_albedo
        amap = read_albedo(albedo)
        la, lo = np.meshgrid(lat, lon, indexing="ij")
        a = amap.sample_albedo(la, lo)
        if not np.isfinite(a).any():
            raise ClassXRFError(albedo, "the albedo raster does not cover the region")
        return a.astype(np.float32), amap.threshold
    a = np.asarray(albedo, dtype=np.float32)
    if a.shape != (rows, cols):
        raise ClassXRFError(None, f"the albedo array must be on the region grid {(rows, cols)}, got {a.shape}",
                            key="albedo")
    return a, None


def support_distance_km(mask, lat, lon):
    """Great-circle distance (km) from every pixel of the grid to the nearest True pixel of ``mask``."""
    from scipy.spatial import cKDTree
    from ..geo import MOON_RADIUS_KM

    la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
    xyz = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1).reshape(-1, 3)
    m = np.asarray(mask, bool).ravel()
    if not m.any():
        return np.full(la.shape, np.inf, np.float32)
    chord, _ = cKDTree(xyz[m]).query(xyz)
    return (2 * MOON_RADIUS_KM * np.arcsin(np.clip(chord / 2, 0, 1))).reshape(la.shape).astype(np.float32)


def read_gib(gib_tif):
    """(target (rows, cols, 8) wt%, errors (rows, cols, 8), n_obs (rows, cols), meta) of a GIB raster."""
    from ..geo import REGION_COLS, REGION_ROWS, read_geotiff

    data, meta = read_geotiff(gib_tif)
    if data.shape[0] < 17:
        raise ClassXRFError(gib_tif, f"a GIB raster has 17 bands (8 wt%, 8 errors, n_obs), this one has "
                                     f"{data.shape[0]}", key="bands")
    if data.shape[1:] != (REGION_ROWS, REGION_COLS):
        raise ClassXRFError(gib_tif, f"a GIB raster is {REGION_ROWS} x {REGION_COLS} pixels, this one is "
                                     f"{data.shape[1]} x {data.shape[2]}", key="size")
    return (np.moveaxis(data[0:8], 0, -1), np.moveaxis(data[8:16], 0, -1), data[16], meta)


def gib_pixel_weight(target, err, mask):
    """Confidence of each observed pixel: 1 / (mean relative variance + 0.05^2), mean 1 over the mask.

    Pixels without errors get the median confidence."""
    import warnings
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # pixels without any error: all-NaN rows
        rel = np.nanmean((err / np.where(target > 0, target, np.nan)) ** 2, axis=-1)
    w = 1.0 / (rel + 0.05 ** 2)
    ok = mask & np.isfinite(w)
    fill = float(np.median(w[ok])) if ok.any() else 1.0
    w = np.where(np.isfinite(w), w, fill)
    w = np.where(mask, w, 0.0)
    mean = w[mask].mean() if mask.any() else 1.0
    return (w / mean).astype(np.float32)


def superresolve_region(gib_tif, albedo, region, settings=None, device="cpu", progress=None, exclude=None):
    """Super-resolve region (i, j) from its GIB raster and the albedo.

    ``gib_tif``: the region's GIB GeoTIFF (contract 6: bands 1-8 wt%, 9-16 errors, 17 n_obs).
    ``albedo``: an array on the region grid (342, 682) or an albedo raster path (GeoTIFF or
    equirectangular image, read by :func:`class_qgis_plugin.albedo.read_albedo`). ``settings``: a
    :class:`SuperResSettings` or a dict of its fields. Returns ``(prediction (8, 342, 682) float32
    wt%, support (342, 682) float32 km to the nearest observed pixel, curve list of dicts)``.
    ``exclude`` (342, 682) bool: observed pixels kept out of training (validation hold-out).
    """
    from ..albedo import otsu_albedo_threshold
    from ..geo import region_grid
    from .features import region_features

    s = SuperResSettings.from_dict(settings)
    s.validate()
    p = as_progress(progress)
    i, j = region
    lat, lon = region_grid(i, j)
    target, err, nobs, _ = read_gib(gib_tif)
    # a pixel counts when at least one element is constrained there (an element the inversion left
    # unconstrained is nodata in the GIB; with too few pixels it is not predicted: NaN band)
    mask = np.isfinite(nobs) & (nobs > 0) & np.any(np.isfinite(target), axis=-1)
    if not mask.any():
        raise ClassXRFError(gib_tif, "the GIB has no observed pixel in this region", key="n_obs")
    if exclude is not None:
        mask = mask & ~np.asarray(exclude, bool)
    a, thr = _albedo_on_region(albedo, lat, lon)
    if thr is None:
        thr = otsu_albedo_threshold(a[np.isfinite(a)]) if np.isfinite(a).any() else np.nan
    if not np.isfinite(a).any():
        raise ClassXRFError(None if not isinstance(albedo, (str, os.PathLike)) else albedo,
                            "the albedo has no valid pixel over the region", key="albedo")
    mare = np.where(np.isfinite(a) & (a < thr), 1.0, 0.0).astype(np.float32)
    cache_dir = s.cache_dir or os.path.join(os.path.dirname(os.path.abspath(str(gib_tif))), ".superres_cache")
    p.set(0.0, "surface features")
    w_feat, _names = region_features(a, extractor=s.extractor, k=s.n_features, target=target, target_mask=mask,
                                     window=s.window, resnet_weights=s.resnet_weights, cache_dir=cache_dir,
                                     device=device, seed=s.seed, progress=subrange(p, 0.0, 0.1))
    pw = gib_pixel_weight(target, err, mask)
    fpg = footprint_groups_of_gib(gib_tif, region)
    pred, curve = fit_predict_grid(w_feat, lat, lon, mare, target, mask, pw, s, device=device,
                                   progress=subrange(p, 0.1, 0.98), albedo=a, footprints=fpg)
    if curve:
        curve[-1]["fit_level"] = "footprint" if fpg is not None and s.footprint_loss else "pixel"
    support = support_distance_km(mask, lat, lon)
    p.set(1.0, "done")
    return pred, support, curve


def write_superres_geotiff(path, prediction, support, region):
    """Write the prediction (8 bands, ELEMENTS) + support band ("support_km") of region (i, j),
    on its grid in the plugin's lunar CRS (ESRI:104903), atomically."""
    from ..geo import PIXEL_DLAT, PIXEL_DLON, region_bounds, write_geotiff

    west, _, _, north = region_bounds(*region)
    data = np.concatenate([np.asarray(prediction, np.float32), np.asarray(support, np.float32)[None]], axis=0)
    return write_geotiff(path, data, west, north, PIXEL_DLON, PIXEL_DLAT,
                         band_names=list(ELEMENTS) + ["support_km"])


def write_training_curve(path, curve):
    """Write the training curve (list of dicts) as CSV, atomically."""
    from ..geo import atomic_output

    keys = []
    for row in curve:
        for k in row:
            if k not in keys:
                keys.append(k)
    with atomic_output(path) as tmp:
        with open(tmp, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=keys)
            wr.writeheader()
            for row in curve:
                wr.writerow(row)
    return path


def settings_dict(settings):
    """Plain dict of settings (for logs/metadata)."""
    return asdict(SuperResSettings.from_dict(settings))
