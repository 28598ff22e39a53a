"""Overlapping subgraphs of a region and their similarity edges.

A region (342 x 682 pixels of 2 km) is cut into windows of ``size`` x ``size`` pixels (100) with a
``stride`` (50). Along an axis the window starts are 0, stride, 2 stride, ... while a window fits,
and one more window flush with the far edge when the last one stops short of it, so every pixel
lies in at least one window and no window leaves the region: 342 rows give starts
0, 50, 100, 150, 200, 242 (6) and 682 columns 0, 50, ..., 550, 582 (13), 78 subgraphs in all.

In a subgraph each node i is joined to the ``k`` other nodes j with the largest weight

    w_ij = exp(-alpha * d_ij - beta * ||W_i - W_j||^2)

with d_ij the great-circle (haversine) distance in km on the Moon (radius 1737.4 km) and W the
surface-characteristics vectors; beta > alpha (the paper's condition: feature similarity counts
more than distance). Top-k by blocks of ``torch.cdist`` + ``torch.topk`` (torch_geometric's
``knn_graph`` needs pyg-lib).
"""
import numpy as np

from ..errors import ClassXRFError

MOON_RADIUS_KM = 1737.4


def window_starts(n, size, stride):
    """Start indices of windows of ``size`` along an axis of ``n`` pixels with ``stride``."""
    n, size, stride = int(n), int(size), int(stride)
    if size <= 0 or stride <= 0:
        raise ClassXRFError(None, f"subgraph size and stride must be positive, got {size}, {stride}", key="stride")
    if n <= size:
        return [0]
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] + size < n:
        starts.append(n - size)
    return starts


def subgraph_windows(rows, cols, size=100, stride=50):
    """List of (r0, r1, c0, c1) windows covering a rows x cols grid, in sliding (row-major) order."""
    rs = window_starts(rows, size, stride)
    cs = window_starts(cols, size, stride)
    return [(r, min(r + size, rows), c, min(c + size, cols)) for r in rs for c in cs]


def haversine_torch(lat1, lon1, lat2, lon2, radius=MOON_RADIUS_KM):
    """Great-circle distance (km) between broadcast torch tensors of degrees."""
    import torch

    p1, p2 = torch.deg2rad(lat1), torch.deg2rad(lat2)
    dphi = p2 - p1
    dlmb = torch.deg2rad(lon2 - lon1)
    h = torch.sin(dphi / 2) ** 2 + torch.cos(p1) * torch.cos(p2) * torch.sin(dlmb / 2) ** 2
    return 2 * radius * torch.asin(torch.sqrt(torch.clamp(h, 0.0, 1.0)))


def edge_weight(d_km, dw2, alpha, beta):
    """w = exp(-alpha d - beta ||dW||^2)."""
    return np.exp(-alpha * np.asarray(d_km) - beta * np.asarray(dw2))


def check_alpha_beta(alpha, beta):
    if not (alpha >= 0 and beta > 0):
        raise ClassXRFError(None, f"alpha must be >= 0 and beta > 0 (got {alpha}, {beta})", key="alpha")
    if not beta > alpha:
        raise ClassXRFError(None, f"beta ({beta}) must exceed alpha ({alpha}): feature similarity must "
                                  "weigh more than distance", key="beta")


def topk_edges(w_feat, lat, lon, k, alpha, beta, block=2048, device="cpu"):
    """Top-k similarity edges of one subgraph.

    ``w_feat`` (n, K) features, ``lat``/``lon`` (n,) degrees. Returns ``(edge_index (2, n k) int64
    torch tensor, source row 0 = neighbour j, target row 1 = node i; weight (n k,) float32 torch
    tensor)``: each node receives edges from its k best neighbours (itself excluded), as message
    passing in torch_geometric flows from ``edge_index[0]`` to ``edge_index[1]``.
    """
    import torch

    check_alpha_beta(alpha, beta)
    wf = torch.as_tensor(np.asarray(w_feat, dtype=np.float32), device=device)
    la = torch.as_tensor(np.asarray(lat, dtype=np.float64), device=device)
    lo = torch.as_tensor(np.asarray(lon, dtype=np.float64), device=device)
    n = wf.shape[0]
    k = int(min(k, n - 1))
    if k < 1:
        return torch.zeros((2, 0), dtype=torch.long), torch.zeros(0)
    # unit vectors: the great-circle distance is 2 R asin(chord / 2), the chord from a direct
    # (cancellation-free) float32 cdist; the chosen edges' weights are then recomputed in float64
    rl, ro = torch.deg2rad(la), torch.deg2rad(lo)
    u = torch.stack([torch.cos(rl) * torch.cos(ro), torch.cos(rl) * torch.sin(ro), torch.sin(rl)], 1).float()
    nbrs = []
    for s in range(0, n, block):
        e = min(s + block, n)
        dw2 = torch.cdist(wf[s:e], wf).pow_(2)
        chord = torch.cdist(u[s:e], u, compute_mode="donot_use_mm_for_euclid_dist")
        d = torch.asin(torch.clamp_(chord.mul_(0.5), max=1.0)).mul_(2 * MOON_RADIUS_KM)
        cost = dw2.mul_(beta).add_(d, alpha=alpha)
        cost[torch.arange(e - s, device=device), torch.arange(s, e, device=device)] = float("inf")
        nbrs.append(torch.topk(cost, k, dim=1, largest=False, sorted=True)[1])
    j = torch.cat(nbrs).reshape(-1)
    i = torch.arange(n, device=device).repeat_interleave(k)
    d = haversine_torch(la[i], lo[i], la[j], lo[j])
    dw2 = ((wf[i].double() - wf[j].double()) ** 2).sum(dim=1)
    w = torch.exp(-alpha * d - beta * dw2)
    return torch.stack([j, i]).cpu(), w.float().cpu()


def grid_edges(h, w):
    """4-neighbour edges (both directions) of an h x w grid of nodes numbered row-major: (2, E)."""
    idx = np.arange(h * w).reshape(h, w)
    a = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    b = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    return np.stack([np.concatenate([a, b]), np.concatenate([b, a])])
