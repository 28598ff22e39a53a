"""The stages: a spec in, files in, files out, a summary back.

Each stage takes its spec (:mod:`specs`), reads its inputs, calls the science core (which takes
and returns arrays and plain objects), writes its outputs (atomically, all or nothing: see
:mod:`transact`) and returns a summary of plain values. The QGIS algorithms (through the worker
process, :mod:`worker`), the command line (:mod:`cli`) and batch scripts share them::

    from class_qgis_plugin import tasks
    tasks.run("invert", layer="obs.gpkg", out_layer="abund.gpkg", rmf="class.rmf", arf="class.arf",
              background="bkg.pha", gain_fit="shared")

Every stage takes ``progress`` (see :mod:`progress`).
"""
import os
import re

import numpy as np

from . import obslayer, transact
from .errors import ClassXRFError
from .specs import SPECS, Spec


def _layer_folder(path):
    return os.path.dirname(os.path.abspath(os.fspath(path)))


def _open(roots, stage_root, layer=None):
    """The transaction of a stage: what killed runs left in ``roots`` completed or cleaned first;
    a layer path taken by a folder is refused before anything is written."""
    if layer is not None and os.path.isdir(layer):
        raise ClassXRFError(layer, "the layer cannot be written: a folder of that name is in the way")
    for folder in roots:
        transact.recover(transact.output_folder(folder))
    return transact.open_transaction(stage_root)


def simulate(p, progress=None):
    """classxrf:simulate: the synthetic data set written into ``p.folder``, whole or not at all."""
    from .simulate import SimulationConfig
    from .simulate import simulate as run

    cfg = SimulationConfig(seed=p.seed, region=(p.region_i, p.region_j), n_tracks=p.tracks,
                           flare_classes=p.flare_classes, rmf=p.rmf, arf=p.arf, across_km=p.frame_across_km,
                           along_km=p.frame_along_km, step_km=p.frame_step_km, orbit_gap_s=p.track_gap_s,
                           regions_across=p.regions_across)
    folder = os.path.abspath(p.folder)
    with _open([folder], folder) as tx:
        staging = tx.tree(folder)
        res = run(staging, cfg, progress=progress)

    def final(path):
        return os.path.join(folder, os.path.relpath(os.fspath(path), staging))
    return dict(folder=folder, albedo=final(res.albedo), truth=final(res.truth), frames=final(res.frames_folder),
                xsm=final(res.xsm_folder), rmf=final(res.rmf), arf=final(res.arf),
                background=final(res.background), solar=final(res.solar_tables[p.flare_classes[0]]),
                n_frames=res.n_frames)


def _group_unused(unused):
    """Frames no spectrum uses, grouped by the reason with its numbers taken out."""
    by_reason = {}
    for path, why in unused:
        key = re.sub(r"\d+(\.\d+)?", "N", why.split(" (")[0].split(":")[0])
        by_reason.setdefault(key, []).append(f"{os.path.basename(path)}: {why}")
    return {k: dict(n=len(v), examples=v[:3]) for k, v in by_reason.items()}


def coadd(p, progress=None):
    """classxrf:coadd: co-added PHA files in ``p.out_folder`` and the observation layer
    ``p.out_layer``, written together or not at all. The summary counts the frames no spectrum
    uses, by reason, with examples (``unused``)."""
    from . import coadd as core
    from .progress import as_progress

    prog = as_progress(progress)
    with _open([p.out_folder, _layer_folder(p.out_layer)], p.out_folder, p.out_layer) as tx:
        res = core.coadd_folder(p.inputs if len(p.inputs) > 1 or not os.path.isdir(p.inputs[0]) else p.inputs[0],
                                p.out_folder, strategy=p.strategy, window=p.window, stride=p.stride,
                                flare_catalog=p.flare_catalog, allowed_classes=p.allowed_classes, respfile=p.rmf,
                                ancrfile=p.arf, backfile=p.background, make_background=p.make_background,
                                min_frames=p.min_frames or None, progress=progress, place=tx.path)
        prog.set(0.98, "writing the observation layer")
        obslayer.write(tx.path(p.out_layer), res.geometries, res.attributes)
        prog.check()
    return dict(layer=p.out_layer, n_spectra=len(res.geometries), background=res.background_path,
                n_read=res.n_frames_read, n_rejected=res.n_frames_rejected, n_unused=len(res.unused),
                unused=_group_unused(res.unused))


