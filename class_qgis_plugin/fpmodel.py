"""Fundamental-parameters XRF forward model of a thick, flat, homogeneous lunar target.

Physics
-------
A flat regolith surface is lit by the solar spectrum ``I0(E)`` (photons cm^-2 s^-1 keV^-1 through a
surface perpendicular to the beam) at incidence angle ``i`` and viewed at emission angle ``e``, both
measured from the surface normal (``SOLARANG`` and ``EMISNANG`` of the CLASS headers). With weight
fractions ``w_j`` (summing to 1) the sample's mass attenuation is ``mu(E) = sum_j w_j mu_j(E)``.
Writing ``a = 1/cos i``, ``b = 1/cos e``:

* primary fluorescence of line ``l`` of element ``i`` (Shiraiwa and Fujino 1966, Jpn. J. Appl.
  Phys. 5, 886, eq. for a thick specimen; per unit surface area and steradian)::

      J_l = 1/(4 pi) * sum_E I0(E) dE * w_i tau_l(E) / (a mu(E) + b mu(E_l))

  where ``tau_l = sigma_shell * omega * p_line`` is the line production cross section
  (``CS_FluorLine_Kissel_Cascade``);
* secondary fluorescence of line ``l`` excited by line ``k`` of element ``j`` (same paper; the
  form used by X2ABUNDANCE, Athiray et al. 2015)::

      S_lk = 1/(4 pi) * 1/2 * sum_E I0 dE w_j tau_k(E) * w_i tau_l(E_k) / (a mu(E) + b mu(E_l))
             * [ ln(1 + a mu(E)/mu(E_k)) / (a mu(E)) + ln(1 + b mu(E_l)/mu(E_k)) / (b mu(E_l)) ]

  evaluated for all pairs at once as two batched matrix products over energy;
* the scattered solar continuum, Rayleigh (energy kept) plus Compton (energy ``E'`` after
  scattering by ``theta = 180 deg - phase``)::

      R(E) = sum_j w_j dsigma_j/dOmega(E, theta) * I0(E) / (a mu(E) + b mu(E_out))   per sr.

The numbers above are per unit *surface* area. A collimated detector whose field of view is filled
by the surface sees the radiance ``J / cos e`` over its effective solid angle ``Omega_eff``
(``int response dOmega``), so the count rate is ``ARF(E) * J/cos(e) * Omega_eff`` folded through
the RMF. ``Omega_eff`` (parameter ``solid_angle_sr``) defaults to CLASS's collimator: 14 deg full
width at zero response (7 deg FWHM), a triangular response on each axis, which integrates to
``(7 deg)^2 = 0.0149 sr`` (Pillai et al. 2021, Icarus 363, 114436; the 12.5 km footprint at 100 km).
``norm`` multiplies everything (calibration / geometry uncertainty); ``scatter_norm`` the scattered
part only.

Integration grid
----------------
The incident spectrum is rebinned, conserving photons, onto an internal grid of ``grid_step_keV``
(default 0.01 keV) whose bin boundaries are, with ``edge_aligned=True`` (the default), split at the
K (and L) absorption edges of the 8 elements, so no bin straddles an edge; atomic data are taken at
bin centres. A 0.1 keV grid not aligned on edges biases Al/Si by about 15 % (see the tests).

Response conventions (as XSPEC applies them)
-------------------------------------------
The RMF's channels start at ``TLMIN`` of its F_CHAN column, 1 when absent (:func:`ogip.read_rmf`);
the ARF goes with the RMF row by row (:func:`ogip.arf_on_rmf`). ``gain_slope``/``gain_offset``
follow XSPEC's ``gain`` command (XSPEC manual, "gain: modify a response file gain"; HEASoft
``Response::applyGainFromFit``): the energies on which the matrix rows are defined move to
``E' = E / slope - offset`` (offset in keV), so a photon of true energy ``E'`` is redistributed as
the unshifted RMF redistributes the nominal energy ``E = slope * (E' + offset)`` (rows are
interpolated linearly between the RMF's energy bins). The effective area is *not* moved: XSPEC
rebins the saved area onto the shifted energies (``RealResponse::shiftEffectiveArea``), i.e. it
stays at the photon's true energy. Channel boundaries (EBOUNDS) are not changed: energy ranges
(``e_range``, XSPEC's ``ignore``/``notice``) select channels by their nominal EBOUNDS. With ISRO's
X2ABUNDANCE gain (1.0043, 0.0316 keV) a line moves up by ``0.0043 E + 0.032`` keV (39 eV at Si K
alpha). :meth:`Response.line_rows` and :meth:`Response.fold_density` take a gain per spectrum and
give the derivatives by slope and offset, for a fitted gain (XSPEC's ``gain fit``).
"""
import numpy as np

