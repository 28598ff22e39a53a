"""The stages as tasks: files in, files out, a JSON-serialisable summary back.

Each task reads its inputs, calls the science core and writes its outputs (atomically), so that
the QGIS algorithms, the command line and batch runs on a cluster share one implementation. The
QGIS glue runs them in a separate Python process through :mod:`worker` (see there why).
Every task takes ``progress`` (see :mod:`progress`) and keyword arguments of plain types.
"""
import os

import numpy as np


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return x


def simulate(folder, seed=42, region=(3, 4), tracks=24, flare_class="C", rmf=None, arf=None, progress=None):
    """classxrf:simulate: write the synthetic data set into ``folder``."""
    from .simulate import SimulationConfig
    from .simulate import simulate as run

    from . import transact

    use_real = bool(rmf and arf)
    cfg = SimulationConfig(seed=int(seed), region=tuple(int(v) for v in region), n_tracks=int(tracks),
                           flare_classes=(flare_class,), rmf=rmf if use_real else None,
                           arf=arf if use_real else None)
    transact.recover(folder)
    with transact.Transaction(folder) as tx:      # the data set appears whole or not at all
        staging = tx.tree(folder)
        res = run(staging, cfg, progress=progress)

    def final(path):
        return os.path.join(os.path.abspath(os.fspath(folder)), os.path.relpath(os.fspath(path), staging))
    return _jsonable(dict(folder=os.path.abspath(os.fspath(folder)), albedo=final(res.albedo), truth=final(res.truth),
                          frames=final(res.frames_folder), xsm=final(res.xsm_folder), rmf=final(res.rmf),
                          arf=final(res.arf), background=final(res.background),
                          solar=final(res.solar_tables[flare_class]), n_frames=res.n_frames))


def coadd(inputs, out_folder, out_layer, strategy="sliding", window=12, stride=1, flare_catalog=None,
          allowed_classes=("B", "C", "M"), respfile=None, ancrfile=None, backfile=None, make_background=False,
          min_frames=None, progress=None):
    """classxrf:coadd: co-added PHA files in ``out_folder`` and the observation layer ``out_layer``,
    written together or not at all. The summary counts the frames no spectrum uses, by reason, with
    examples (``unused``)."""
    from . import coadd as core

    res = core.coadd_folder(inputs, out_folder, strategy=strategy, window=int(window), stride=int(stride),
                            flare_catalog=flare_catalog or None, allowed_classes=tuple(allowed_classes),
                            respfile=respfile or None, ancrfile=ancrfile or None, backfile=backfile or None,
                            make_background=bool(make_background),
                            min_frames=None if min_frames in (None, "", 0) else int(min_frames),
                            output_layer=out_layer, progress=progress)
    import re
    by_reason = {}
    for path, why in res.unused:                  # grouped by the reason with its numbers taken out
        key = re.sub(r"\d+(\.\d+)?", "N", why.split(" (")[0].split(":")[0])
        by_reason.setdefault(key, []).append(f"{os.path.basename(path)}: {why}")
    return _jsonable(dict(layer=out_layer, n_spectra=len(res.geometries), background=res.background_path,
                          n_read=res.n_frames_read, n_rejected=res.n_frames_rejected, n_unused=len(res.unused),
                          unused={k: dict(n=len(v), examples=v[:3]) for k, v in by_reason.items()}))


def solarfit(layer, out_layer, xsm, out_folder, arf=None, rmf=None, two_temp=False, plot=False, progress=None):
    """classxrf:solarfit: I0 tables in ``out_folder`` and the layer with the solar columns added."""
    from . import geo
    from . import solarfit as core

    from . import transact

    geoms, attrs, _ = geo.read_vector(layer)
    geo.require_columns(layer, attrs, ["t_start", "t_end"])
    for folder in (os.fspath(out_folder), os.path.dirname(os.path.abspath(os.fspath(out_layer)))):
        transact.recover(folder)
    with transact.Transaction(out_folder) as tx:    # the I0 tables and the layer appear together
        cols = core.fit_observations(attrs["t_start"], attrs["t_end"], xsm, out_folder, arf=arf or None,
                                     rmf=rmf or None, two_temp=bool(two_temp), plot=bool(plot),
                                     obs_ids=attrs.get("obs_id"), progress=progress, place=tx.path)
        attrs.update(cols)
        geo.write_vector(tx.path(out_layer), geoms, attrs)
        progress is None or progress.check()
    return dict(layer=os.fspath(out_layer), n=len(geoms),
                n_missing=int(sum(1 for f in cols["solar_file"] if not f)))


