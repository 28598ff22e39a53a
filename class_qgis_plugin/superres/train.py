"""Training and prediction of the super-resolution network, and the region entry point.

:func:`fit_predict_grid` trains one :class:`~.model.SuperResNet` on the observed pixels of a grid
(any size: a whole region or a crop) and predicts every pixel, in named steps:

* :func:`_drift_step`: the classical drift the network corrects (:func:`.drift.classical_drift`, per
  element chosen by spatial-block cross-validation);
* :func:`_validation_split`: the network's validation hold-out, column blocks of whole tracks of
  observed pixels (:func:`.baselines.track_folds`), and :func:`_footprint_split` its footprints;
* :func:`_train`: the two-phase training. The grid is cut into overlapping subgraphs
  (:func:`~.graph.subgraph_windows`); each gets its top-k similarity edges (:func:`~.graph.topk_edges`)
  and its 4-neighbour grid edges. Phase 1 (the first ``phase1_sweeps`` sweeps): weighted masked MSE +
  deviation from 100 %; phase 2 (the remaining sweeps): all five losses (:mod:`.losses`). A sweep
  visits the subgraphs in sliding (row-major) order and takes ``steps_per_subgraph`` optimiser steps
  on each; the optimiser is Yogi (Zaheer et al. 2018, ``torch_optimizer.Yogi``), the learning rate
  follows one cosine annealing from ``lr`` to ``lr_min`` over all steps, and gradients are clipped to
  norm 1.0. With the GIB's footprint records (:class:`~.kriging.FootprintGroups`, from the region's
  sidecar) the MSE and log losses are taken per footprint: its measured value against the mean of the
  prediction over its sub-footprints' pixels (``footprint_loss``; per GIB pixel, as in the paper,
  without them);
* :func:`_predict`: every subgraph predicted, the overlapping predictions of each pixel averaged;
* :func:`_gate`: per element, the network's correction is kept only where it lowers the validation
  error (of the validation footprints' means, when the footprints are known) by more than
  ``net_min_gain``;
* :func:`_krige`: residual kriging last (every observation up to ``kriging_points``, variogram with
  ``variogram_lags`` lag bins): per pixel, or, for an element whose GIB-recorded errors make up at
  least ``footprint_kriging`` of its footprint residuals' variance, one residual per footprint at the
  footprint's centre (:mod:`.kriging`).

Seeded (``seed``): the same inputs and settings give the same map on the same machine/thread count
(bit for bit on small grids, a test; on the simulated region with 2 threads two runs differed by at
most one float32 rounding step, 4e-6 wt%).

:func:`superresolve_region` reads a GIB region raster (bands 1-8 wt%, 9-16 their errors, 17 n_obs:
:func:`class_qgis_plugin.gib.read_gib`) and its footprint records
(:func:`class_qgis_plugin.gib.footprint_groups_of_gib`) and an albedo, builds the features and returns
the (8, 342, 682) prediction, a support band (great-circle distance in km from each pixel to the
nearest observed GIB pixel: 0 on the tracks, growing away from them) and the training curve.
:func:`write_superres_geotiff` / :func:`write_training_curve` write them. The settings are
:class:`~.settings.SuperResSettings` (importable from here too).
"""
import csv
import math
import os
import time

import numpy as np

from ..composition import ELEMENTS
from ..errors import ClassXRFError
from ..gib import footprint_groups_of_gib, read_gib
from ..progress import as_progress, subrange
from .baselines import _local_km, track_folds
from .drift import _unit, classical_drift
from .kriging import footprint_residual_kriging, pixel_residual_kriging
from .settings import SuperResSettings


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


# --------------------------------------------------------------------------------------------------
# the steps of fit_predict_grid


class _Grid:
    """The inputs of :func:`fit_predict_grid` on the flat grid (n = rows * cols pixels, row-major, E
    elements): ``lat2``/``lon2`` (rows, cols) degrees, ``gx``/``gy`` (n,) local km, ``mare`` (rows,
    cols), ``x`` (n, K + 3) node inputs, ``wg`` (n, K) graph distance features, ``flat_t`` (n, E)
    targets, ``em`` (n, E) observed, ``el_ok`` (E,) predicted elements, ``mask`` (rows, cols) pixels
    with an observed element, ``pw`` (rows, cols) pixel confidence (0 off the mask)."""


