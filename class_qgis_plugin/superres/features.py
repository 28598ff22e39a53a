"""Surface-characteristics vectors W_k for every pixel of a region, from the albedo raster.

For each 2 km pixel the paper describes the albedo over a 12.5 x 12.5 km window centred on it (about
6 x 6 pixels), turns the window into a long feature vector with an ImageNet ResNet50 (2048 values)
and keeps K = 300 of them by minimum-redundancy maximum-relevance (mRMR, Peng, Long and Ding 2005,
IEEE TPAMI 27, 1226). Here:

* :func:`default_features` needs no weights: multi-scale albedo statistics (mean, standard deviation,
  minimum, maximum, range, percentiles, skewness), gradients (Sobel-free central differences, their
  magnitude and orientation averages), Laplacian of Gaussian and difference of Gaussians (blob/edge
  detectors) and texture (mean squared neighbour differences in four directions, the contrast term
  of a grey-level co-occurrence matrix). Deterministic: the same albedo gives the same features.
* :class:`ResNet50` / :func:`resnet50_features`: the ResNet50 of He et al. 2016 (bottleneck blocks
  3-4-6-3, 2048 outputs after global average pooling), our own module whose parameter names follow
  the common ``conv1, bn1, layer1..4, fc`` convention, so a ``state_dict`` saved from a standard
  ImageNet ResNet50 loads. Weights come from a file the user gives: nothing is downloaded.
* :func:`mrmr_select`: mRMR with the "MID" criterion (relevance minus mean redundancy), mutual
  information from quantile-binned features.

:func:`region_features` puts these together and caches the extracted features of a region in a
``.npz`` keyed by a hash of the albedo and the settings.
"""
import hashlib
import json
import os

import numpy as np
from scipy import ndimage

from ..errors import ClassXRFError
from ..progress import as_progress, subrange

#: pixels of the window for a 12.5 km window on the 2 km grid (12.5 / 2 = 6.25)
DEFAULT_WINDOW = 6


def _fill_nan(albedo, path=None):
    a = np.asarray(albedo, dtype=np.float64)
    if a.ndim != 2:
        raise ClassXRFError(path, f"the albedo must be a 2-D raster, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.all():
        raise ClassXRFError(path, "the albedo raster has no valid pixel over the region")
    if bad.any():
        # nearest valid pixel
        idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
        a = a[tuple(idx)]
    return a


def _box(a, size):
    """Mean over a size x size window centred on each pixel (even sizes: offsets -size//2 .. size//2-1)."""
    return ndimage.uniform_filter(a, size=size, mode="reflect")


def default_features(albedo, window=DEFAULT_WINDOW, scales=None):
    """Weight-free features of every pixel of ``albedo`` (rows, cols).

    Returns ``(features (rows, cols, F) float32, names list of F)``. ``window`` is the 12.5 km window
    in pixels; ``scales`` the window sizes of the multi-scale statistics (default: window/2, window,
    2 window). Borders are handled by mirror reflection of the raster.
    """
    a = _fill_nan(albedo)
    window = int(window)
    if window < 2:
        raise ClassXRFError(None, f"the feature window must be at least 2 pixels, got {window}", key="window")
    if scales is None:
        scales = (max(3, window // 2), window, 2 * window)
    feats, names = [], []

    def add(name, v):
        feats.append(np.asarray(v, dtype=np.float64))
        names.append(name)

    add("albedo", a)
    sq = a * a
    for s in scales:
        m = _box(a, s)
        var = np.maximum(_box(sq, s) - m * m, 0.0)
        sd = np.sqrt(var)
        mn = ndimage.minimum_filter(a, size=s, mode="reflect")
        mx = ndimage.maximum_filter(a, size=s, mode="reflect")
        add(f"mean_{s}", m)
        add(f"std_{s}", sd)
        add(f"min_{s}", mn)
        add(f"max_{s}", mx)
        add(f"range_{s}", mx - mn)
        add(f"centre_minus_mean_{s}", a - m)
        # local skewness from raw moments
        m3 = _box(sq * a, s) - 3 * m * _box(sq, s) + 2 * m ** 3
        add(f"skew_{s}", np.where(sd > 1e-12, m3 / np.maximum(sd, 1e-12) ** 3, 0.0))
    for q in (10, 50, 90):
        add(f"p{q}_{window}", ndimage.percentile_filter(a, q, size=window, mode="reflect"))
    gy, gx = np.gradient(a)
    gmag = np.hypot(gx, gy)
    add("grad_x", gx)
    add("grad_y", gy)
    add("grad_mag", gmag)
    add(f"grad_x_mean_{window}", _box(gx, window))
    add(f"grad_y_mean_{window}", _box(gy, window))
    add(f"grad_mag_mean_{window}", _box(gmag, window))
    add(f"grad_mag_std_{window}", np.sqrt(np.maximum(_box(gmag ** 2, window) - _box(gmag, window) ** 2, 0)))
    for sigma in (1.0, 2.0, 4.0):
        # Laplacian (5-point stencil) of the Gaussian-smoothed albedo: exactly 0 on planes, unlike a
        # sampled second-derivative kernel whose weights do not sum to 0
        add(f"log_{sigma:g}", ndimage.laplace(ndimage.gaussian_filter(a, sigma, mode="reflect"), mode="reflect"))
    add("dog_1_3", ndimage.gaussian_filter(a, 1.0, mode="reflect") - ndimage.gaussian_filter(a, 3.0, mode="reflect"))
    # texture: mean squared differences with the neighbour in 4 directions (GLCM contrast)
    pad = np.pad(a, 1, mode="reflect")
    r, c = a.shape
    for name, (dr, dc) in (("h", (0, 1)), ("v", (1, 0)), ("d1", (1, 1)), ("d2", (1, -1))):
        nb = pad[1 + dr:1 + dr + r, 1 + dc:1 + dc + c]
        add(f"contrast_{name}_{window}", _box((a - nb) ** 2, window))
    f = np.stack(feats, axis=-1).astype(np.float32)
    return f, names


# --------------------------------------------------------------------------------------------------
# ResNet50 (He, Zhang, Ren and Sun 2016, "Deep residual learning for image recognition", CVPR)


def _torch_resnet():
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + idt)

    class ResNet50(nn.Module):
        """ResNet50: stem, bottleneck stages of 3, 4, 6 and 3 blocks, global pooling, ``fc``."""

        def __init__(self, num_classes=1000):
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            self.layer1 = self._stage(64, 3, 1)
            self.layer2 = self._stage(128, 4, 2)
            self.layer3 = self._stage(256, 6, 2)
            self.layer4 = self._stage(512, 3, 2)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2048, num_classes)

        def _stage(self, planes, blocks, stride):
            down = None
            if stride != 1 or self.inplanes != planes * 4:
                down = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                     nn.BatchNorm2d(planes * 4))
            layers = [Bottleneck(self.inplanes, planes, stride, down)]
            self.inplanes = planes * 4
            layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
            return nn.Sequential(*layers)

        def features(self, x):
            """(n, 3, h, w) -> (n, 2048): the pooled output of the last stage (the features used)."""
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return torch.flatten(self.avgpool(x), 1)

        def forward(self, x):
            return self.fc(self.features(x))

    return ResNet50


