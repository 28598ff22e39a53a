"""Track population: each footprint's abundances spread over its sub-footprints (the paper's step).

Geometry
--------
A footprint polygon (lon/lat degrees, from the abundance layer; a MultiPolygon when it crosses
the 180 deg meridian) is taken to the plane tangent to the sphere at its centre by the azimuthal
equidistant map (the sphere's logarithmic map, done with 3-D unit vectors, so the poles and the
180 deg meridian are ordinary places). There the footprint is the convex hull of its vertices;
the long axis of its minimum-area enclosing rectangle is the track direction, its long side the
strip length L and its short side the width W. The strip is cut across the track into
``n = max(1, round(L / s))`` slabs of equal length, ``s`` being the sub-footprint size
(by default W, so a 12.5 x 100 km strip gives 8 squares of 12.5 x 12.5 km and a shorter co-add
fewer). Each slab clipped to the footprint is a sub-footprint; its centre is the centroid of the
clipped piece mapped back to the sphere. Its class comes from ``mare_flag`` sampled on a 5 x 5
grid inside the piece: mare (1) when at least half the known samples are mare, else highland (0).

The problem and its exact solution
----------------------------------
The paper minimises ``||A B - D||_F^2`` subject to ``(1/n) A (B 1) = A`` and ``C_i = A b_i >= 0``.
``A = diag(a)`` holds the footprint's K = 8 abundances, column ``b_i`` of B scales them for
sub-footprint i, so ``C = A B`` (K x n) holds the sub-footprint compositions and D (K x n) the
class priors (mare or highland mean composition, column i for sub-footprint i). Written in C the
problem is

    minimise  sum_k sum_i (c_ki - d_ki)^2
    subject to (1/n) sum_i c_ki = a_k   and  c_ki >= 0   for every element k.

(Where a_k > 0 every C is some A B; where a_k = 0 both forms force row k to 0.) The objective
and the constraints separate by element, so row k is the Euclidean projection of the prior row
d_k onto the scaled simplex {c >= 0, sum c = n a_k}. The KKT conditions (stationarity
2 (c_i - d_i) + nu / n - eta_i = 0, eta_i >= 0, eta_i c_i = 0) give

    c_i = max(d_i - tau, 0),   tau = nu / (2 n),

with tau the unique root of the decreasing function sum_i max(d_i - tau, 0) = n a_k. Sorting
d in decreasing order d_(1) >= ... >= d_(n), the active set S is the first rho entries,
rho = max{ j : d_(j) - (sum_{l<=j} d_(l) - n a_k) / j > 0 }, and
tau = (sum_{l<=rho} d_(l) - n a_k) / rho (Held, Wolfe and Crowder 1974; Michelot 1986; Duchi et
al. 2008). Without clamping (S = all) this is the equality-constrained least-squares solution
by projection, c = d - mean(d) + a: the sub-footprints keep the prior's mare/highland contrast
and are shifted together so that their mean is the footprint's value. The problem is strictly
convex, so this KKT point is the unique global minimiser: no iteration, no tolerance. It is
computed for all footprints and elements at once (sort, cumulative sum, one gather).

Errors: on the active set ``dc_i / da = n / |S|`` (0 off it), so a footprint 1-sigma error
sigma_a gives sub-footprint errors ``(n / |S|) sigma_a`` (equal to sigma_a when nothing is
clamped). The local derivative of a clamped (zero) entry is 0, but a zero error would give it an
infinite weight in the GIB's inverse-variance mean, so clamped entries keep the active-set value
(an upper bound of how far a perturbation of a can move them). The n sub-footprint errors of
one footprint are fully correlated (they all come from one measurement); the GIB places them on
different pixels.

The baseline
------------
:func:`gradient_descent_population` is our reading of the paper's solver: an augmented
Lagrangian in B with multiplier lambda (initial 1) for the mass balance and penalty mu = 2,
PHR multipliers for C >= 0, 80 epochs of one Adam step in B (lr 0.01) followed by a multiplier
update.
It is kept as the baseline the exact solver is compared with (benchmarks/bench_populate.py).
"""
from dataclasses import dataclass, field