def _grid_inputs(w_feat, lat, lon, mare, target, mask, pixel_weight, s):
    """The inputs as arrays on the flat grid (:class:`_Grid`); an element observed on fewer than
    ``s.min_obs`` pixels is left out of the mask (``el_ok`` False)."""
    g = _Grid()
    w_feat = np.asarray(w_feat, dtype=np.float32)
    g.rows, g.cols, nfeat = w_feat.shape
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    g.lat2, g.lon2 = np.meshgrid(lat, lon, indexing="ij") if lat.ndim == 1 else (lat, lon)
    target = np.asarray(target, dtype=np.float32)
    g.n_el = target.shape[-1]
    emask = np.asarray(mask, dtype=bool)[..., None] & np.isfinite(target)
    g.el_ok = emask.reshape(-1, g.n_el).sum(axis=0) >= max(1, int(s.min_obs))
    emask &= g.el_ok.reshape(1, 1, -1)
    g.mask = emask.any(axis=-1)
    if not g.mask.any():
        raise ClassXRFError(None, "no observed pixel with a constrained element to train on", key="mask")
    pw = np.ones((g.rows, g.cols), np.float32) if pixel_weight is None else np.asarray(pixel_weight, np.float32)
    pw = np.where(np.isfinite(pw) & (pw > 0), pw, 0.0).astype(np.float32)
    g.pw = np.where(g.mask, pw, 0.0).astype(np.float32)
    g.mare = np.asarray(mare, np.float32)
    # node inputs: W, mare flag, latitude and longitude scaled to ~[-1, 1] over the grid
    g.x = np.concatenate([w_feat.reshape(-1, nfeat), g.mare.reshape(-1, 1),
                          _unit(g.lat2).reshape(-1, 1).astype(np.float32),
                          _unit(g.lon2).reshape(-1, 1).astype(np.float32)], axis=1)
    g.wg = np.ascontiguousarray(w_feat.reshape(-1, nfeat) / math.sqrt(nfeat))   # graph distance features
    g.flat_t = target.reshape(-1, g.n_el)
    g.em = emask.reshape(-1, g.n_el)
    lat0 = float(np.mean(g.lat2))
    lon0 = float(np.degrees(np.arctan2(np.mean(np.sin(np.radians(g.lon2))), np.mean(np.cos(np.radians(g.lon2))))))
    g.gx, g.gy = _local_km(g.lat2.ravel(), g.lon2.ravel(), lat0, lon0)
    return g


def _drift_step(g, albedo, s):
    """Drift: the classical drift of every predicted element (:func:`.drift.classical_drift`); an
    unconstrained element (with 8 elements) gets its mare/highland prior, which keeps the 100 % sum
    meaningful. Returns ``(base (n, E), scale (E,) element means, res_scale (E,) the drift's residual
    RMS: the network's correction unit, chosen (E,) drift names)``."""
    drift_all, res_rms, chosen = classical_drift(g.lat2, g.lon2, g.mare, albedo, g.flat_t, g.em, g.pw.ravel(), s,
                                                 g.gx, g.gy)
    scale = np.array([np.mean(g.flat_t[g.em[:, e], e]) if g.el_ok[e] else np.nan for e in range(g.n_el)])
    base = np.zeros((g.rows * g.cols, g.n_el), np.float64)
    base[:, g.el_ok] = drift_all[:, g.el_ok]
    if g.n_el == len(ELEMENTS) and not g.el_ok.all():
        from ..composition import HIGHLAND_WT, MARE_WT
        prior = g.mare.reshape(-1, 1) * MARE_WT[None] + (1 - g.mare.reshape(-1, 1)) * HIGHLAND_WT[None]
        base[:, ~g.el_ok] = prior[:, ~g.el_ok]
        scale = np.where(g.el_ok, scale, prior.mean(axis=0))
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0).astype(np.float32)
    res_scale = np.where(g.el_ok & np.isfinite(res_rms), np.maximum(np.nan_to_num(res_rms), 1e-3 * scale),
                         0.1 * scale).astype(np.float32)
    return base, scale, res_scale, chosen


def _validation_split(g, s):
    """Split: the validation pixels (n,) bool kept out of network training, whole tracks in column blocks
    (:func:`.baselines.track_folds`, one fold of about ``s.net_validation`` of them); none when there are
    fewer than 2 folds."""
    val = np.zeros(g.rows * g.cols, bool)
    if s.net_validation > 0:
        nf = max(2, int(round(1.0 / min(0.5, float(s.net_validation)))))
        vf = track_folds(g.mask, s.cv_block, nf, s.seed + 1).ravel()
        if len(np.unique(vf[vf >= 0])) >= 2:
            val = vf == 0
    return val