def solarfit(p, progress=None):
    """classxrf:solarfit: I0 tables in ``p.out_folder`` and the layer with the solar columns added."""
    from . import solarfit as core

    geoms, attrs = obslayer.read(p.layer, "solarfit")
    with _open([p.out_folder, _layer_folder(p.out_layer)], p.out_folder, p.out_layer) as tx:
        cols = core.fit_observations(attrs["t_start"], attrs["t_end"], p.xsm, p.out_folder, arf=p.xsm_arf,
                                     rmf=p.xsm_rmf, two_temp=p.two_temp, plot=p.plots, obs_ids=attrs.get("obs_id"),
                                     progress=progress, place=tx.path)
        obslayer.write(tx.path(p.out_layer), geoms, obslayer.add(attrs, "solarfit", cols))
        progress is None or progress.check()
    return dict(layer=p.out_layer, n=len(geoms), n_missing=int(sum(1 for f in cols["solar_file"] if not f)))


def invert_summary(res):
    """The invert stage's summary of an :class:`invert.InversionResult`: how many fits were
    flagged and why (an example note each), what the response reading did, how often each element
    is constrained, and the element the fits constrain most often (``best_element``, the one to
    style the layer by; ties go by :data:`choices.STYLE_PREFERENCE`)."""
    from .choices import ELEMENTS, STYLE_PREFERENCE
    from .invert import FIT_FLAGS

    flagged = {}
    for code, note in zip(res.flag, res.note):
        if code:
            flagged.setdefault(f"{int(code)} {FIT_FLAGS[int(code)]}", []).append(note)
    good = res.flag == 0
    n_ok = res.ok[good].sum(axis=0) if np.any(good) else np.zeros(len(ELEMENTS))
    order = [ELEMENTS.index(e) for e in STYLE_PREFERENCE]
    best = max(order, key=lambda k: (n_ok[k], -order.index(k)))
    return dict(n=len(res.flag), n_converged=int(np.sum(res.converged)), n_fitted=int(np.sum(good)),
                flagged={k: dict(n=len(v), example=v[0]) for k, v in flagged.items()}, notes=list(res.notes),
                best_element=ELEMENTS[best], constrained={el: int(n_ok[k]) for k, el in enumerate(ELEMENTS)},
                median_redchi=float(np.nanmedian(res.chi2[good] / np.maximum(res.dof[good], 1)))
                if np.any(good) else None)


def invert(p, progress=None):
    """classxrf:invert: the layer with the abundance columns added (and the fit plots), together or
    not at all. The summary is :func:`invert_summary`'s."""
    from . import invert as core

    geoms, attrs = obslayer.read(p.layer, "invert")
    root = _layer_folder(p.out_layer)
    with _open([root] + ([p.plot_dir] if p.plot_dir else []), root, p.out_layer) as tx:
        cols, res = core.invert_observations(attrs, rmf=p.rmf, arf=p.arf, background=p.background, solar=p.solar,
                                             gain_slope=p.gain_slope, gain_offset=p.gain_offset, e_range=p.e_range,
                                             oxygen=p.oxygen_model, fit_norm=p.fit_norm, gain_fit=p.gain_fit,
                                             statistic=p.statistic, plot_dir=p.plot_dir, progress=progress,
                                             place=tx.path, base=_layer_folder(p.layer), source=p.layer)
        obslayer.write(tx.path(p.out_layer), geoms, obslayer.add(attrs, "invert", cols))
        progress is None or progress.check()
    return dict(invert_summary(res), layer=p.out_layer)


