"""The super-resolution's training settings, :class:`SuperResSettings`.

Imports neither numpy nor torch (dataclasses and the plugin's errors only; :meth:`SuperResSettings.validate`
imports :mod:`.graph` when called), so the QGIS glue can read the defaults when the plugin loads.
"""
from dataclasses import dataclass

from ..errors import ClassXRFError


#: a short training for demonstrations and benchmarks of whole archives: one sweep of 50-pixel subgraphs,
#: 30 features, a 1,500-point kriging (about a minute a region on 2 cores instead of several)
FAST_TRAINING = {"sweeps": 1, "phase1_sweeps": 0, "n_features": 30, "kriging_points": 1500, "subgraph_size": 50,
                 "stride": 50, "steps_per_subgraph": 2, "gate_probe": 0}


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
    gate_probe: int = 1            # after this many sweeps (fewer than sweeps) the gate is tried on the network
                                   # so far: when it keeps no element's correction, training stops there (the map
                                   # is the drift + kriging the full training's gate gives unless a correction
                                   # would pass only later); 0: always train every sweep
    residual_kriging: bool = True  # add the ordinary-kriged residuals of the observed pixels (regression kriging)
    kriging_points: int = 4000     # observations in the residual kriging system (seeded subset beyond)
    kriging_nugget: bool = True    # the variogram's nugget is measurement noise: the kriged map at an observed
                                   # pixel is the smooth signal (PyKrige's exact_values=False), not the pixel's own
                                   # value (False: an exact interpolator, which leaves a dot at every observed pixel)
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
        if int(self.gate_probe) < 0:
            raise ClassXRFError(None, f"gate_probe must be 0 (off) or a number of sweeps, got {self.gate_probe}",
                                key="gate_probe")
        if not 0 <= self.phase1_sweeps <= self.sweeps:
            raise ClassXRFError(None, "phase1_sweeps must lie between 0 and sweeps", key="phase1_sweeps")