from .atomic import atomic_data, compton_energy
from .composition import ELEMENTS
from .errors import ClassXRFError

FOUR_PI = 4.0 * np.pi
DEFAULT_SOLID_ANGLE_SR = float(np.deg2rad(7.0) ** 2)


# ------------------------------------------------------------------------------------------------
# grids and rebinning
# ------------------------------------------------------------------------------------------------

def absorption_edges(e_lo, e_hi):
    """K, L1, L2, L3 absorption edges (keV) of the 8 elements between e_lo and e_hi, sorted."""
    import xraylib
    out = []
    for z in (8, 11, 12, 13, 14, 20, 22, 26):
        for sh in (xraylib.K_SHELL, xraylib.L1_SHELL, xraylib.L2_SHELL, xraylib.L3_SHELL):
            try:
                e = xraylib.EdgeEnergy(z, sh)
            except ValueError:
                continue
            if e_lo < e < e_hi:
                out.append(e)
    return np.unique(np.array(out))


def _uniform(e_lo, e_hi, step):
    n = int(np.ceil((e_hi - e_lo) / step - 1e-9))
    b = e_lo + step * np.arange(n + 1)
    b[-1] = min(b[-1], e_hi) if b[-1] > e_hi else b[-1]
    return b


def make_grid(e_lo, e_hi, step, edge_aligned=True):
    """Integration bins ``(lo, hi)`` of width ``step`` from ``e_lo`` to ``e_hi`` keV; with
    ``edge_aligned`` every absorption edge of :func:`absorption_edges` becomes a bin boundary.
    ``step`` may be a sequence of ``(up_to_keV, step)`` pieces, in increasing energy (the last
    piece runs to ``e_hi``): a fine grid where the fit's channels are, a coarser one above."""
    pieces = [(e_hi, float(step))] if np.ndim(step) == 0 else [(float(u), float(w)) for u, w in step]
    if not (all(w > 0 for _, w in pieces) and e_hi > e_lo):
        raise ValueError("grid needs step > 0 and e_hi > e_lo")
    parts, start = [], e_lo
    for k, (up, w) in enumerate(pieces):
        stop = e_hi if k == len(pieces) - 1 else min(max(up, start), e_hi)
        if stop > start:
            parts.append(_uniform(start, stop, w))
            start = stop
    b = np.unique(np.concatenate(parts))
    if edge_aligned:
        edges = absorption_edges(e_lo, e_hi)
        b = np.unique(np.concatenate([b, edges]))
        # drop boundaries closer than 1e-6 keV (numerical duplicates)
        keep = np.concatenate([[True], np.diff(b) > 1e-6])
        b = b[keep]
    return b[:-1].copy(), b[1:].copy()


def bins_from_points(energy):
    """Bin boundaries for a table whose energies are bin *lower* edges (ISRO's modelop_*.txt and
    its table model's ENERG_LO): the last bin is as wide as the one before."""
    e = np.asarray(energy, float)
    if e.size < 2:
        raise ValueError("need at least two energies")
    return np.concatenate([e, [e[-1] + (e[-1] - e[-2])]])


def rebin_density(src_edges, density, dst_lo, dst_hi):
    """Rebin a piecewise-constant density (..., n_src) defined on ``src_edges`` (n_src + 1,) onto
    bins ``dst_lo..dst_hi``, conserving the integral. Returns the density on the new bins
    (0 outside the source range)."""
    src_edges = np.asarray(src_edges, float)
    d = np.asarray(density, float)
    cum = np.concatenate([np.zeros(d.shape[:-1] + (1,)), np.cumsum(d * np.diff(src_edges), axis=-1)],
                         axis=-1)
    lo = np.clip(dst_lo, src_edges[0], src_edges[-1])
    hi = np.clip(dst_hi, src_edges[0], src_edges[-1])
    flat = cum.reshape(-1, cum.shape[-1])
    out = np.empty((flat.shape[0], np.size(dst_lo)))
    for r in range(flat.shape[0]):
        out[r] = (np.interp(hi, src_edges, flat[r]) - np.interp(lo, src_edges, flat[r]))
    out /= (np.asarray(dst_hi, float) - np.asarray(dst_lo, float))
    return out.reshape(d.shape[:-1] + (np.size(dst_lo),))