class _Footprints:
    """The footprint records of a grid split like its pixels: ``all`` (on the observed pixels, or None),
    ``train`` (their contributions off the validation pixels), ``tr`` (the same for the footprint-level
    losses, None when they are per pixel), ``val`` (the footprints wholly on validation pixels, or None),
    ``krige`` (E,) elements kriged as footprint means, ``noise`` (E,) their noise fractions."""

    def __init__(self, n_el):
        self.all = self.train = self.tr = self.val = None
        self.krige = np.zeros(n_el, bool)
        self.noise = np.full(n_el, np.nan)


def _footprint_split(footprints, g, val, base, s):
    """The :class:`_Footprints` of ``footprints`` (a :class:`~.kriging.FootprintGroups` or None) for the
    validation pixels ``val``; an element whose footprints' recorded variance is at least
    ``s.footprint_kriging`` of their residuals' about ``base`` is kriged by footprint."""
    fp = _Footprints(g.n_el)
    if footprints is None:
        return fp
    fpg = footprints.select(g.mask.ravel()[footprints.pix])
    fp.train = fp.tr = fpg.select(~val[fpg.pix])
    all_val = np.bincount(fpg.group, weights=(~val[fpg.pix]).astype(float), minlength=fpg.n_groups) == 0
    fp.val = fpg.select(all_val[fpg.group])
    fp.all = fpg if fpg.n_groups else None
    if fp.all is not None:
        for e in np.nonzero(g.el_ok)[0]:
            fp.noise[e] = fp.all.noise_fraction(e, base[:, e])
        fp.krige = g.el_ok & np.isfinite(fp.noise) & (fp.noise >= float(s.footprint_kriging))
    if fp.tr.n_groups == 0 or not s.footprint_loss:
        fp.tr = fp.val = None
    return fp


class _Windows:
    """The overlapping subgraph windows of the grid, their observed (training) pixel counts ``n_obs``,
    the windows trained on ``train_ids``; :meth:`graph` builds a window's :class:`_Subgraph`, kept in
    memory while all of them fit in ``s.graph_cache_mb``."""

    def __init__(self, g, val, s, dev):
        from .graph import subgraph_windows
        self.wins = subgraph_windows(g.rows, g.cols, s.subgraph_size, s.stride)
        flat_mask = g.mask.ravel() & ~val
        self.n_obs = [int(flat_mask[(np.arange(r0, r1)[:, None] * g.cols + np.arange(c0, c1)[None, :]).ravel()].sum())
                      for (r0, r1, c0, c1) in self.wins]
        self.train_ids = [i for i, n in enumerate(self.n_obs) if n > 0 or s.train_empty]
        n_nodes_max = max((r1 - r0) * (c1 - c0) for (r0, r1, c0, c1) in self.wins)
        self.keep = len(self.wins) * n_nodes_max * (s.k * 16 + 4 * 16) / 1e6 <= s.graph_cache_mb
        self.graphs = {}
        self._args = (g.lat2, g.lon2, g.wg, g.cols, s, dev)

    def graph(self, i):
        if i in self.graphs:
            return self.graphs[i]
        sg = _build_subgraph(self.wins[i], *self._args)
        if self.keep:
            self.graphs[i] = sg
        return sg


def _footprint_batch(fp_tr, win, g):
    """The training footprints cut to window ``win`` as tensors: local node, group, element mask,
    counts, targets, weights (None when none lies in it)."""
    import torch
    r0, r1, c0, c1 = win
    rr, cc = fp_tr.pix // g.cols, fp_tr.pix % g.cols
    inside = (rr >= r0) & (rr < r1) & (cc >= c0) & (cc < c1)
    if not inside.any():
        return None
    sub = fp_tr.select(inside)
    local = (sub.pix // g.cols - r0) * (c1 - c0) + (sub.pix % g.cols - c0)
    fin = np.isfinite(sub.value) & g.el_ok[None]
    vm_cnt = [sub.element_means(e)[1:] for e in range(g.n_el)]
    cnt = np.stack([c for _, c in vm_cnt], axis=1) * g.el_ok[None]
    tgt = np.where(cnt > 0, np.stack([v for v, _ in vm_cnt], axis=1), 0.0)
    gw = sub.weight[:, None] * (cnt > 0)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (
        local.astype(np.int64), sub.group, fin.astype(np.float32), np.maximum(cnt, 1).astype(np.float32),
        tgt.astype(np.float32), gw.astype(np.float32)))