def ResNet50(num_classes=1000):
    """A new ResNet50 module (random weights)."""
    return _torch_resnet()(num_classes)


def load_resnet50(weights_path):
    """ResNet50 with weights from ``weights_path`` (a ``torch.save``-d state_dict, possibly wrapped in
    ``{"state_dict": ...}`` or with a ``module.`` prefix). A clear error names the file when it is
    missing, unreadable or its keys/shapes do not match."""
    import torch

    if weights_path is None or not os.path.isfile(weights_path):
        raise ClassXRFError(weights_path, "ResNet50 weights file not found (give a state_dict saved with torch.save)")
    try:
        sd = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise ClassXRFError(weights_path, f"cannot read ResNet50 weights: {exc}") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ClassXRFError(weights_path, "the file does not hold a state_dict")
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    nclass = sd["fc.weight"].shape[0] if "fc.weight" in sd else 1000
    net = ResNet50(nclass)
    want = net.state_dict()
    missing = [k for k in want if k not in sd and not k.endswith("num_batches_tracked")]
    if missing:
        raise ClassXRFError(weights_path, f"{len(missing)} ResNet50 parameters are missing", key=missing[0])
    for k, v in want.items():
        if k in sd and tuple(sd[k].shape) != tuple(v.shape):
            raise ClassXRFError(weights_path, f"shape {tuple(sd[k].shape)} does not match {tuple(v.shape)}", key=k)
    net.load_state_dict({k: sd[k] for k in want if k in sd}, strict=False)
    return net.eval()


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resnet50_features(albedo, net, window=DEFAULT_WINDOW, input_size=64, batch=256, device="cpu",
                      progress=None):
    """2048 ResNet50 features of every pixel's albedo window.

    Each window (``window`` x ``window`` pixels, mirror-padded at the raster edges) is scaled to
    [0, 1] by the region's albedo range, resized bilinearly to ``input_size`` pixels, copied into
    the three colour channels and normalised with the ImageNet mean and standard deviation, then
    passed through ``net`` (a :func:`ResNet50` / :func:`load_resnet50`) on ``device``.
    Returns (rows, cols, 2048) float32. Cost: about 4 GFLOP per pixel at ``input_size`` 224 and
    0.33 at 64: a GPU is advised for whole regions.
    """
    import torch
    import torch.nn.functional as F

    p = as_progress(progress)
    a = _fill_nan(albedo)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    rows, cols = a.shape
    w = int(window)
    top = w // 2
    padded = np.pad(a, ((top, w - 1 - top), (top, w - 1 - top)), mode="reflect").astype(np.float32)
    t = torch.from_numpy(padded)
    # patches[r, c] = padded[r:r+w, c:c+w]
    patches = t.unfold(0, w, 1).unfold(1, w, 1).reshape(rows * cols, w, w)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    net = net.to(device).eval()
    out = np.empty((rows * cols, 2048), dtype=np.float32)
    n = rows * cols
    with torch.no_grad():
        for s in range(0, n, batch):
            p.check()
            x = patches[s:s + batch].unsqueeze(1).to(device)
            x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False)
            x = (x.expand(-1, 3, -1, -1) - mean) / std
            out[s:s + batch] = net.features(x).float().cpu().numpy()
            p.set(min(1.0, (s + batch) / n), "ResNet50 features")
    return out.reshape(rows, cols, 2048), [f"resnet50_{i}" for i in range(2048)]