# ------------------------------------------------------------------------------------------------
# response
# ------------------------------------------------------------------------------------------------

def _field(obj, *names):
    for n in names:
        if hasattr(obj, n):
            return getattr(obj, n)
        if isinstance(obj, dict) and n in obj:
            return obj[n]
    raise ClassXRFError(getattr(obj, "path", None), f"response object has no {names[0]}", key=names[0])


class Response:
    """ARF x RMF with a gain shift: counts per channel for photons of any true energy.

    ``rmf`` and ``arf`` are :class:`class_qgis_plugin.ogip.RMF`/``ARF`` objects (or anything with
    the same fields: ``energ_lo``, ``energ_hi``, ``e_min``, ``e_max``, ``matrix`` for the RMF;
    ``energ_lo``, ``energ_hi``, ``specresp`` for the ARF). ``arf=None`` means an area of 1 cm^2.
    ``notes`` lists what was done the XSPEC way that a user may want to know (channel numbering,
    ARF pairing).
    """

    def __init__(self, rmf, arf=None, gain_slope=1.0, gain_offset=0.0):
        from .ogip import arf_on_rmf
        self.rmf = rmf
        self.path = getattr(rmf, "path", None)
        lo = np.asarray(_field(rmf, "energ_lo"), float)
        hi = np.asarray(_field(rmf, "energ_hi"), float)
        self.matrix = np.asarray(_field(rmf, "matrix"), float)
        if self.matrix.shape[0] != lo.size:
            raise ClassXRFError(self.path, "MATRIX rows do not match ENERG_LO", key="MATRIX")
        if lo.size < 2:
            raise ClassXRFError(self.path, "the RMF needs at least two energy rows", key="ENERG_LO")
        self.e_mid = 0.5 * (lo + hi)
        self.energ_lo, self.energ_hi = lo, hi
        self.e_min = np.asarray(_field(rmf, "e_min"), float)
        self.e_max = np.asarray(_field(rmf, "e_max"), float)
        self.notes = list(getattr(rmf, "notes", None) or [])
        if not (gain_slope > 0):
            raise ClassXRFError(None, "gain slope must be positive", key="gain_slope")
        self.gain_slope = float(gain_slope)
        self.gain_offset = float(gain_offset)
        if arf is None:
            self.area_rows = np.ones_like(self.e_mid)
        else:
            self.area_rows, note = arf_on_rmf(arf, rmf)
            if note:
                self.notes.append(note)

    @property
    def n_channels(self):
        return self.matrix.shape[1]

    def nominal_energy(self, energy, slope=None, offset=None):
        """The energy in the unshifted response that a photon of true ``energy`` is treated as:
        ``slope * (E + offset)`` (XSPEC's gain; this response's own gain by default)."""
        sl = self.gain_slope if slope is None else slope
        off = self.gain_offset if offset is None else offset
        return sl * (np.asarray(energy, float) + off)

    def true_energy(self, nominal):
        """Inverse of :meth:`nominal_energy` at this response's gain."""
        return np.asarray(nominal, float) / self.gain_slope - self.gain_offset

    def channel_energy(self):
        """Channel bounds ``(lo, hi)`` keV used to select fit ranges: the nominal EBOUNDS (XSPEC's
        ``ignore``/``notice`` do not see the gain shift)."""
        return self.e_min.copy(), self.e_max.copy()

    def max_true_energy(self):
        return float(self.true_energy(self.energ_hi[-1]))

    def area(self, energy):
        """Effective area (cm^2) for photons of true ``energy``: the ARF (paired with the RMF's
        rows) interpolated linearly between row centres, 0 outside the RMF's energies. It does
        not depend on the gain (``RealResponse::shiftEffectiveArea``)."""
        e = np.asarray(energy, float)
        a = np.interp(e, self.e_mid, self.area_rows)
        return np.where((e < self.energ_lo[0]) | (e > self.energ_hi[-1]), 0.0, a)

    def _interp(self, nominal):
        """Linear interpolation between the matrix rows at nominal energies: lower row ``j``,
        fraction ``t`` towards row ``j + 1``, weight ``w`` (0 outside the RMF) and
        ``dt/dnominal`` (0 where ``t`` is clipped)."""
        mid = self.e_mid
        j = np.clip(np.searchsorted(mid, nominal) - 1, 0, mid.size - 2)
        d = mid[j + 1] - mid[j]
        t = (nominal - mid[j]) / d
        w = ((nominal >= self.energ_lo[0]) & (nominal <= self.energ_hi[-1])).astype(float)
        dt = np.where((t > 0) & (t < 1), w / d, 0.0)
        return j, np.clip(t, 0.0, 1.0), w, dt

    def redistribution(self, energy):
        """RMF rows (len(energy), n_chan) for photons of true ``energy`` under the gain shift."""
        e = np.atleast_1d(np.asarray(energy, float))
        j, t, w, _ = self._interp(self.nominal_energy(e))
        return (w * (1.0 - t))[:, None] * self.matrix[j] + (w * t)[:, None] * self.matrix[j + 1]

    def counts_per_photon(self, energy):
        """ARF(E) x RMF row (len(energy), n_chan): expected counts per photon cm^-2 at E."""
        e = np.atleast_1d(np.asarray(energy, float))
        return self.area(e)[:, None] * self.redistribution(e)

    def channel_mask(self, e_lo, e_hi):
        """Channels whose nominal bounds lie inside [e_lo, e_hi] keV."""
        lo, hi = self.channel_energy()
        return (lo >= e_lo - 1e-9) & (hi <= e_hi + 1e-9)

    def _gains(self, slope, offset, n=None):
        """Slopes and offsets as 1-D arrays of one length (``n`` when given)."""
        sl = np.atleast_1d(np.asarray(self.gain_slope if slope is None else slope, float))
        off = np.atleast_1d(np.asarray(self.gain_offset if offset is None else offset, float))
        sl, off = np.broadcast_arrays(sl.ravel(), off.ravel())
        if n is not None:
            sl, off = np.broadcast_to(sl, (n,)), np.broadcast_to(off, (n,))
        return sl, off

    def line_rows(self, energy, slope=None, offset=None, channels=None, grad=False):
        """Counts per photon cm^-2 (n, K, n_c) for photons of true ``energy`` (K,) under a gain
        per spectrum (``slope``, ``offset`` of shape (n,); this response's own by default), in the
        channels ``channels`` (a mask or index; all by default). With ``grad`` also the
        derivatives by slope and by offset (each (n, K, n_c); the interpolation between rows is
        linear, so they are exact between row centres)."""
        e = np.asarray(energy, float).ravel()
        sl, off = self._gains(slope, offset)
        Mc = self.matrix if channels is None else self.matrix[:, channels]
        nominal = sl[:, None] * (e[None, :] + off[:, None])
        j, t, w, dt = self._interp(nominal)
        a = self.area(e)[None, :]
        R = ((w * (1.0 - t) * a)[..., None] * Mc[j] + (w * t * a)[..., None] * Mc[j + 1])
        if not grad:
            return R
        dR = (dt * a)[..., None] * (Mc[j + 1] - Mc[j])
        return R, dR * (e[None, :] + off[:, None])[..., None], dR * sl[:, None, None]

    def fold_density(self, energy, photons, slope=None, offset=None, channels=None, grad=False):
        """Counts per channel (n, n_c) of ``photons`` (n, K) at true energies ``energy`` (K,)
        (e.g. a continuum per integration bin), gain per spectrum as in :meth:`line_rows`. The
        photons are deposited on the RMF's energy rows and folded by one matrix product (the same
        numbers as ``photons @ counts_per_photon(energy)`` at a shared gain, without an
        (n, K, n_c) array). With ``grad`` also the derivatives by slope and by offset."""
        e = np.asarray(energy, float).ravel()
        ph = np.atleast_2d(np.asarray(photons, float))
        n, K = ph.shape
        sl, off = self._gains(slope, offset, n)
        Mc = self.matrix if channels is None else self.matrix[:, channels]
        nominal = sl[:, None] * (e[None, :] + off[:, None])
        j, t, w, dt = self._interp(nominal)
        q = ph * self.area(e)[None, :]
        nrow = self.e_mid.size
        base = (np.arange(n) * nrow)[:, None] + j

        def deposit(lower, upper):
            acc = np.bincount(base.ravel(), lower.ravel(), minlength=n * nrow)
            acc += np.bincount((base + 1).ravel(), upper.ravel(), minlength=n * nrow)
            return acc.reshape(n, nrow) @ Mc

        counts = deposit(q * w * (1.0 - t), q * w * t)
        if not grad:
            return counts
        g = q * dt
        gs = g * (e[None, :] + off[:, None])
        go = g * sl[:, None]
        return counts, deposit(-gs, gs), deposit(-go, go)