import numpy as np

from .errors import ClassXRFError
from .progress import as_progress

MOON_RADIUS_KM = 1737.4
SAMPLES_PER_SIDE = 5          # class sampling grid inside each sub-footprint
DEFAULT_MAX_SUB = 64          # longer "strips" are not co-added footprints: refused with a reason


# ============================================================================ exact solver
def solve_population(a, D, mask=None):
    """Exact batched solution of min ||C - D||^2 s.t. mean_i C_i = a, C >= 0.

    ``a`` (N, K) footprint abundances (must be >= 0 where finite), ``D`` (N, K, n) priors per
    sub-footprint, ``mask`` (N, n) bool of the real sub-footprints (padding for footprints with
    fewer than n; ``None`` = all). Returns ``(C, active)``: C (N, K, n) float64 with NaN on padding
    and on rows whose a is not finite or negative; ``active`` (N, K) the size of the active set
    |S| (0 for such rows). The mean is over the real sub-footprints of each footprint.
    """
    a = np.asarray(a, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    N, K, n = D.shape
    if a.shape != (N, K):
        raise ValueError(f"a must be (N, K) = {(N, K)}, got {a.shape}")
    mask = np.ones((N, n), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    m = mask[:, None, :]                                  # (N, 1, n)
    n_valid = mask.sum(axis=1).astype(np.float64)[:, None]  # (N, 1)
    good = np.isfinite(a) & (a >= 0) & (n_valid > 0)
    s = np.where(good, a, 0.0) * n_valid                   # target sums (N, K)
    d = np.where(m, D, -np.inf)
    ds = -np.sort(-d, axis=2)                             # decreasing, padding last
    cs = np.cumsum(np.where(np.isfinite(ds), ds, 0.0), axis=2)
    j = np.arange(1, n + 1, dtype=np.float64)
    cond = (ds - (cs - s[..., None]) / j > 0) & np.isfinite(ds)
    # rho = the last j where cond holds (cond is true on a prefix); at least 1
    rho = np.where(cond.any(axis=2), n - np.argmax(cond[..., ::-1], axis=2), 1)
    cs_rho = np.take_along_axis(cs, (rho - 1)[..., None], axis=2)[..., 0]
    tau = (cs_rho - s) / rho
    C = np.maximum(D - tau[..., None], 0.0)
    C = np.where(m & good[..., None], C, np.nan)
    active = np.where(good, np.sum((C > 0) & m, axis=2), 0)
    # all clamped can only happen for a = 0: then every entry is 0 and the "active set" is all
    active = np.where(good & (active == 0), n_valid.astype(int), active)
    return C, active


def population_errors(sigma_a, active, mask):
    """Sub-footprint 1-sigma errors (N, K, n) = (n / |S|) sigma_a on real sub-footprints."""
    sigma_a = np.asarray(sigma_a, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    n_valid = mask.sum(axis=1).astype(np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(active > 0, n_valid / np.maximum(active, 1), np.nan)
    err = (factor * sigma_a)[..., None] * np.ones(mask.shape[1])
    return np.where(mask[:, None, :], err, np.nan)


def population_loss(C, D, mask=None):
    """||C - D||_F^2 per footprint (N,), over real sub-footprints and finite rows."""
    diff = np.asarray(C, np.float64) - np.asarray(D, np.float64)
    if mask is not None:
        diff = np.where(np.asarray(mask, bool)[:, None, :], diff, np.nan)
    return np.nansum(diff ** 2, axis=(1, 2))


def constraint_violation(C, a, mask=None):
    """(max |mean_i C_i - a|, most negative entry) per footprint, over finite rows."""
    C = np.asarray(C, np.float64)
    N, K, n = C.shape
    mask = np.ones((N, n), bool) if mask is None else np.asarray(mask, bool)
    Cm = np.where(mask[:, None, :], C, np.nan)
    mean = np.nansum(Cm, axis=2) / mask.sum(axis=1)[:, None]
    rows = np.isfinite(np.asarray(a, np.float64)) & np.any(np.isfinite(Cm), axis=2)
    eq = np.where(rows, np.abs(mean - a), 0.0).max(axis=1)
    neg = np.nanmin(np.where(np.isfinite(Cm), Cm, np.inf), axis=(1, 2))
    return eq, np.minimum(neg, 0.0)


def exact_penalty_merit(C, a, D, mask=None):
    """The L1 exact-penalty merit f(C) + rho (n sum_k |mean C_k - a_k| + sum max(0, -C)).

    rho = 2 n (max|D| + n max|a|) + 2 max|D| bounds every KKT multiplier of the problem (nu =
    2 n tau and eta_i = 2 (tau - d_i), with |tau| <= max|d| + n a), so by the exact-penalty
    theorem for convex programs (Han and Mangasarian 1979; Nocedal and Wright 2006, Thm 17.3) the
    constrained minimiser also minimises this merit over all C: it is a fair score for a solver
    whose result does not meet the constraints exactly. Computed from the data alone.
    """
    C = np.asarray(C, np.float64)
    D = np.asarray(D, np.float64)
    a = np.asarray(a, np.float64)
    N, K, n = C.shape
    mask = np.ones((N, n), bool) if mask is None else np.asarray(mask, bool)
    m = mask[:, None, :]
    rows = np.isfinite(a)[..., None] & m
    nv = mask.sum(axis=1).astype(np.float64)
    f = np.sum(np.where(rows, (C - D) ** 2, 0.0), axis=(1, 2))
    mean = np.sum(np.where(rows, C, 0.0), axis=2) / nv[:, None]
    eq = np.sum(np.where(np.isfinite(a), np.abs(mean - a), 0.0), axis=1) * nv
    neg = np.sum(np.where(rows, np.maximum(-C, 0.0), 0.0), axis=(1, 2))
    dmax = np.max(np.where(rows, np.abs(D), 0.0), axis=(1, 2))
    amax = np.max(np.where(np.isfinite(a), np.abs(a), 0.0), axis=1)
    rho = 2.0 * nv * (dmax + nv * amax) + 2.0 * dmax
    return f + rho * (eq + neg)


# ============================================================================ baseline
def gradient_descent_population(a, D, mask=None, epochs=80, lam=1.0, mu=2.0, lr=0.01,
                                betas=(0.9, 0.999), eps=1e-8):
    """BASELINE (the paper's kind of solver): augmented-Lagrangian gradient descent in B.

    Variables B (N, K, n), started at B = 1 (every sub-footprint at the footprint's value, which
    is feasible). With C = a * B and g_k = mean_i C_ki - a_k the Lagrangian is

        L = ||C - D||^2 + sum_k lam_k g_k + (mu / 2) sum_k g_k^2
            + (1 / (2 mu)) sum_ki (max(0, nu_ki - mu C_ki)^2 - nu_ki^2)

    (Powell-Hestenes-Rockafellar form for C >= 0). Each of the ``epochs`` epochs takes one Adam
    step (learning rate ``lr``) on B and then updates lam <- lam + mu g,
    nu <- max(0, nu - mu C). The paper's settings: 80 epochs, lambda = 1, mu = 2; the optimiser
    and learning rate are not given there (Adam with 0.01 is our choice: plain gradient descent in
    B is scaled by a^2, which differs by 10^4 between O and Na; the benchmark prints a sweep of
    learning rates, none of which meets the mass balance within 80 epochs). Returns C (N, K, n), NaN on
    padding and on rows with no finite a. Kept as a baseline; use :func:`solve_population`.
    """
    a = np.asarray(a, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    N, K, n = D.shape
    mask = np.ones((N, n), bool) if mask is None else np.asarray(mask, bool)
    m = mask[:, None, :].astype(np.float64)
    nv = mask.sum(axis=1).astype(np.float64)[:, None]
    good = np.isfinite(a)
    av = np.where(good, a, 0.0)[..., None]
    Dz = np.where(mask[:, None, :], D, 0.0)
    B = np.ones((N, K, n))
    lam_k = np.full((N, K), float(lam))
    nu = np.zeros((N, K, n))
    m1 = np.zeros_like(B)
    m2 = np.zeros_like(B)
    b1, b2 = betas
    for t in range(1, int(epochs) + 1):
        C = av * B
        g = np.sum(C * m, axis=2) / nv - av[..., 0]
        shift = np.maximum(nu - mu * C, 0.0)
        grad_c = (2.0 * (C - Dz) + ((lam_k + mu * g) / nv)[..., None] - shift) * m
        grad_b = av * grad_c
        m1 = b1 * m1 + (1 - b1) * grad_b
        m2 = b2 * m2 + (1 - b2) * grad_b ** 2
        B = B - lr * (m1 / (1 - b1 ** t)) / (np.sqrt(m2 / (1 - b2 ** t)) + eps)
        C = av * B
        g = np.sum(C * m, axis=2) / nv - av[..., 0]
        lam_k = lam_k + mu * g
        nu = np.maximum(nu - mu * C, 0.0) * m
    C = av * B
    return np.where(mask[:, None, :] & good[..., None], C, np.nan)


# ============================================================================ geometry
from .geo import TangentPlane, to_latlon as _to_latlon, to_xyz as _to_xyz  # noqa: E402  (one tangent plane)


def _vertices(geom):
    """All exterior vertices (lon, lat) of a Polygon / MultiPolygon, as an (m, 2) array."""
    parts = getattr(geom, "geoms", [geom])
    pts = [np.asarray(p.exterior.coords)[:, :2] for p in parts if p.geom_type == "Polygon" and not p.is_empty]
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def strip_corners(lat, lon, length_km=100.0, width_km=12.5, heading_deg=0.0):
    """Corners (lats (4,), lons (4,)) of a length x width strip centred at (lat, lon).

    ``heading_deg`` is the along-track direction, clockwise from north (0 = a northbound pass).
    Built in the tangent plane at the centre, so it works at the poles and across 180 deg. A
    helper for synthetic footprints (tests, benchmarks, simulation).
    """
    plane = TangentPlane(_to_xyz(np.asarray(lat, float), np.asarray(lon, float)))
    h = np.radians(heading_deg)
    along = np.array([np.sin(h), np.cos(h)])      # (east, north) components
    across = np.array([along[1], -along[0]])
    hl, hw = 0.5 * float(length_km), 0.5 * float(width_km)
    xy = np.array([hl * along + hw * across, hl * along - hw * across,
                   -hl * along - hw * across, -hl * along + hw * across])
    la, lo = _to_latlon(plane.inverse(xy))
    return la, (lo + 180.0) % 360.0 - 180.0


@dataclass
class Split:
    """Sub-footprints of one footprint: centres, sampling points, sizes."""
    lat: np.ndarray              # (n,) centre latitudes
    lon: np.ndarray              # (n,) centre longitudes in [-180, 180)
    sample_lat: np.ndarray       # (n, S) class sampling points (NaN where outside the piece)
    sample_lon: np.ndarray
    length_km: float
    width_km: float
    area_km2: np.ndarray         # (n,) area of each piece


def split_footprint(geom, sub_size_km=None, max_sub=DEFAULT_MAX_SUB):
    """Cut a footprint polygon into sub-footprints along its track -> :class:`Split`.

    Raises ``ValueError`` with the reason when the geometry cannot be split (empty, NaN, not a
    polygon, degenerate, longer than ``max_sub`` sub-footprints).
    """
    import shapely
    from shapely.geometry import MultiPoint, box

    if geom is None or geom.is_empty:
        raise ValueError("empty geometry")
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise ValueError(f"geometry is a {geom.geom_type}, not a polygon")
    v = _vertices(geom)
    if v.shape[0] < 3 or not np.all(np.isfinite(v)):
        raise ValueError("polygon has NaN or too few vertices")
    if np.any(np.abs(v[:, 1]) > 90.0 + 1e-9):
        raise ValueError("latitude outside -90..90 (is the layer in degrees?)")
    xyz = _to_xyz(v[:, 1], v[:, 0])
    centre = xyz.mean(axis=0)
    if np.linalg.norm(centre) < 0.5:
        raise ValueError("footprint spans more than a hemisphere")
    plane = TangentPlane(centre)
    xy = plane.forward(xyz)
    hull = MultiPoint(xy).convex_hull
    if hull.geom_type != "Polygon" or hull.area <= 1e-6:
        raise ValueError("degenerate footprint (zero area)")
    rect = np.asarray(shapely.oriented_envelope(hull).exterior.coords)[:4]
    e1, e2 = rect[1] - rect[0], rect[2] - rect[1]
    l1, l2 = np.hypot(*e1), np.hypot(*e2)
    axis = e1 / l1 if l1 >= l2 else e2 / l2
    length, width = max(l1, l2), min(l1, l2)
    size = width if sub_size_km is None else float(sub_size_km)
    if not size > 0:
        raise ValueError("sub-footprint size must be positive")
    n = max(1, int(round(length / size)))
    if n > max_sub:
        raise ValueError(f"strip of {length:.0f} x {width:.0f} km would give {n} sub-footprints "
                         f"(more than {max_sub}): not a co-added footprint")
    perp = np.array([-axis[1], axis[0]])
    hv = np.asarray(hull.exterior.coords)
    st = np.stack([hv @ axis, hv @ perp], axis=1)
    hull_st = shapely.Polygon(st)
    s0, s1 = st[:, 0].min(), st[:, 0].max()
    t0, t1 = st[:, 1].min(), st[:, 1].max()
    edges = np.linspace(s0, s1, n + 1)
    cen = np.zeros((n, 2))
    area = np.zeros(n)
    S = SAMPLES_PER_SIDE
    g = (np.arange(S) + 0.5) / S
    samples = np.full((n, S * S, 2), np.nan)
    for k in range(n):
        piece = hull_st.intersection(box(edges[k], t0 - 1.0, edges[k + 1], t1 + 1.0))
        if piece.is_empty or piece.area <= 0:
            raise ValueError("a sub-footprint has zero area")
        c = piece.centroid
        cen[k] = (c.x, c.y)
        area[k] = piece.area
        bx0, by0, bx1, by1 = piece.bounds
        gs, gt = np.meshgrid(bx0 + g * (bx1 - bx0), by0 + g * (by1 - by0), indexing="ij")
        gs, gt = gs.ravel(), gt.ravel()
        inside = shapely.contains_xy(piece, gs, gt)
        samples[k, inside, 0] = gs[inside]
        samples[k, inside, 1] = gt[inside]
        if not inside.any():
            samples[k, 0] = cen[k]
    to_xy = lambda q: q[..., :1] * axis + q[..., 1:2] * perp  # noqa: E731  (s, t) -> plane
    clat, clon = _to_latlon(plane.inverse(to_xy(cen)))
    slat, slon = _to_latlon(plane.inverse(to_xy(np.nan_to_num(samples))))
    miss = ~np.isfinite(samples[..., 0])
    slat, slon = np.where(miss, np.nan, slat), np.where(miss, np.nan, slon)
    return Split(clat, (clon + 180.0) % 360.0 - 180.0, slat, slon, float(length), float(width), area)


# ============================================================================ footprints -> subs
@dataclass
class Population:
    """Populated sub-footprints of a set of footprints (M sub-footprints in all)."""
    footprint: np.ndarray        # (M,) index of the footprint (row of the input)
    sub: np.ndarray              # (M,) index along the track, 0..n-1
    n_sub: np.ndarray            # (M,) number of sub-footprints of its footprint
    lat: np.ndarray              # (M,) centre
    lon: np.ndarray
    mare: np.ndarray             # (M,) int8: 1 mare, 0 highland
    mare_frac: np.ndarray        # (M,) fraction of the class samples that are mare
    value: np.ndarray            # (M, K) wt%, NaN for elements not populated
    sigma: np.ndarray            # (M, K) 1-sigma
    skipped: list = field(default_factory=list)          # [(footprint index, reason)]
    element_skips: dict = field(default_factory=dict)    # element -> count of footprints
    loss: np.ndarray = None      # (n_footprints,) ||C - D||^2 (NaN if skipped)
    element_notes: dict = field(default_factory=dict)    # element -> why measured values were left out


def populate_footprints(geometries, values, errors, ok=None, classifier=None, mare_wt=None,
                        highland_wt=None, elements=None, sub_size_km=None, max_sub=DEFAULT_MAX_SUB,
                        progress=None, prior="fraction"):
    """Split every footprint, classify its sub-footprints and solve the population exactly.

    ``geometries`` (N shapely polygons, lon/lat), ``values`` / ``errors`` (N, K) wt% and 1 sigma,
    ``ok`` (N, K) 1 where the inversion constrained the element (None: all), ``classifier`` has
    ``mare_flag(lat, lon)`` (see :mod:`albedo`), priors ``mare_wt`` / ``highland_wt`` (K,)
    (default :data:`composition.MARE_WT` / ``HIGHLAND_WT``). An element enters a footprint's
    population when it is constrained (ok = 1), finite, >= 0, with a finite positive error; a
    footprint with no such element, a geometry that cannot be split, or sub-footprints whose class
    is unknown (off the albedo map) is skipped with its reason in ``skipped``.

    ``prior``: how D, the prior composition of a sub-footprint, is formed from the class samples
    inside it. ``"fraction"`` (default): the mean composition of the sub-footprint given its mare
    fraction f, f MARE + (1 - f) HIGHLAND, so a sub-footprint straddling a contact gets the mix of
    its units; ``"binary"``: the paper's choice, the mare mean when f >= 0.5, else the highland mean.
    """
    p = as_progress(progress)
    if mare_wt is None or highland_wt is None:
        from .composition import ELEMENTS, HIGHLAND_WT, MARE_WT
        mare_wt = MARE_WT if mare_wt is None else mare_wt
        highland_wt = HIGHLAND_WT if highland_wt is None else highland_wt
        elements = ELEMENTS if elements is None else elements
    mare_wt = np.asarray(mare_wt, np.float64)
    highland_wt = np.asarray(highland_wt, np.float64)
    values = np.atleast_2d(np.asarray(values, np.float64))
    errors = np.atleast_2d(np.asarray(errors, np.float64))
    N, K = values.shape
    if elements is None:
        elements = tuple(f"e{k}" for k in range(K))
    ok = np.ones((N, K), bool) if ok is None else (np.asarray(ok, np.float64) == 1)
    usable = ok & np.isfinite(values) & (values >= 0) & np.isfinite(errors) & (errors > 0)
    element_skips = {el: int(np.sum(~usable[:, k])) for k, el in enumerate(elements)}
    # say why a constrained value was left out (an error of 0 cannot weight a mean)
    element_notes = {}
    for k, el in enumerate(elements):
        measured = ok[:, k] & np.isfinite(values[:, k])
        why = [(measured & (values[:, k] < 0), "a negative value"),
               (measured & np.isfinite(errors[:, k]) & (errors[:, k] <= 0), f"{el}_err = 0 (no weight for the mean)"),
               (measured & ~np.isfinite(errors[:, k]), f"no finite {el}_err")]
        parts = [f"{int(m.sum())} rows with {text}" for m, text in why if m.any()]
        if parts:
            element_notes[el] = f"{el} left out of {'; '.join(parts)}"
    skipped = []
    splits = [None] * N
    for i, geom in enumerate(geometries):
        if i % 64 == 0:
            p.check()
            p.set(0.7 * i / max(N, 1), "splitting footprints")
        if not usable[i].any():
            skipped.append((i, "no element constrained with a finite error (X_ok, X, X_err)"))
            continue
        try:
            splits[i] = split_footprint(geom, sub_size_km=sub_size_km, max_sub=max_sub)
        except ValueError as exc:
            skipped.append((i, f"footprint cannot be split: {exc}"))
    idx = [i for i in range(N) if splits[i] is not None]
    # classes, all sample points in one call
    if idx:
        slat = np.concatenate([splits[i].sample_lat.ravel() for i in idx])
        slon = np.concatenate([splits[i].sample_lon.ravel() for i in idx])
        fin = np.isfinite(slat)
        flags = np.full(slat.shape, -1, dtype=np.int8)
        if fin.any():
            flags[fin] = np.asarray(classifier.mare_flag(slat[fin], slon[fin]), dtype=np.int8)
    keep, fracs, pos = [], {}, 0
    for i in idx:
        sp = splits[i]
        cnt = sp.sample_lat.size
        f = flags[pos:pos + cnt].reshape(sp.sample_lat.shape)
        pos += cnt
        known = (f >= 0).sum(axis=1)
        if np.any(known == 0):
            skipped.append((i, f"{int(np.sum(known == 0))} of {len(known)} sub-footprints lie off "
                               "the albedo / mare map (class unknown)"))
            continue
        fracs[i] = (f == 1).sum(axis=1) / known
        keep.append(i)
    p.set(0.75, "solving the population")
    loss = np.full(N, np.nan)
    if not keep:
        return Population(*(np.zeros(0, t) for t in (int, int, int, float, float, np.int8, float)),
                          np.zeros((0, K)), np.zeros((0, K)), sorted(skipped), element_skips, loss,
                                element_notes=element_notes)
    nmax = max(len(fracs[i]) for i in keep)
    F = len(keep)
    mask = np.zeros((F, nmax), bool)
    mare = np.zeros((F, nmax), np.int8)
    for r, i in enumerate(keep):
        nn = len(fracs[i])
        mask[r, :nn] = True
        mare[r, :nn] = fracs[i] >= 0.5
    if prior == "binary":
        D = np.where(mare[:, None, :] == 1, mare_wt[None, :, None], highland_wt[None, :, None])
    elif prior == "fraction":
        f = np.zeros((F, nmax))
        for r, i in enumerate(keep):
            f[r, :len(fracs[i])] = fracs[i]
        D = f[:, None, :] * mare_wt[None, :, None] + (1.0 - f[:, None, :]) * highland_wt[None, :, None]
    else:
        raise ValueError(f"prior must be 'fraction' or 'binary', not {prior!r}")
    a = np.where(usable[keep], values[keep], np.nan)
    C, active = solve_population(a, D, mask)
    sig = population_errors(np.where(usable[keep], errors[keep], np.nan), active, mask)
    loss[keep] = population_loss(C, D, mask)
    rr, cc = np.nonzero(mask)
    fp = np.asarray(keep)[rr]
    out = Population(
        footprint=fp, sub=cc, n_sub=mask.sum(axis=1)[rr],
        lat=np.concatenate([splits[i].lat for i in keep]),
        lon=np.concatenate([splits[i].lon for i in keep]),
        mare=mare[rr, cc], mare_frac=np.concatenate([fracs[i] for i in keep]),
        value=np.transpose(C, (0, 2, 1))[rr, cc], sigma=np.transpose(sig, (0, 2, 1))[rr, cc],
        skipped=sorted(skipped), element_skips=element_skips, loss=loss, element_notes=element_notes)
    p.set(1.0, "population solved")
    return out


def abundance_columns(attrs, n_rows, elements=None, path=None):
    """The abundances of an abundance layer's columns ``attrs`` (``n_rows`` rows) -> (values, errors, ok),
    (n_rows, K) each: columns X, X_err and X_ok for every element X. A missing or non-numeric column
    raises :class:`ClassXRFError` naming the layer ``path`` and the column."""
    from . import geo

    if elements is None:
        from .composition import ELEMENTS as elements
    geo.require_columns(path, attrs, [c for el in elements for c in (el, f"{el}_err", f"{el}_ok")])

    def num(name):
        try:
            return np.asarray(attrs[name], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ClassXRFError(path, "column is not numeric", key=name) from exc

    if not n_rows:
        return tuple(np.zeros((0, len(elements))) for _ in range(3))
    return tuple(np.stack([num(f"{el}{suffix}") for el in elements], axis=1) for suffix in ("", "_err", "_ok"))