class _Tensors:
    """The node tensors of the whole grid (CPU; a visit moves its nodes' rows to the device) and the
    per-element scales (on the device)."""

    def __init__(self, g, base, scale, res_scale, val, dev):
        import torch
        self.x = torch.from_numpy(g.x)
        self.y = torch.from_numpy(np.nan_to_num(g.flat_t))
        self.m = torch.from_numpy(g.mask.ravel() & ~val)
        self.em = torch.from_numpy((g.em & ~val[:, None]).astype(np.float32))
        self.base = torch.from_numpy(base.astype(np.float32))
        self.pw = torch.from_numpy(g.pw.ravel())
        self.scale = torch.from_numpy(scale).to(dev)
        self.el_w = torch.from_numpy(1.0 / res_scale ** 2).to(dev).reshape(1, -1)


def _network(g, res_scale, n_train, s, dev):
    """The seeded network, its Yogi optimiser and cosine learning-rate schedule."""
    import torch
    import torch_optimizer
    from .model import SuperResNet

    torch.manual_seed(int(s.seed))
    np.random.seed(int(s.seed) % (2 ** 32))
    model = SuperResNet(g.x.shape[1], res_scale, hidden=s.hidden, heads=s.heads,
                        cnn_channels=tuple(s.cnn_channels), fusion=s.fusion, n_out=g.n_el,
                        pos_freqs=tuple(s.pos_freqs)).to(dev)
    opt = torch_optimizer.Yogi(model.parameters(), lr=s.lr)
    total_steps = max(1, s.sweeps * n_train * s.steps_per_subgraph)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=s.lr_min)
    return model, opt, sched


def _batch(t, sg, fb, dev):
    """The device tensors of one training visit of subgraph ``sg`` (``fb``: its footprints or None)."""
    import torch
    nodes = torch.from_numpy(sg.nodes)
    emn = t.em[nodes].to(dev)
    b = dict(x=t.x[nodes].to(dev), y=t.y[nodes].to(dev), m=t.m[nodes].to(dev), base=t.base[nodes].to(dev),
             wgt=t.pw[nodes].to(dev).reshape(-1, 1) * emn * t.el_w, wlog=t.pw[nodes].to(dev).reshape(-1, 1) * emn,
             ei=sg.edge_index.long().to(dev), ew=sg.w.to(dev), fb=None,
             shape=(sg.win[1] - sg.win[0], sg.win[3] - sg.win[2]))
    if fb is not None:
        fb = tuple(a.to(dev) for a in fb)
        b.update(fb=fb, g_ones=torch.ones(fb[3].shape[0], device=dev), g_wmse=fb[5] * t.el_w)
    return b


def _fit_terms(pred, b, footprint_level):
    """MSE and log loss: per footprint when the footprints are known (0 in a window without one), else
    per GIB pixel."""
    import torch
    from . import losses as L
    if not footprint_level:
        return (L.weighted_masked_mse(pred, b["y"], b["m"], b["wgt"]),
                L.weighted_masked_log_loss(pred, b["y"], b["m"], b["wlog"]))
    if b["fb"] is None:
        z = pred.sum() * 0.0
        return z, z
    local, grp, fin, cnt, tgt, gw = b["fb"]
    pm = torch.zeros_like(tgt).index_add(0, grp, pred[local] * fin) / cnt
    return (L.weighted_masked_mse(pm, tgt, b["g_ones"], b["g_wmse"]),
            L.weighted_masked_log_loss(pm, tgt, b["g_ones"], gw))


def _loss(pred, b, sg, phase, t, s, dev, footprint_level):
    """The weighted loss of one step and its terms: phase 1 MSE + deviation from 100 %, phase 2 all five."""
    from . import losses as L
    mse, log = _fit_terms(pred, b, footprint_level)
    terms = {"mse": mse, "dev": L.deviation_from_100_loss(pred)}
    loss = s.w_mse * terms["mse"] + s.w_dev * terms["dev"]
    if phase == 2:
        terms["log"] = log
        terms["feat"] = L.feature_similarity_loss(pred, b["ei"], sg.feat_sim.to(dev), t.scale)
        terms["spat"] = L.spatial_similarity_loss(pred, sg.grid_ei.long().to(dev), sg.grid_sim.to(dev), t.scale)
        loss = loss + s.w_log * terms["log"] + s.w_feat * terms["feat"] + s.w_spat * terms["spat"]
    return loss, terms


