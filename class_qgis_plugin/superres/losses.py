"""The five losses of the super-resolution network (torch, differentiable).

Notation: ``pred`` and ``target`` are (n, E) wt% (E = 8 elements), ``mask`` (n,) is 1 where the GIB
observed the pixel, ``weight`` broadcasts to (n, E) (e.g. per-pixel confidence times per-element
1/scale^2 so that O at 45 wt% does not drown Na at 0.3 wt%), ``scale`` (E,) element scales.

* weighted masked MSE:  sum_ie m_i w_ie (p_ie - y_ie)^2 / sum_ie m_i w_ie
* weighted masked log loss:  sum_ie m_i w_ie (log(p_ie + eps) - log(y_ie + eps))^2 / sum_ie m_i w_ie
  (squared log ratio: a relative error, the same for a major and a trace element)
* feature-similarity loss: over the top-k similarity edges (j -> i) with feature similarity
  s_ij = exp(-beta ||W_i - W_j||^2):  sum_ij s_ij ||(p_i - p_j) / scale||^2 / sum_ij s_ij
  (pixels that look alike should have alike compositions)
* spatial-similarity loss: over the 4-neighbour edges of the subgraph's grid with
  s_ij = exp(-alpha d_ij):  sum_ij s_ij ||(p_i - p_j) / scale||^2 / sum_ij s_ij  (smoothness)
* deviation from 100 %:  mean_i ((sum_e p_ie - 100) / 100)^2  (the 8 elements make up the rock)

Where a mask selects no pixel the masked losses are 0 (with a gradient of 0).
"""
import torch


def _masked_weights(pred, mask, weight):
    m = mask.to(pred.dtype).reshape(-1, 1)
    w = torch.ones_like(pred) if weight is None else torch.broadcast_to(weight.to(pred.dtype), pred.shape)
    return m * w


def weighted_masked_mse(pred, target, mask, weight=None):
    mw = _masked_weights(pred, mask, weight)
    den = mw.sum()
    diff = torch.where(mw > 0, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    num = (mw * diff ** 2).sum()
    return num / den if den > 0 else num * 0.0


def weighted_masked_log_loss(pred, target, mask, weight=None, eps=1e-3):
    mw = _masked_weights(pred, mask, weight)
    den = mw.sum()
    t = torch.nan_to_num(target, nan=1.0)
    diff = torch.log(torch.clamp(pred, min=0.0) + eps) - torch.log(torch.clamp(t, min=0.0) + eps)
    diff = torch.where(mw > 0, diff, torch.zeros_like(diff))
    num = (mw * diff ** 2).sum()
    return num / den if den > 0 else num * 0.0


def _edge_smoothness(pred, edge_index, sim, scale):
    if edge_index.shape[1] == 0:
        return pred.sum() * 0.0
    j, i = edge_index[0], edge_index[1]
    d = pred[i] - pred[j]
    if scale is not None:
        d = d / scale.to(pred.dtype)
    s = sim.to(pred.dtype).reshape(-1)
    den = s.sum()
    num = (s * (d ** 2).sum(dim=1)).sum()
    return num / den if den > 0 else num * 0.0


def feature_similarity_loss(pred, edge_index, feat_sim, scale=None):
    """``feat_sim`` (E,) = exp(-beta ||W_i - W_j||^2) of each edge."""
    return _edge_smoothness(pred, edge_index, feat_sim, scale)


def spatial_similarity_loss(pred, edge_index, spatial_sim, scale=None):
    """``spatial_sim`` (E,) = exp(-alpha d_ij) of each (grid-neighbour) edge."""
    return _edge_smoothness(pred, edge_index, spatial_sim, scale)


def deviation_from_100_loss(pred, total=100.0):
    return (((pred.sum(dim=1) - total) / total) ** 2).mean()