def invert(layer, out_layer, rmf, arf, background, solar=None, gain_slope=1.0, gain_offset=0.0,
           e_range=(0.9, 4.2), oxygen="stoichiometric", fit_norm=True, gain_fit="none", statistic="cstat",
           plot_dir=None, progress=None):
    """classxrf:invert: the layer with the abundance columns added. The summary says how many fits
    were flagged and why, what the response reading did, and which element the fits constrain
    most often (``best_element``, the one to style the layer by)."""
    from . import geo
    from . import invert as core
    from . import transact
    from .choices import STYLE_PREFERENCE
    from .composition import ELEMENTS

    geoms, attrs, _ = geo.read_vector(layer)
    root = os.path.dirname(os.path.abspath(os.fspath(out_layer)))
    for folder in [root] + ([os.fspath(plot_dir)] if plot_dir else []):
        transact.recover(folder)
    with transact.Transaction(root) as tx:       # the layer and the plots appear together or not at all
        cols, res = core.invert_layer(layer, rmf=rmf, arf=arf, background=background, solar=solar or None,
                                      gain_slope=float(gain_slope), gain_offset=float(gain_offset),
                                      e_range=tuple(float(v) for v in e_range), oxygen=oxygen,
                                      fit_norm=bool(fit_norm), gain_fit=gain_fit, statistic=statistic,
                                      plot_dir=plot_dir or None, progress=progress, place=tx.path)
        attrs.update(cols)
        geo.write_vector(tx.path(out_layer), geoms, attrs)
        progress is None or progress.check()
    flagged = {}
    for code, note in zip(res.flag, res.note):
        if code:
            flagged.setdefault(f"{int(code)} {core.FIT_FLAGS[int(code)]}", []).append(note)
    n_ok = res.ok[res.flag == 0].sum(axis=0) if np.any(res.flag == 0) else np.zeros(len(ELEMENTS))
    order = [ELEMENTS.index(e) for e in STYLE_PREFERENCE]
    best = max(order, key=lambda k: (n_ok[k], -order.index(k)))
    return _jsonable(dict(layer=os.fspath(out_layer), n=len(geoms), n_converged=int(np.sum(res.converged)),
                          n_fitted=int(np.sum(res.flag == 0)),
                          flagged={k: dict(n=len(v), example=v[0]) for k, v in flagged.items()},
                          notes=res.notes, best_element=ELEMENTS[best],
                          constrained={el: int(n_ok[k]) for k, el in enumerate(ELEMENTS)},
                          median_redchi=float(np.nanmedian(res.chi2 / np.maximum(res.dof, 1)))
                          if np.any(res.flag == 0) else None))


def populate(layer, albedo, gib_folder, points_output, sub_size_km=None, prior="fraction", progress=None):
    """classxrf:populate: update the GIB in ``gib_folder`` and write this run's sub-footprints."""
    from . import gib

    summary = gib.populate_layer(layer, albedo, gib_folder, points_output=points_output, progress=progress,
                                 sub_size_km=sub_size_km or None, prior=prior)
    return _jsonable(summary)


def basemap(source, output, west=-180.0, progress=None):
    """classxrf:basemap: a lunar GeoTIFF basemap from an albedo raster or equirectangular image."""
    from .basemap import make_basemap

    res = make_basemap(source, output, west=float(west), progress=progress)
    return _jsonable(dict(path=res.path, kind=res.kind, width=res.width, height=res.height, bands=res.bands,
                          bounds=res.bounds, crs=res.crs, overviews=res.overviews, copied=res.copied))


def superresolve(gib, albedo, region, output, curve_output=None, settings=None, device="cpu", extent=None,
                 progress=None):
    """classxrf:superresolve: the GATv2 + CNN hybrid map of region (i, j) from the GIB and the albedo.

    ``gib``: the GIB folder (its ``gib_r{i}_c{j}.tif`` is used) or a region raster; ``extent``
    (west, south, east, north, lunar degrees), when given, picks the region by its centre (an extent
    reaching past a pole is an error, not a clamp). Writes the GeoTIFF (8 element bands +
    ``support_km``) and, when asked, the training curve CSV."""
    from . import geo
    from . import gib as gib_mod
    from .errors import ClassXRFError

    if extent is not None:
        w, s, e, n = (float(v) for v in extent)
        if not (-90.0 <= s <= n <= 90.0) or not all(np.isfinite([w, s, e, n])) or w > e:
            raise ClassXRFError(None, f"the extent ({w:g}, {s:g}, {e:g}, {n:g}) is not on the Moon: latitudes must "
                                      f"lie in -90..90 and west <= east", key="EXTENT")
        region = geo.region_of(0.5 * (s + n), 0.5 * (w + e))
    i, j = (int(v) for v in region)
    if not (0 <= i < geo.N_REGION_ROWS and 0 <= j < geo.N_REGION_COLS):
        raise ClassXRFError(None, f"region ({i}, {j}) does not exist: i is 0..{geo.N_REGION_ROWS - 1}, j is "
                                  f"0..{geo.N_REGION_COLS - 1}", key="REGION")
    from .superres.train import superresolve_region, write_superres_geotiff, write_training_curve
    tif = gib_mod.region_path(gib, i, j) if os.path.isdir(gib) else gib
    if not os.path.exists(tif):
        raise ClassXRFError(tif, f"no GIB raster for region ({i}, {j}): populate footprints of that region first")
    pred, support, curve = superresolve_region(tif, albedo, (i, j), settings=settings, device=device,
                                               progress=progress)
    write_superres_geotiff(output, pred, support, (i, j))
    if curve_output:
        write_training_curve(curve_output, curve)
    observed = np.isfinite(support) & (support == 0)
    return dict(output=os.fspath(output), curve=None if not curve_output else os.fspath(curve_output),
                region=[i, j], n_observed=int(observed.sum()), n_steps=len(curve),
                final_loss=float(curve[-1]["loss"]) if curve and "loss" in curve[-1] else None)


TASKS = {f.__name__: f for f in (simulate, coadd, solarfit, invert, populate, basemap, superresolve)}