def _visit(net, b, sg, phase, t, s, dev, footprint_level):
    """``s.steps_per_subgraph`` optimiser steps on one subgraph -> the means of the loss and its terms."""
    import torch
    model, opt, sched = net
    model.train()
    acc = {}
    for _ in range(s.steps_per_subgraph):
        opt.zero_grad(set_to_none=True)
        pred = model(b["x"], b["ei"], b["ew"], b["shape"], base=b["base"])
        loss, terms = _loss(pred, b, sg, phase, t, s, dev, footprint_level)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.clip)
        opt.step()
        sched.step()
        acc["loss"] = acc.get("loss", 0.0) + float(loss.detach()) / s.steps_per_subgraph
        for k_, v in terms.items():
            acc[k_] = acc.get(k_, 0.0) + float(v.detach()) / s.steps_per_subgraph
    return acc


def _train(net, t, wins, fp_tr, g, s, dev, p, probe=None):
    """Train: ``s.sweeps`` sweeps over the training windows (phase 1 skips those without observed
    pixels) -> the curve, one dict per visit. ``probe(sweeps done)`` after each sweep: True stops."""
    sched = net[2]
    curve = []
    n_visits = s.sweeps * len(wins.train_ids)
    p_train = subrange(p, 0.0, 0.8)
    fp_cache = {}
    visit = 0
    for sweep in range(s.sweeps):
        phase = 1 if sweep < s.phase1_sweeps else 2
        for n_done, gi in enumerate(wins.train_ids):
            p.check()
            if phase == 1 and wins.n_obs[gi] == 0:
                visit += 1
                continue
            sg = wins.graph(gi)
            if fp_tr is not None and gi not in fp_cache:
                fp_cache[gi] = _footprint_batch(fp_tr, wins.wins[gi], g)
            acc = _visit(net, _batch(t, sg, fp_cache.get(gi), dev), sg, phase, t, s, dev, fp_tr is not None)
            curve.append(dict(sweep=sweep + 1, phase=phase, subgraph=gi, step=(visit + 1) * s.steps_per_subgraph,
                              lr=float(sched.get_last_lr()[0]), n_obs=wins.n_obs[gi], **acc))
            visit += 1
            p_train.set(visit / max(1, n_visits), f"sweep {sweep + 1}/{s.sweeps}, subgraph {n_done + 1}/"
                                                  f"{len(wins.train_ids)}, loss {acc['loss']:.4g}")
        if probe is not None and probe(sweep + 1):
            break
    return curve


def _predict(model, t, wins, g, dev, p):
    """Predict: every subgraph, the overlapping predictions of each pixel averaged -> (n, E)."""
    import torch
    model.eval()
    acc_sum = np.zeros((g.rows * g.cols, g.n_el), np.float64)
    acc_n = np.zeros(g.rows * g.cols, np.float64)
    p_pred = subrange(p, 0.8, 0.9)
    with torch.no_grad():
        for i, (r0, r1, c0, c1) in enumerate(wins.wins):
            p.check()
            sg = wins.graph(i)
            nodes = torch.from_numpy(sg.nodes)
            pred = model(t.x[nodes].to(dev), sg.edge_index.long().to(dev), sg.w.to(dev), (r1 - r0, c1 - c0),
                         base=t.base[nodes].to(dev))
            acc_sum[sg.nodes] += pred.cpu().numpy()
            acc_n[sg.nodes] += 1
            p_pred.set((i + 1) / len(wins.wins), f"predicting subgraph {i + 1}/{len(wins.wins)}")
    return acc_sum / acc_n[:, None]


def _kriged_residual(g, e, cand, sel, qsel, fp_groups, s):
    """The kriged residual of element ``e``'s map ``cand`` (n,) at the pixels ``qsel``: per footprint
    from the footprints ``fp_groups`` when given (:func:`.kriging.footprint_residual_kriging`), else
    per pixel from the observed pixels ``sel`` (:func:`.kriging.pixel_residual_kriging`)."""
    if fp_groups is not None:
        return footprint_residual_kriging(fp_groups, e, cand, g.gx, g.gy, g.gx[qsel], g.gy[qsel], s)
    return pixel_residual_kriging(g.gx, g.gy, sel, g.flat_t[sel, e] - cand[sel], qsel, s)