def populate(p, progress=None):
    """classxrf:populate: the GIB in ``p.gib_folder`` updated from the abundance layer ``p.layer`` and
    this run's sub-footprints written as points to ``p.points_output``, together or not at all.
    The summary is :func:`gib.populate`'s."""
    from . import geo, gib
    from .progress import as_progress

    prog = as_progress(progress)
    prog.set(0.0, "reading the abundance layer")
    geoms, attrs = obslayer.read(p.layer, "populate")
    folder = gib.open_folder(p.gib_folder)
    with _open([_layer_folder(p.points_output)], folder, p.points_output) as tx:
        pts, pattrs, summary = gib.populate(geoms, attrs, p.albedo, folder, source=p.layer,
                                            sub_size_km=p.sub_size_km or None, prior=p.prior, progress=prog,
                                            place=tx)
        geo.write_vector(tx.path(p.points_output), pts, pattrs)
        summary["files"].append(str(p.points_output))
        prog.check()
    prog.set(1.0, "GIB updated")
    return dict(summary, points_output=str(p.points_output))


def basemap(p, progress=None):
    """classxrf:basemap: a lunar GeoTIFF basemap from an albedo raster or equirectangular image."""
    from .basemap import make_basemap

    res = make_basemap(p.source, p.output, west=float(p.west), progress=progress)
    return dict(path=res.path, kind=res.kind, width=res.width, height=res.height, bands=res.bands,
                bounds=res.bounds, crs=res.crs, overviews=res.overviews, copied=res.copied)


def superresolve(p, progress=None):
    """classxrf:superresolve: the GATv2 + CNN hybrid map of a region from the GIB and the albedo.

    The region is ``(p.region_i, p.region_j)`` or the one holding the centre of ``p.extent``; the
    GIB is a folder (its raster of that region is used) or a region raster. Writes the GeoTIFF (8
    element bands + ``support_km``) and, when asked, the training curve CSV."""
    from . import gib as gib_mod
    from .superres.train import superresolve_region, write_superres_geotiff, write_training_curve

    i, j = p.region
    tif = gib_mod.region_path(p.gib, i, j) if os.path.isdir(p.gib) else p.gib
    if not os.path.exists(tif):
        raise ClassXRFError(tif, f"no GIB raster for region ({i}, {j}): populate footprints of that region first")
    pred, support, curve = superresolve_region(tif, p.albedo, (i, j), settings=p.training_settings(),
                                               device=p.device, progress=progress)
    write_superres_geotiff(p.output, pred, support, (i, j))
    if p.curve_output:
        write_training_curve(p.curve_output, curve)
    observed = np.isfinite(support) & (support == 0)
    return dict(output=p.output, curve=p.curve_output, region=[i, j], n_observed=int(observed.sum()),
                n_steps=len(curve), final_loss=float(curve[-1]["loss"]) if curve and "loss" in curve[-1] else None)


def archive(p, progress=None):
    """classxrf:archive: every day of the archive through coadd, solarfit and invert (the stages
    above, scheduled on Dask or serially), then the GIB; resumable (:func:`archive.run_archive`)."""
    from .archive import run_archive
    return run_archive(p, progress)


STAGES = {f.__name__: f for f in (simulate, coadd, solarfit, invert, populate, basemap, superresolve, archive)}
assert set(STAGES) == set(SPECS)


def run(stage, params=None, progress=None, **values):
    """Run ``stage`` with a spec, or a dict / keyword arguments of its fields (checked by the spec:
    an unknown name or a bad value is a :class:`ClassXRFError` naming it). Returns the summary."""
    if stage not in STAGES:
        raise ClassXRFError(None, f"unknown stage {stage!r} (known: {', '.join(sorted(STAGES))})")
    if isinstance(params, Spec):
        if values:
            raise TypeError("give a spec or values, not both")
        spec = params.check()
    else:
        spec = SPECS[stage].from_dict(dict(params or {}, **values))
    return STAGES[stage](spec, progress)
