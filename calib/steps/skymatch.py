"""skymatch: sky levels of the members of a Level-3 imaging association.

As jwst's skymatch step does (jwst documentation "skymatch"), with stcal's sky matching
(``stcal.skymatch``, which jwst's step calls): each member (or each exposure group of
members, by the association library's ``group_indices``) becomes a ``SkyImage`` of its
SCI array, its good-pixel mask (DQ without the ``dqbits`` "bad" bits, and finite), its
gwcs forward and inverse transforms and the clipped sky statistic of the parameters;
``skymatch`` then computes the sky of each ("local", "global") or the differences of the
skies in their overlaps ("match", the default, with ``match_down``); the overlap masks
stcal rasterizes with gwcs's ``region.Polygon.scan`` (a Python loop per scan line, once per
overlapping pair: quadratic in the members) are filled by :func:`scan_polygon`, the same
scan-line algorithm compiled (identical masks, tested against gwcs). The level is written
to ``meta.background`` (``level``, ``method``, ``subtracted``) and, with ``subtract``, taken
from SCI. Units: SCI's (MJy/sr).
"""
from __future__ import annotations

import contextlib

import numba
import numpy as np

from calib.errors import InputError
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, Param
from calib.step import StepSpec

__all__ = ["STEP", "match_sky", "scan_polygon"]

#: gwcs.region's tolerance of a zero determinant (an edge parallel to the scan line)
_INTERSECT_ATOL = 1e2 * np.finfo(float).eps


@numba.njit(cache=True)
def _scan_polygon(vx, vy, bx, by, bw, bh, shiftx, shifty, data):
    ny, nx = data.shape
    ne = vx.size - 1
    active = np.zeros(ne, np.bool_)
    xs = np.empty(ne, np.int64)
    scline = bh + by
    for y in range(by, scline + 1):
        if y < scline:
            for e in range(ne):             # gwcs's update_AET: join at ymin, leave at ymax
                y0, y1 = vy[e], vy[e + 1]
                if y0 != y1 and min(y0, y1) == y and not active[e]:
                    active[e] = True
            for e in range(ne):
                if active[e] and max(vy[e], vy[e + 1]) == y:
                    active[e] = False
        if bw <= 0:
            continue
        k = 0
        for e in range(ne):
            if not active[e]:
                continue
            u0, u1 = vx[e + 1] - vx[e], vy[e + 1] - vy[e]
            d = u0 * 0 - u1 * bw            # _det(u, v) with v = (bw, 0)
            if abs(d) < _INTERSECT_ATOL:
                x = np.float64(vx[e])
            else:
                t = np.float64(bw * (vy[e] - y)) / np.float64(d)     # _det(v, w) / D
                x = t * u0 + vx[e]
            xs[k] = int(np.ceil(x))
            k += 1
        ysh = y + shifty
        if ysh < 0 or ysh >= ny:
            continue
        xv = np.sort(xs[:k])
        for p in range(k // 2):
            x0 = max(0, xv[2 * p] + shiftx)
            stop = min(xv[2 * p + 1] + shiftx, nx - 1) + 1
            if stop < 0:                    # gwcs fills data[y][x0:stop]: a negative stop counts from the end
                stop = max(stop + nx, 0)
            for x in range(x0, stop):
                data[ysh, x] = True


def scan_polygon(polygon, data: np.ndarray) -> np.ndarray:
    """Set the pixels of a gwcs ``region.Polygon`` in a boolean mask, as its ``scan`` does.

    Parameters
    ----------
    polygon : gwcs.region.Polygon
        The polygon (its rounded, shifted vertices, bounding box and shifts as gwcs made them).
    data : numpy.ndarray
        bool (ny, nx), updated in place.

    Returns
    -------
    numpy.ndarray
        ``data``. gwcs's scan-line fill (the edges active on each scan line: joined at their
        lower end and dropped at their upper end, except on the last line; the crossings
        ``ceil(t u_x + x_start)`` with gwcs's determinant arithmetic, sorted, filled in
        pairs, clipped to the array, a pair left of the array filling the row up to ``nx +
        end`` as gwcs's negative slice end does), in one compiled loop instead of gwcs's Python loop
        that builds an ``Edge`` per scan line (~0.1 s per full frame). stcal's skymatch calls
        it once per overlapping pair of images.
    """
    v = np.asarray(polygon._vertices, np.int64)
    bx, by, bw, bh = (int(b) for b in polygon._bbox)
    _scan_polygon(np.ascontiguousarray(v[:, 0]), np.ascontiguousarray(v[:, 1]), bx, by, bw, bh,
                  int(polygon._shiftx), int(polygon._shifty), data)
    return data


@contextlib.contextmanager
def _fast_polygon_scan():
    """Make gwcs's ``region.Polygon.scan`` :func:`scan_polygon` inside the block (put back on exit)."""
    from gwcs import region

    saved = region.Polygon.scan
    region.Polygon.scan = scan_polygon
    try:
        yield
    finally:
        region.Polygon.scan = saved


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
    # jwst's step passes a deep copy; stcal only calls the two methods, which leave the gwcs as
    # it is, so the member's own is used (a copy costs ~0.12 s per member)
    wcs = model.meta.wcs
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
    with _fast_polygon_scan():
        skymatch(images, skymethod=params["skymethod"], match_down=params["match_down"],
                 subtract=params["subtract"])
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