# ------------------------------------------------------------------------------------------------
# forward model
# ------------------------------------------------------------------------------------------------

def _as_angles(x, n, name, finite=True):
    """``x`` as n values (a scalar is repeated); with ``finite`` non-finite values are an error."""
    a = np.asarray(x, float)
    if a.ndim == 0:
        a = np.full(n, float(a))
    a = a.ravel()
    if a.size == 1 and n > 1:
        a = np.full(n, a[0])
    if a.size != n:
        raise ClassXRFError(None, f"{name} has {a.size} values for {n} compositions", key=name)
    if finite and np.any(~np.isfinite(a)):
        raise ClassXRFError(None, f"{name} must be finite", key=name)
    return a


class ForwardModel:
    """Expected CLASS counts per channel for batches of compositions and geometries.

    ``rmf``/``arf``: OGIP response (see :class:`Response`). ``solar_energy_keV`` (n_e,) are the
    lower edges of the solar table's bins (as in ``modelop_*.txt``), ``solar_flux`` (n_e,) or
    (n_spectra, n_e) photons cm^-2 s^-1 keV^-1. Options: ``grid_step_keV`` and ``edge_aligned``
    (integration grid), ``e_min_keV``/``e_max_keV`` (its range), ``solid_angle_sr`` (effective solid
    angle of the collimator), ``norm`` (overall factor), ``secondary`` (secondary fluorescence on/off),
    ``l_line_min_keV`` (lowest L line modelled), ``compute_dtype`` (float type of the line and scatter
    terms: float64, or float32 where a fit wants speed, :func:`invert.inversion_model`).
    """

    def __init__(self, rmf, arf, solar_energy_keV, solar_flux, gain_slope=1.0, gain_offset=0.0,
                 grid_step_keV=0.01, edge_aligned=True, e_min_keV=0.3, e_max_keV=20.0,
                 solid_angle_sr=DEFAULT_SOLID_ANGLE_SR, norm=1.0, secondary=True,
                 l_line_min_keV=0.6, compute_dtype=np.float64):
        self.response = Response(rmf, arf, gain_slope, gain_offset)
        se = np.asarray(solar_energy_keV, float).ravel()
        sf = np.asarray(solar_flux, float)
        if sf.ndim == 1:
            sf = sf[None, :]
        if sf.ndim != 2 or sf.shape[1] != se.size:
            raise ClassXRFError(None, f"solar_flux shape {sf.shape} does not match {se.size} energies",
                                key="solar_flux")
        if np.any(~np.isfinite(sf)) or np.any(sf < 0):
            raise ClassXRFError(None, "solar flux must be finite and non-negative", key="solar_flux")
        if se.size < 2 or np.any(np.diff(se) <= 0):
            raise ClassXRFError(None, "solar energies must increase", key="solar_energy_keV")
        src_edges = bins_from_points(se)
        e_hi = min(e_max_keV, src_edges[-1], self.response.max_true_energy())
        e_lo = max(e_min_keV, src_edges[0])
        self.grid_lo, self.grid_hi = make_grid(e_lo, e_hi, grid_step_keV, edge_aligned)
        self.energy = 0.5 * (self.grid_lo + self.grid_hi)
        self.de = self.grid_hi - self.grid_lo
        self.atomic = atomic_data(self.energy, l_line_min_keV)
        self.solar = rebin_density(src_edges, sf, self.grid_lo, self.grid_hi)  # (n_sp, nE)
        self.solid_angle_sr = float(solid_angle_sr)
        self.norm = float(norm)
        self.secondary = bool(secondary)
        ad = self.atomic
        self._el_onehot = np.zeros((ad.n_lines, len(ELEMENTS)))
        self._el_onehot[np.arange(ad.n_lines), ad.line_element] = 1.0
        self._line_resp = None
        self._scatter_resp = None
        #: float type of the line terms' (spectra, lines, energies) arrays: float64, or float32 where a fit
        #: wants speed (the inversion: its statistic needs far less than float32's 1e-7)
        self.compute_dtype = compute_dtype
        self._casts = {}

    # --- response pieces (cached) ---
    @property
    def n_channels(self):
        return self.response.n_channels

    @property
    def line_response(self):
        """(n_lines, n_chan) counts per line photon cm^-2 (ARF x gain-shifted RMF)."""
        if self._line_resp is None:
            self._line_resp = self.response.counts_per_photon(self.atomic.line_energy)
        return self._line_resp

    @property
    def scatter_response(self):
        """(nE, n_chan) counts per photon cm^-2 in each integration bin."""
        if self._scatter_resp is None:
            self._scatter_resp = self.response.counts_per_photon(self.energy)
        return self._scatter_resp

    def channel_energy(self):
        return self.response.channel_energy()

    # --- physics kernels ---
    def _solar_rows(self, n, solar_index):
        if solar_index is None:
            if self.solar.shape[0] == 1:
                return np.broadcast_to(self.solar, (n, self.solar.shape[1]))
            if self.solar.shape[0] != n:
                raise ClassXRFError(None, f"{self.solar.shape[0]} solar spectra for {n} compositions",
                                    key="solar_flux")
            return self.solar
        return self.solar[np.asarray(solar_index, int)]

    @staticmethod
    def _check_weights(weights):
        w = np.asarray(weights, float)
        if w.ndim == 1:
            w = w[None, :]
        if w.ndim != 2 or w.shape[1] != len(ELEMENTS):
            raise ClassXRFError(None, f"weights must be (n, {len(ELEMENTS)}) fractions of "
                                f"{', '.join(ELEMENTS)}; got {w.shape}", key="weights")
        if np.any(~np.isfinite(w)) or np.any(w < -1e-12):
            raise ClassXRFError(None, "weight fractions must be finite and >= 0", key="weights")
        s = w.sum(axis=1)
        if np.any(np.abs(s - 1.0) > 1e-3):
            raise ClassXRFError(None, f"weight fractions must sum to 1 (got {s.min():.4g}..{s.max():.4g})",
                                key="weights")
        return np.clip(w, 0.0, None)

    def line_slice(self, I0, rel=1e-7):
        """Energy slice of the grid that matters for the lines under the spectra ``I0`` (n, nE):
        from the lowest edge of a modelled line's shell up to where the remaining photo-absorption
        by line shells is below ``rel`` of the total (so faint high-energy tails are skipped)."""
        ad = self.atomic
        xs = ad.line_xs.max(axis=0)
        weight = np.max(np.asarray(I0) * self.de, axis=0) * xs
        nz = np.flatnonzero(weight > 0)
        if nz.size == 0:
            return slice(0, self.energy.size)
        tail = np.cumsum(weight[::-1])[::-1]
        k1 = int(np.flatnonzero(tail >= rel * tail[0])[-1]) + 1
        return slice(int(nz[0]), max(k1, int(nz[0]) + 1))

    def line_terms(self, W, cos_i, cos_e, I0, secondary=None, jacobian=False, sl=None):
        """Line radiances seen by the detector (photons cm^-2 s^-1 sr^-1, i.e. J / cos e).

        ``W`` (n, 8) weight fractions, ``cos_i``/``cos_e`` (n,), ``I0`` (n, nE) photon density on
        the integration grid. Returns dict: ``primary``, ``secondary`` (n, nL); with ``jacobian``
        also ``d_lines`` (n, nL, 8): derivative of primary + secondary by W, exact for the primary,
        with the matrix (attenuation) factors of the secondary held fixed.
        """
        ad = self.atomic
        sec = self.secondary if secondary is None else secondary
        sl = slice(None) if sl is None else sl
        ft = self.compute_dtype
        a = (1.0 / cos_i).astype(ft)
        b = (1.0 / cos_e).astype(ft)
        W = np.asarray(W, ft)
        I0dE = (I0[:, sl] * self.de[sl]).astype(ft, copy=False)
        mu_tot = self._cast("mu_total", sl)
        mu = W @ mu_tot                             # (n, nE)
        mu_l = W @ self._cast("mu_at_lines")        # (n, nL)
        D = a[:, None, None] * mu[:, None, :] + (b[:, None] * mu_l)[:, :, None]
        invD = 1.0 / D                              # (n, nL, nE)
        G = I0dE[:, None, :] * self._cast("line_xs", sl)[None]  # (n, nL, nE)
        GinvD = G * invD
        C = GinvD.sum(axis=-1)                      # (n, nL)
        w_l = W[:, ad.line_element]                 # (n, nL)
        scale = b / FOUR_PI                         # radiance = J / cos e
        primary = w_l * C * scale[:, None]
        out = {"primary": primary}
        if sec and ad.n_lines:
            amu = a[:, None] * mu                   # (n, nE)
            # A_k(E) = ln(1 + a mu(E)/mu(E_k)) / (a mu(E))
            A = np.log1p(amu[:, None, :] / mu_l[:, :, None]) / amu[:, None, :]
            X = G * A
            T1 = np.matmul(X, np.swapaxes(invD, 1, 2))   # (n, k, l)
            T2 = np.matmul(G, np.swapaxes(invD, 1, 2))   # (n, k, l)
            bmu = b[:, None] * mu_l                 # (n, nL): b mu(E_l)
            Bm = np.log1p(bmu[:, :, None] / mu_l[:, None, :]) / bmu[:, :, None]  # (n, l, k)
            coef = 0.5 * (np.swapaxes(T1, 1, 2) + Bm * np.swapaxes(T2, 1, 2))    # (n, l, k)
            c_lk = coef * self._cast("line_xs_at_lines")[None]  # tau_l(E_k)
            s_lk = c_lk * w_l[:, :, None] * w_l[:, None, :]
            secondary_l = s_lk.sum(axis=2) * scale[:, None]
            out["secondary"] = secondary_l
        else:
            c_lk = None
            out["secondary"] = np.zeros_like(primary)
        if jacobian:
            H = GinvD * invD                        # G / D^2
            Hm = H @ mu_tot.T                       # (n, nL, 8): sum_E H mu_m(E)
            Hs = H.sum(axis=-1)                     # (n, nL)
            dC = -(a[:, None, None] * Hm + (b[:, None] * Hs)[:, :, None] * self._cast("mu_at_lines").T[None])
            onehot = self._el_onehot.astype(ft)
            d = onehot[None] * C[:, :, None] + w_l[:, :, None] * dC
            if c_lk is not None:
                # d/dW_m sum_k w_l w_k c_lk = onehot(l,m) sum_k w_k c_lk + w_l sum_k c_lk onehot(k,m)
                d = d + onehot[None] * (c_lk * w_l[:, None, :]).sum(axis=2)[:, :, None]
                d = d + w_l[:, :, None] * (c_lk @ onehot)
            out["d_lines"] = (d * scale[:, None, None]).astype(np.float64)
        out["primary"] = out["primary"].astype(np.float64)
        out["secondary"] = out["secondary"].astype(np.float64)
        return out

    def _cast(self, name, sl=slice(None)):
        """The atomic table ``name`` (its energy columns ``sl``) in :attr:`compute_dtype`, cast once."""
        key = (name, sl.start, sl.stop, np.dtype(self.compute_dtype).str)
        hit = self._casts.get(key)
        if hit is None:
            v = getattr(self.atomic, name)
            hit = np.ascontiguousarray((v[:, sl] if name in ("mu_total", "line_xs") else v), dtype=self.compute_dtype)
            self._casts[key] = hit
        return hit

    def scatter_dcs(self, theta_deg):
        return self.atomic.scatter_dcs(theta_deg)

    def compton_bins(self, theta_deg):
        """Where Compton photons of each grid energy land at scattering angles ``theta_deg`` (n,):
        the grid index ``j`` (n, nE) below E' and the share ``f`` going to ``j + 1``."""
        eprime = compton_energy(self.energy[None, :], np.asarray(theta_deg, float)[:, None])
        x = self.energy
        j = np.clip(np.searchsorted(x, eprime) - 1, 0, x.size - 2)
        f = np.clip((eprime - x[j]) / (x[j + 1] - x[j]), 0.0, 1.0)
        return j, f.astype(self.compute_dtype)

    def scatter_photons(self, W, cos_i, cos_e, I0, theta_deg, dcs=None, bins=None):
        """Scattered photons per integration bin seen by the detector (n, nE), photons cm^-2 s^-1
        sr^-1 per bin (radiance / cos e), Rayleigh at E plus Compton moved to E'. ``dcs`` and
        ``bins`` (:meth:`compton_bins`) may be given when the angles stay fixed over many calls."""
        ad = self.atomic
        ray, com = dcs if dcs is not None else ad.scatter_dcs(theta_deg)
        ft = self.compute_dtype
        a = (1.0 / cos_i).astype(ft)
        b = (1.0 / cos_e).astype(ft)
        W = np.asarray(W, ft)
        I0dE = (I0 * self.de).astype(ft, copy=False)
        mu = W @ self._cast("mu_total")
        sr = np.einsum("nj,nje->ne", W, ray)
        sc = np.einsum("nj,nje->ne", W, com)
        rayl = I0dE * sr / ((a + b)[:, None] * mu)
        # Compton: outgoing energy E', attenuation at E' on the way out
        j, f = bins if bins is not None else self.compton_bins(theta_deg)
        rows = np.arange(W.shape[0])[:, None]
        mu_out = (1.0 - f) * mu[rows, j] + f * mu[rows, j + 1]
        comp = I0dE * sc / (a[:, None] * mu + b[:, None] * mu_out)
        # deposit Compton photons at E' (linear sharing between neighbouring bin centres)
        n, ne = rayl.shape
        idx = (rows * ne + j).ravel()
        dep = np.bincount(idx, ((1.0 - f) * comp).ravel(), minlength=n * ne) \
            + np.bincount(idx + 1, (f * comp).ravel(), minlength=n * ne)
        return ((rayl + dep.reshape(n, ne)) * b[:, None]).astype(np.float64)

    def geometry(self, n, incidence_deg, emission_deg, phase_deg=None):
        """cos i, cos e and the scattering angle (180 - phase) for n spectra. The phase angle
        defaults to ``|incidence - emission|`` (Sun, surface normal and detector in one plane,
        detector on the Sun's side; exact for nadir viewing, e = 0)."""
        inc = _as_angles(incidence_deg, n, "incidence_deg")
        emi = _as_angles(emission_deg, n, "emission_deg")
        if np.any(inc < 0) or np.any(inc >= 90):
            raise ClassXRFError(None, "incidence angle must be in [0, 90) deg from the normal (SOLARANG)",
                                key="incidence_deg")
        if np.any(emi < 0) or np.any(emi >= 90):
            raise ClassXRFError(None, "emission angle must be in [0, 90) deg from the normal (EMISNANG)",
                                key="emission_deg")
        phase = np.abs(inc - emi) if phase_deg is None else _as_angles(phase_deg, n, "phase_deg")
        return np.cos(np.deg2rad(inc)), np.cos(np.deg2rad(emi)), 180.0 - phase

    def components(self, weights, incidence_deg, emission_deg, exposure_s=1.0, scatter_norm=1.0,
                   phase_deg=None, solar_index=None):
        """All parts of the model. Returns a dict with ``primary``/``secondary`` line radiances
        (n, nL) (photons cm^-2 s^-1 sr^-1), ``scatter`` (n, nE) scattered photons per bin,
        ``line_counts``, ``scatter_counts``, ``counts`` (n, n_chan) and ``line_names``."""
        W = self._check_weights(weights)
        n = W.shape[0]
        cos_i, cos_e, theta = self.geometry(n, incidence_deg, emission_deg, phase_deg)
        I0 = self._solar_rows(n, solar_index)
        expo = _as_angles(exposure_s, n, "exposure_s")
        if np.any(expo <= 0):
            raise ClassXRFError(None, "exposure must be positive", key="exposure_s")
        snorm = _as_angles(scatter_norm, n, "scatter_norm")
        lt = self.line_terms(W, cos_i, cos_e, I0)
        sc = self.scatter_photons(W, cos_i, cos_e, I0, theta)
        k = (expo * self.solid_angle_sr * self.norm)[:, None]
        line_counts = k * ((lt["primary"] + lt["secondary"]) @ self.line_response)
        scatter_counts = k * snorm[:, None] * (sc @ self.scatter_response)
        return {"primary": lt["primary"], "secondary": lt["secondary"], "scatter": sc,
                "line_counts": line_counts, "scatter_counts": scatter_counts,
                "counts": line_counts + scatter_counts, "line_names": self.atomic.line_names}

    def counts(self, weights, incidence_deg, emission_deg, exposure_s, scatter_norm=1.0,
               phase_deg=None, solar_index=None):
        """Expected counts per channel (n, n_chan), without background, for weight fractions
        ``weights`` (n, 8) in the order of ELEMENTS (summing to 1), angles from the surface
        normal (deg), exposure (s). ``solar_index`` picks solar spectra (rows of ``solar_flux``)
        per composition; by default row k goes with composition k (or the single spectrum with all)."""
        return self.components(weights, incidence_deg, emission_deg, exposure_s, scatter_norm,
                               phase_deg, solar_index)["counts"]