def _validation_rmse(cand, e, tr, te, g, fp, s):
    """RMSE of element ``e``'s map ``cand`` (+ residual kriging from the training pixels ``tr``) on the
    validation pixels ``te``: of the validation footprints' means when they are known, else per pixel."""
    pe = cand[te]
    if s.residual_kriging:
        pe = pe + _kriged_residual(g, e, cand, tr, te, fp.train if fp.krige[e] else None, s)
    if fp.val is not None and fp.val.n_groups:
        col = np.full(g.rows * g.cols, np.nan)
        col[te] = pe
        pm, vm, cnt = fp.val.element_means(e, col)
        ok = (cnt > 0) & np.isfinite(pm)
        if ok.any():
            return float(np.sqrt(np.mean((vm[ok] - pm[ok]) ** 2)))
    return float(np.sqrt(np.mean((g.flat_t[te, e] - pe) ** 2)))


def _gate(g, base, pred, val, fp, s):
    """Gate: per element, the network's correction is kept only where it lowers the validation error of
    the drift (+ residual kriging from the other pixels) by more than ``s.net_min_gain``: it can only
    improve on the classical model. Returns ``(keep (E,), {element: (drift RMSE, network RMSE)})``."""
    keep = np.zeros(g.n_el, bool) if val.any() else np.ones(g.n_el, bool)
    net_gain = {}
    for e in range(g.n_el):
        if not (val.any() and g.el_ok[e]):
            continue
        tr, te = g.em[:, e] & ~val, g.em[:, e] & val
        if te.sum() == 0 or tr.sum() < 3:
            continue
        err = [_validation_rmse(cand, e, tr, te, g, fp, s) for cand in (base[:, e], pred[:, e])]
        keep[e] = err[1] < (1.0 - s.net_min_gain) * err[0]
        net_gain[ELEMENTS[e] if g.n_el == len(ELEMENTS) else str(e)] = (err[0], err[1])
    return keep, net_gain


def _krige(pred, g, fp, s, p):
    """Krige: the residuals the map ``pred`` (n, E) leaves on every observed pixel, kriged and added in
    place (regression kriging): per footprint for the elements ``fp.krige``, else per pixel."""
    if not s.residual_kriging:
        return
    p_rk = subrange(p, 0.9, 1.0)
    every = np.ones(g.rows * g.cols, bool)
    for e in range(g.n_el):
        p.check()
        sel = g.em[:, e]
        if g.el_ok[e] and (fp.krige[e] or sel.sum() >= 3):
            pred[:, e] += _kriged_residual(g, e, pred[:, e].copy(), sel, every, fp.all if fp.krige[e] else None, s)
        p_rk.set((e + 1) / g.n_el, f"residual kriging {e + 1}/{g.n_el}")


