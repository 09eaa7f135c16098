"""skymatch: sky levels of the members of a Level-3 imaging association.

As jwst's skymatch step does (jwst documentation "skymatch"), with stcal's sky matching
(``stcal.skymatch``, which jwst's step calls): each member (or each exposure group of
members, by the association library's ``group_indices``) becomes a ``SkyImage`` of its
SCI array, its good-pixel mask (DQ without the ``dqbits`` "bad" bits, and finite), its
gwcs forward and inverse transforms and the clipped sky statistic of the parameters;
``skymatch`` then computes the sky of each ("local", "global") or the differences of the
skies in their overlaps ("match", the default, with ``match_down``). The level is written
to ``meta.background`` (``level``, ``method``, ``subtracted``) and, with ``subtract``, taken
from SCI. Units: SCI's (MJy/sr).
"""
from __future__ import annotations

from copy import deepcopy

import numpy as np

from calib.errors import InputError
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, Param
from calib.step import StepSpec

__all__ = ["STEP", "match_sky"]


def _sky_image(model, index: int, stats, params: dict, dqbits):
    from astropy.nddata.bitmask import bitfield_to_boolean_mask
    from stcal.skymatch import SkyImage

    good = np.isfinite(model.data)
    if dqbits is not None:
        good &= bitfield_to_boolean_mask(model.dq, dqbits, good_mask_value=True, dtype="bool")
    bg = model.meta.background
    if bg.subtracted is not None and bg.subtracted != params["subtract"]:
        raise InputError(f"{model.meta.filename}: skymatch's 'subtract' ({params['subtract']}) disagrees with "
                         f"the background already recorded (subtracted={bg.subtracted})")
    wcs = deepcopy(model.meta.wcs)
    im = SkyImage(image=model.data, wcs_fwd=wcs.__call__, wcs_inv=wcs.invert, mask=good,
                  sky_id=model.meta.filename, skystat=stats, stepsize=params["stepsize"], meta={"index": index})
    if params["subtract"]:
        im.sky = bg.level if bg.subtracted else 0.0
    return im


def match_sky(models: list, groups: list[list[int]], params: dict) -> list[str]:
    """Compute (and optionally subtract) the sky of each image, in place.

    Parameters
    ----------
    models : list of ImageModel
        The members: SCI float32 (ny, nx) (MJy/sr), DQ uint32, gwcs ``meta.wcs``.
    groups : list of list of int
        Indices of ``models`` per exposure group (images of one exposure share one sky).
    params : dict
        The step's resolved parameters (jwst's names: skymethod, match_down, subtract,
        stepsize, skystat, dqbits, lower, upper, nclip, lsigma, usigma, binwidth).

    Returns
    -------
    list of str
        "COMPLETE" or "SKIPPED" per model (SKIPPED where no valid sky could be computed).
    """
    from astropy.nddata.bitmask import interpret_bit_flags
    from stcal.skymatch import SkyGroup, SkyStats, skymatch
    from stdatamodels.jwst.datamodels.dqflags import pixel

    dqbits = interpret_bit_flags(params["dqbits"], flag_name_map=pixel)
    stats = SkyStats(skystat=params["skystat"], lower=params["lower"], upper=params["upper"], nclip=params["nclip"],
                     lsig=params["lsigma"], usig=params["usigma"], binwidth=params["binwidth"])
    images = []
    for gid, inds in enumerate(groups):
        sky = [_sky_image(models[i], i, stats, params, dqbits) for i in inds]
        images.extend(sky) if len(sky) == 1 else images.append(SkyGroup(sky, sky_id=gid))
    skymatch(images, skymethod=params["skymethod"], match_down=params["match_down"], subtract=params["subtract"])
    status = ["SKIPPED"] * len(models)
    for im in [g for item in images for g in (item if isinstance(item, SkyGroup) else [item])]:
        i = im.meta["index"]
        if im.is_sky_valid:
            bg = models[i].meta.background
            bg.method, bg.level, bg.subtracted = str(params["skymethod"]), im.sky, params["subtract"]
            if params["subtract"]:
                models[i].data[...] = im.image[...]
            status[i] = "COMPLETE"
    return status


def _run(state, ctx) -> str:
    p = dict(ctx.params)
    if p["skymethod"] == "user":
        raise InputError("skymatch: skymethod 'user' (sky values from a skylist file) is not implemented by the "
                         "calib engine; use the jwst engine")
    if len(state.models) < 2 and p["skymethod"] == "match":
        return "SKIPPED"            # jwst turns skymatch off for one image with 'match'
    with state.library:
        groups = [list(v) for v in state.library.group_indices.values()]
    status = match_sky(state.models, groups, p)
    for model, s in zip(state.models, status, strict=True):
        model.meta.cal_step.skymatch = s
    return "COMPLETE" if "COMPLETE" in status else "SKIPPED"


STEP = StepSpec(
    name="skymatch", jwst_class="jwst.skymatch.SkyMatchStep", run=_run,
    params=(Param("skymethod", "option", "match", choices=("local", "global", "match", "global+match", "user"),
                  doc="how the sky is computed"),
            Param("match_down", "boolean", True, doc="match skies to the lowest"),
            Param("subtract", "boolean", False, doc="subtract the sky from SCI"),
            Param("skylist", "string", None, support=SUPPORT_DEFAULT_ONLY, doc="user sky values (skymethod user)"),
            Param("stepsize", "integer", None, doc="largest vertex separation of the bounding polygon, px"),
            Param("skystat", "option", "mode", choices=("median", "midpt", "mean", "mode"), doc="sky statistic"),
            Param("dqbits", "string", "~DO_NOT_USE+NON_SCIENCE", doc="DQ bits of good pixels"),
            Param("lower", "float", None, doc="lowest good pixel value, MJy/sr"),
            Param("upper", "float", None, doc="highest good pixel value, MJy/sr"),
            Param("nclip", "integer", 5, min=0, doc="clipping iterations"),
            Param("lsigma", "float", 4.0, min=0.0, doc="lower clipping limit, sigma"),
            Param("usigma", "float", 4.0, min=0.0, doc="upper clipping limit, sigma"),
            Param("binwidth", "float", 0.1, min=0.0, doc="bin width of mode/midpt, sigma"),
            Param("in_memory", "boolean", True, support=SUPPORT_IGNORED, doc="keep models in memory")),
    doc="stcal's sky statistics and matching over the members' overlaps (as jwst's skymatch).",
)