# --------------------------------------------------------------------------------------------------
# mRMR


def _quantile_codes(x, n_bins):
    """Equal-frequency bin codes (n, F) in [0, n_bins) of each column of x."""
    n = x.shape[0]
    ranks = np.argsort(np.argsort(x, axis=0, kind="stable"), axis=0, kind="stable")
    return np.minimum((ranks * n_bins) // n, n_bins - 1).astype(np.int64)


def _mi_one_vs_all(code_a, codes, n_bins):
    """Mutual information (nats) between one coded variable (n,) and every column of codes (n, F)."""
    n, nf = codes.shape
    joint = code_a[:, None] * n_bins + codes + (np.arange(nf) * n_bins * n_bins)[None, :]
    pj = np.bincount(joint.ravel(), minlength=nf * n_bins * n_bins).reshape(nf, n_bins, n_bins) / n
    pa = pj.sum(axis=2, keepdims=True)
    pb = pj.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(pj > 0, pj * np.log(pj / (pa * pb)), 0.0)
    return term.sum(axis=(1, 2))


def mrmr_select(x, y=None, k=300, n_bins=10, max_samples=4000, seed=0):
    """Order and keep ``k`` columns of ``x`` (n, F) by mRMR (MID: relevance - mean redundancy).

    ``y`` (n,) or (n, T): the target(s); relevance is the mean mutual information with the targets.
    Without a target, relevance is each feature's binned entropy (its information content).
    Redundancy is the mean mutual information with the features already chosen. Constant columns are
    never chosen. Returns the chosen column indices (at most ``min(k, number of non-constant
    columns)``), in the order chosen. Deterministic for a given ``seed`` (rows are subsampled to
    ``max_samples`` with it).
    """
    x = np.asarray(x, dtype=np.float64)
    n, nf = x.shape
    if n == 0:
        raise ClassXRFError(None, "mRMR needs at least one sample", key="features")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, max_samples, replace=False)) if n > max_samples else np.arange(n)
    xs = x[rows]
    varying = np.where(np.nanstd(xs, axis=0) > 0)[0]
    if varying.size == 0:
        return np.zeros(0, dtype=np.int64)
    codes = _quantile_codes(xs[:, varying], n_bins)
    if y is None:
        rel = np.array([_mi_one_vs_all(codes[:, i], codes[:, i:i + 1], n_bins)[0] for i in range(codes.shape[1])])
    else:
        yy = np.asarray(y, dtype=np.float64).reshape(n, -1)[rows]
        rel = np.zeros(codes.shape[1])
        for t in range(yy.shape[1]):
            yc = _quantile_codes(yy[:, t:t + 1], n_bins)[:, 0]
            rel += _mi_one_vs_all(yc, codes, n_bins)
        rel /= yy.shape[1]
    k = int(min(k, codes.shape[1]))
    chosen = [int(np.argmax(rel))]
    red_sum = _mi_one_vs_all(codes[:, chosen[0]], codes, n_bins)
    available = np.ones(codes.shape[1], dtype=bool)
    available[chosen[0]] = False
    while len(chosen) < k:
        score = rel - red_sum / len(chosen)
        score[~available] = -np.inf
        j = int(np.argmax(score))
        chosen.append(j)
        available[j] = False
        if len(chosen) < k:
            red_sum += _mi_one_vs_all(codes[:, j], codes, n_bins)
    return varying[np.array(chosen, dtype=np.int64)]