def _note(curve, chosen, keep, net_gain, fp):
    """The drift, gate and kriging choices, in the curve's last row."""
    if curve:
        curve[-1]["drift"] = " ".join(str(c) for c in chosen)
        curve[-1]["net_kept"] = " ".join(str(int(k)) for k in keep)
        curve[-1]["net_validation_rmse"] = " ".join(f"{k}:{a:.4g}/{b:.4g}" for k, (a, b) in net_gain.items())
        curve[-1]["noise_fraction"] = " ".join(f"{v:.3g}" for v in fp.noise)
        curve[-1]["footprint_kriging"] = " ".join(str(int(k)) for k in fp.krige)


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
       (:func:`.drift.classical_drift`; ``drift="select"``: the candidate of
       :func:`.drift.drift_candidates`, mean, window-mean albedo, or window-mean albedo + position, with
       the least cross-validated error); the classical trend of kriging with an external drift;
    2. the GATv2 + CNN network predicts the normalised correction z_e, pred_e = drift_e + s_e z_e with
       s_e the residual RMS of the drift, trained with the five losses; the MSE terms weigh each
       element by 1 / s_e^2 (inverse residual variance: every element counts alike). The network
       trains on all but ``settings.net_validation`` of the observed pixels (column blocks); per
       element its correction is kept only if drift + correction (+ residual kriging from the
       training pixels) beats drift (+ the same kriging) on those validation pixels by more than
       ``settings.net_min_gain`` (relative RMSE);
    3. residual kriging (regression kriging, Hengl, Heuvelink and Rossiter 2007, Comput. Geosci. 33,
       1301): the network's residuals on the observed pixels, ordinary-kriged
       (:func:`.kriging.dual_ordinary_kriging`) and added: what is left spatially correlated along the
       tracks. With ``footprints``, an element whose recorded measurement variance is at least
       ``settings.footprint_kriging`` of the variance of its footprints' residuals about the drift
       (:meth:`.kriging.FootprintGroups.noise_fraction`) is kriged as one residual per footprint at the
       centre of its sub-footprints (:func:`.kriging.footprint_residual_kriging`): the sub-footprints of
       a footprint share one measurement error, which pixel kriging would read as along-track
       correlation and copy into the map. The validation gate kriges the same way.

    ``footprints`` (:class:`.kriging.FootprintGroups`, with ``settings.footprint_loss``): the network's
    MSE and log losses and the validation gate compare each footprint's measured value with the mean of the
    prediction over its sub-footprints' pixels, instead of each GIB pixel's populated value: the split
    of a footprint's value among its sub-footprints is the population's mare/highland prior, and a
    network fitted to it learns the prior's contrast, not the surface's. The feature- and
    spatial-similarity losses decide how the network distributes a footprint's value.

    Elements with fewer than ``settings.min_obs`` observed pixels are not predicted: NaN band.
    Returns ``(prediction (8, rows, cols) float32, curve)``: ``curve`` is a list of dicts, one per
    subgraph visit: sweep, phase, subgraph, step, lr, loss and each loss term (means over the visit).
    """
    import torch

    s = SuperResSettings.from_dict(settings)
    s.validate()
    p = as_progress(progress)
    dev = _resolve_device(device)
    if s.threads:
        torch.set_num_threads(int(s.threads))
    g = _grid_inputs(w_feat, lat, lon, mare, target, mask, pixel_weight, s)
    base, scale, res_scale, chosen = _drift_step(g, albedo, s)
    val = _validation_split(g, s)
    fp = _footprint_split(footprints, g, val, base, s)
    wins = _Windows(g, val, s, dev)
    net = _network(g, res_scale, len(wins.train_ids), s, dev)
    t = _Tensors(g, base, scale, res_scale, val, dev)
    t0 = time.monotonic()
    probed = {}

    def probe(done):
        """The gate on the network after ``done`` sweeps (:attr:`SuperResSettings.gate_probe`): stop when
        it keeps no element's correction (the network is in eval mode only here; training goes on as
        if never probed)."""
        if not s.gate_probe or done != s.gate_probe or done >= s.sweeps or not val.any():
            return False
        at = subrange(p, 0.8 * done / s.sweeps, 0.8 * done / s.sweeps)
        pr = _predict(net[0], t, wins, g, dev, at)
        keep, net_gain = _gate(g, base, pr, val, fp, s)
        probed.update(done=done, stop=not keep.any(), keep=keep, net_gain=net_gain)
        return probed["stop"]

    curve = _train(net, t, wins, fp.tr, g, s, dev, p, probe)
    if probed.get("stop"):
        pred, keep, net_gain = base.copy(), probed["keep"], probed["net_gain"]
    else:
        pred = _predict(net[0], t, wins, g, dev, p)
        keep, net_gain = _gate(g, base, pred, val, fp, s)
    if curve:
        curve[-1]["train_seconds"] = time.monotonic() - t0
        if probed:
            curve[-1]["gate_probe"] = (f"no correction passed after sweep {probed['done']} of {s.sweeps}: "
                                       "training stopped" if probed["stop"] else
                                       f"a correction passed after sweep {probed['done']}: trained on")
    pred[:, ~keep] = base[:, ~keep]
    _note(curve, chosen, keep, net_gain, fp)
    _krige(pred, g, fp, s, p)
    pred[:, ~g.el_ok] = np.nan
    pred = np.where(np.isfinite(pred), np.maximum(pred, 0.0), np.nan)
    out = pred.astype(np.float32).reshape(g.rows, g.cols, g.n_el).transpose(2, 0, 1)
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


def _observed_mask(gib_tif, target, nobs, exclude=None):
    """The GIB pixels trained on: those where at least one element is constrained (an element the
    inversion left unconstrained is nodata in the GIB; with too few pixels it is not predicted: NaN
    band), less ``exclude``."""
    mask = np.isfinite(nobs) & (nobs > 0) & np.any(np.isfinite(target), axis=-1)
    if not mask.any():
        raise ClassXRFError(gib_tif, "the GIB has no observed pixel in this region", key="n_obs")
    if exclude is not None:
        mask = mask & ~np.asarray(exclude, bool)
    return mask


def _albedo_and_mare(albedo, lat, lon):
    """The albedo on the region grid and its mare flag (below the raster's threshold, or Otsu's)."""
    from ..albedo import otsu_albedo_threshold

    a, thr = _albedo_on_region(albedo, lat, lon)
    if thr is None:
        thr = otsu_albedo_threshold(a[np.isfinite(a)]) if np.isfinite(a).any() else np.nan
    if not np.isfinite(a).any():
        raise ClassXRFError(None if not isinstance(albedo, (str, os.PathLike)) else albedo,
                            "the albedo has no valid pixel over the region", key="albedo")
    return a, np.where(np.isfinite(a) & (a < thr), 1.0, 0.0).astype(np.float32)


def superresolve_grid(target, err, nobs, lat, lon, albedo, footprints=None, settings=None, device="cpu",
                      progress=None, exclude=None, cache_dir=None, source=None):
    """Super-resolve a grid of GIB pixels (a region, or a region with a halo of its neighbours':
    :mod:`class_qgis_plugin.mosaic`): ``target``/``err`` (rows, cols, 8) wt% and errors, ``nobs``
    (rows, cols), on the pixel-centre axes ``lat`` (rows,) and ``lon`` (cols,); ``albedo`` an array
    on the grid or a raster path; ``footprints`` a :class:`.kriging.FootprintGroups` of the grid or
    None; ``cache_dir`` for the features; ``source`` names the GIB in errors. Returns ``(prediction
    (8, rows, cols) float32 wt%, support (rows, cols) km to the nearest observed pixel, curve)``."""
    from .features import region_features

    s = SuperResSettings.from_dict(settings)
    s.validate()
    p = as_progress(progress)
    mask = _observed_mask(source, target, nobs, exclude)
    a, mare = _albedo_and_mare(albedo, lat, lon)
    p.set(0.0, "surface features")
    w_feat, _names = region_features(a, extractor=s.extractor, k=s.n_features, target=target, target_mask=mask,
                                     window=s.window, resnet_weights=s.resnet_weights,
                                     cache_dir=s.cache_dir or cache_dir, device=device, seed=s.seed,
                                     progress=subrange(p, 0.0, 0.1))
    pw = gib_pixel_weight(target, err, mask)
    pred, curve = fit_predict_grid(w_feat, lat, lon, mare, target, mask, pw, s, device=device,
                                   progress=subrange(p, 0.1, 0.98), albedo=a, footprints=footprints)
    if curve:
        curve[-1]["fit_level"] = "footprint" if footprints is not None and s.footprint_loss else "pixel"
    support = support_distance_km(mask, lat, lon)
    p.set(1.0, "done")
    return pred, support, curve


def superresolve_region(gib_tif, albedo, region, settings=None, device="cpu", progress=None, exclude=None):
    """Super-resolve region (i, j) from its GIB raster and the albedo (:func:`superresolve_grid`).

    ``gib_tif``: the region's GIB GeoTIFF (bands 1-8 wt%, 9-16 their errors, 17 n_obs:
    :func:`class_qgis_plugin.gib.read_gib`); its sidecar's footprint records, when it has one
    (:func:`class_qgis_plugin.gib.footprint_groups_of_gib`), give the footprint-level fit.
    ``albedo``: an array on the region grid (342, 682) or an albedo raster path (GeoTIFF or
    equirectangular image, read by :func:`class_qgis_plugin.albedo.read_albedo`). ``settings``: a
    :class:`SuperResSettings` or a dict of its fields. Returns ``(prediction (8, 342, 682) float32
    wt%, support (342, 682) float32 km to the nearest observed pixel, curve list of dicts)``.
    ``exclude`` (342, 682) bool: observed pixels kept out of training (validation hold-out).
    """
    from ..geo import region_grid

    settings = SuperResSettings.from_dict(settings)     # a bad setting is named before any file is read
    settings.validate()
    lat, lon = region_grid(*region)
    target, err, nobs, _ = read_gib(gib_tif)
    cache_dir = os.path.join(os.path.dirname(os.path.abspath(str(gib_tif))), ".superres_cache")
    return superresolve_grid(target, err, nobs, lat, lon, albedo, footprint_groups_of_gib(gib_tif, region),
                             settings, device, progress, exclude, cache_dir, gib_tif)


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