# --------------------------------------------------------------------------------------------------
# region features with a cache


def _hash_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def feature_cache_key(albedo, settings):
    """Hex key of the extracted features: the albedo's bytes and shape + the extraction settings."""
    a = np.ascontiguousarray(np.asarray(albedo, dtype=np.float32))
    h = hashlib.sha256()
    h.update(str(a.shape).encode())
    h.update(a.tobytes())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


def standardise(f):
    """Z-score each feature over all pixels (constant features become 0)."""
    f = np.asarray(f, dtype=np.float32)
    flat = f.reshape(-1, f.shape[-1])
    mu = flat.mean(axis=0, dtype=np.float64)
    sd = flat.std(axis=0, dtype=np.float64)
    sd[sd <= 0] = 1.0
    return ((f - mu.astype(np.float32)) / sd.astype(np.float32)).astype(np.float32)


def region_features(albedo, extractor="default", k=300, target=None, target_mask=None,
                    window=DEFAULT_WINDOW, resnet_weights=None, resnet_input_size=64, cache_dir=None,
                    device="cpu", seed=0, progress=None):
    """W_k for every pixel: (rows, cols, K) float32, standardised, and the chosen feature names.

    ``extractor``: ``"default"`` (:func:`default_features`) or ``"resnet50"`` (needs
    ``resnet_weights``, a file). The extracted features are cached in ``cache_dir`` (when given) as
    ``superres_features_<key>.npz``, key from :func:`feature_cache_key`. mRMR keeps ``k`` of them,
    relevant to ``target`` ((rows, cols, T) abundances) over the pixels of ``target_mask`` when
    given (at least 20 such pixels), otherwise by information content.
    """
    p = as_progress(progress)
    albedo = np.asarray(albedo, dtype=np.float32)
    if extractor not in ("default", "resnet50"):
        raise ClassXRFError(None, f"unknown feature extractor {extractor!r} (default or resnet50)", key="extractor")
    settings = {"extractor": extractor, "window": int(window), "version": 1}
    if extractor == "resnet50":
        if resnet_weights is None:
            raise ClassXRFError(None, "the resnet50 extractor needs a weights file", key="resnet_weights")
        if not os.path.isfile(resnet_weights):
            raise ClassXRFError(resnet_weights, "ResNet50 weights file not found")
        settings["weights_sha256"] = _hash_file(resnet_weights)
        settings["input_size"] = int(resnet_input_size)
    feats = names = None
    cache_path = None
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)
        cache_path = os.path.join(cache_dir, f"superres_features_{feature_cache_key(albedo, settings)}.npz")
        if os.path.isfile(cache_path):
            try:
                with np.load(cache_path) as z:
                    feats = z["features"].astype(np.float32)
                    names = [str(s) for s in z["names"]]
                if feats.shape[:2] != albedo.shape:
                    feats = names = None
            except Exception:  # noqa: BLE001 - a damaged cache is rebuilt
                feats = names = None
    if feats is None:
        if extractor == "default":
            feats, names = default_features(albedo, window=window)
        else:
            net = load_resnet50(resnet_weights)
            feats, names = resnet50_features(albedo, net, window=window, input_size=resnet_input_size,
                                             device=device, progress=subrange(p, 0.0, 0.9))
        if cache_path is not None:
            tmp = cache_path[:-4] + ".tmp.npz"
            store = feats.astype(np.float16) if extractor == "resnet50" else feats
            np.savez(tmp, features=store, names=np.array(names))
            os.replace(tmp, cache_path)
    p.set(0.9, "mRMR feature selection")
    flat = feats.reshape(-1, feats.shape[-1])
    y = None
    if target is not None and target_mask is not None and np.count_nonzero(target_mask) >= 20:
        m = np.asarray(target_mask, dtype=bool).ravel()
        tt = np.asarray(target, dtype=np.float64).reshape(m.size, -1)[m]
        tt = tt[:, np.isfinite(tt).sum(axis=0) >= 20]     # elements never constrained carry no relevance
        ok = np.all(np.isfinite(tt), axis=1) if tt.shape[1] else np.zeros(len(tt), bool)
        if ok.sum() >= 20:
            y = tt[ok]
            sel_rows = np.where(m)[0][ok]
    if y is None:
        idx = mrmr_select(flat, None, k=k, seed=seed)
    else:
        idx = mrmr_select(flat[sel_rows], y, k=k, seed=seed)
    w = standardise(feats[..., idx])
    p.set(1.0, "features ready")
    return w, [names[i] for i in idx]
