"""tweakreg: relative alignment of the members of a Level-3 imaging association.

As jwst's tweakreg step does (jwst documentation "tweakreg"): in each member, point sources
are found on the background-subtracted SCI (background and RMS as
:func:`calib.steps.source_catalog.estimate_background`, ``bkg_boxsize`` meshes) with
photutils' ``IRAFStarFinder`` (jwst's default ``starfinder``; threshold ``snr_threshold``
times the median RMS, ``kernel_fwhm``, sharpness/roundness ranges, ``brightest``; its
circular local-maximum search done by :func:`calib.detection.circular_peaks`, the same
mask computed in numba instead of photutils' Python loop over ~200,000 candidates, its
convolution by :func:`calib.detection.filter_constant`), kept
within the WCS bounding box; the catalogs of the exposure groups are matched and fitted
with tweakwcs (``JWSTWCSCorrector``) through stcal's ``relative_align`` (2-D histogram
initial offset, xyxymatch ``searchrad``/``separation``/``tolerance``, ``fitgeometry``
with ``nclip`` sigma clipping); each member whose fit succeeded gets the corrected gwcs,
S_REGION and the FITS SIP approximation (jwst's ``update_s_region_imaging`` and
``update_fits_wcsinfo``, as assign_wcs). Only the built-in catalogs and relative
alignment are implemented (no custom catalogs, no absolute reference catalog).
"""
from __future__ import annotations

import contextlib
import logging
import warnings

import numpy as np

from calib.errors import InputError
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, Param
from calib.step import StepSpec

__all__ = ["STEP", "find_stars", "align_members"]


def find_stars(model, params: dict):
    """Point sources of one member, as jwst's tweakreg finds them (photutils IRAFStarFinder).

    Parameters
    ----------
    model : ImageModel
        A member: SCI float32 (ny, nx) MJy/sr, DQ uint32, gwcs.
    params : dict
        The step's resolved parameters.

    Returns
    -------
    astropy.table.Table
        Columns ``id``, ``x``, ``y`` (0-based px), ``flux``; only sources inside the WCS
        bounding box.
    """
    import stcal.tweakreg.tweakreg as twk
    from astropy.table import Table
    from photutils import use_future_column_names
    from photutils.detection import IRAFStarFinder
    from photutils.utils import NoDetectionsWarning
    from stdatamodels.jwst.datamodels.dqflags import pixel

    from calib.detection import fast_peak_finding, fast_star_filter
    from calib.steps.source_catalog import estimate_background

    mask = ((pixel["NON_SCIENCE"] + pixel["DO_NOT_USE"]) & model.dq).astype(bool)
    empty = Table(names=("id", "x", "y", "flux"), dtype=(int, float, float, float))
    try:
        background, rms = estimate_background(model.data, mask, params["bkg_boxsize"])
    except ValueError as exc:
        logging.getLogger(__name__).warning("tweakreg: no sky background in %s: %s", model.meta.filename, exc)
        return empty
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        threshold = float(np.median(params["snr_threshold"] * rms))
    finder = IRAFStarFinder(threshold, params["kernel_fwhm"], sigma_radius=params["sigma_radius"],
                            min_separation=max(2, int(params["minsep_fwhm"] * params["kernel_fwhm"] + 0.5)),
                            sharpness_range=(params["sharplo"], params["sharphi"]),
                            roundness_range=(params["roundlo"], params["roundhi"]), peak_max=params["peakmax"],
                            n_brightest=params["brightest"])
    with warnings.catch_warnings(), use_future_column_names(), fast_peak_finding(), fast_star_filter():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        found = finder(model.data - background, mask=mask)
    if not found:
        return empty
    cat = Table({"id": found["id"], "x": found["x_centroid"], "y": found["y_centroid"], "flux": found["flux"]})
    return twk.filter_catalog_by_bounding_box(cat, model.meta.wcs.bounding_box)


@contextlib.contextmanager
def _assigned_unvalidated(model):
    """Skip stdatamodels' schema check of each assignment inside the block (restored on exit).

    Assigning the corrected gwcs and the SIP keywords validates the gwcs tree against its
    schema per assignment (~0.4 s per member); the model is validated when it is written.
    """
    saved = model._validate_on_assignment
    model._validate_on_assignment = False
    try:
        yield
    finally:
        model._validate_on_assignment = saved


def align_members(models: list, params: dict) -> bool:
    """Align the members' WCS to each other, in place; return whether it succeeded.

    Parameters
    ----------
    models : list of ImageModel
        The members (``meta.group_id`` set: one exposure group each or more).
    params : dict
        The step's resolved parameters.

    Returns
    -------
    bool
        False when fewer than two exposure groups or when tweakwcs could not match them (the
        WCS are left as they were, as jwst does).
    """
    import stcal.tweakreg.tweakreg as twk
    from jwst.assign_wcs.util import update_fits_wcsinfo, update_s_region_imaging
    from tweakwcs.correctors import JWSTWCSCorrector

    if len({m.meta.group_id for m in models}) < 2:
        return False
    correctors = []
    for model in models:
        cat = find_stars(model, params)
        cat.meta["name"] = str(model.meta.filename).rsplit(".", 1)[0].strip("_- ")
        w = model.meta.wcsinfo
        correctors.append(JWSTWCSCorrector(
            wcs=model.meta.wcs, wcsinfo={"roll_ref": w.roll_ref, "v2_ref": w.v2_ref, "v3_ref": w.v3_ref},
            meta={"catalog": cat, "name": cat.meta["name"], "group_id": model.meta.group_id}))
    try:
        correctors = twk.relative_align(
            correctors, enforce_user_order=params["enforce_user_order"], expand_refcat=params["expand_refcat"],
            minobj=params["minobj"], fitgeometry=params["fitgeometry"], nclip=params["nclip"],
            sigma=params["sigma"], searchrad=params["searchrad"], use2dhist=params["use2dhist"],
            separation=params["separation"], tolerance=params["tolerance"], xoffset=params["xoffset"],
            yoffset=params["yoffset"])
    except twk.TweakregError as exc:
        logging.getLogger(__name__).warning("tweakreg: %s", exc)
        return False
    for model, corrector in zip(models, correctors, strict=True):
        if "fit_info" in corrector.meta and "SUCCESS" in corrector.meta["fit_info"]["status"]:
            with _assigned_unvalidated(model):
                model.meta.wcs = corrector.wcs
                update_s_region_imaging(model)
                if params["sip_approx"]:
                    try:
                        update_fits_wcsinfo(model, max_pix_error=params["sip_max_pix_error"],
                                            degree=params["sip_degree"],
                                            max_inv_pix_error=params["sip_max_inv_pix_error"],
                                            inv_degree=params["sip_inv_degree"], npoints=params["sip_npoints"],
                                            crpix=None)
                    except (ValueError, RuntimeError) as exc:
                        logging.getLogger(__name__).warning("tweakreg: SIP approximation failed: %s", exc)
    return True


def _run(state, ctx) -> str:
    p = ctx.params
    if not hasattr(state, "library"):
        raise InputError(f"{state.path}: the calib engine's tweakreg runs on a Level-3 association")
    ok = align_members(state.models, dict(p))
    status = "COMPLETE" if ok else "SKIPPED"
    for m in state.models:
        m.meta.cal_step.tweakreg = status
    return status


STEP = StepSpec(
    name="tweakreg", jwst_class="jwst.tweakreg.TweakRegStep", run=_run,
    params=(
            Param("save_catalogs", "boolean", False, support=SUPPORT_IGNORED, doc="Write out catalogs?"),
            Param("use_custom_catalogs", "boolean", False, support=SUPPORT_DEFAULT_ONLY,
                  doc="Use custom user-provided catalogs?"),
            Param("catalog_format", "string", "ecsv", support=SUPPORT_IGNORED, doc="Catalog output file format"),
            Param("catfile", "string", "", support=SUPPORT_DEFAULT_ONLY,
                  doc="Name of the file with a list of custom user-provided catalogs"),
            Param("starfinder", "option", "iraf", choices=("dao", "iraf", "segmentation"), support=SUPPORT_DEFAULT_ONLY,
                  doc="Star finder to use."),
            Param("snr_threshold", "float", 10.0, doc="SNR threshold above the bkg for star finder"),
            Param("kernel_fwhm", "float", 2.5, doc="Gaussian kernel FWHM in pixels"),
            Param("bkg_boxsize", "integer", 400, doc="The background mesh box size in pixels."),
            Param("minsep_fwhm", "float", 0.0, doc="Minimum separation between detected objects in FWHM"),
            Param("sigma_radius", "float", 1.5, doc="Truncation radius of the Gaussian kernel, units of sigma"),
            Param("sharplo", "float", 0.5, doc="The lower bound on sharpness for object detection."),
            Param("sharphi", "float", 2.0, doc="The upper bound on sharpness for object detection."),
            Param("roundlo", "float", 0.0, doc="The lower bound on roundness for object detection."),
            Param("roundhi", "float", 0.2, doc="The upper bound on roundness for object detection."),
            Param("brightest", "integer", 200, doc="Keep top ``brightest`` objects"),
            Param("peakmax", "float", None, doc="Filter out objects with pixel values >= ``peakmax``"),
            Param("npixels", "integer", 10, support=SUPPORT_IGNORED, doc="Minimum number of connected pixels"),
            Param("connectivity", "option", "8", choices=(4, 8), support=SUPPORT_IGNORED,
                  doc="The connectivity defining the neighborhood of a pixel"),
            Param("nlevels", "integer", 32, support=SUPPORT_IGNORED,
                  doc="Number of multi-thresholding levels for deblending"),
            Param("contrast", "float", 0.001, support=SUPPORT_IGNORED,
                  doc="Fraction of total source flux an object must have to be deblended"),
            Param("multithresh_mode", "option", "exponential", choices=("exponential", "linear", "sinh"),
                  support=SUPPORT_IGNORED,
                  doc="Multi-thresholding mode"),
            Param("localbkg_width", "integer", 0, support=SUPPORT_IGNORED,
                  doc="Width of rectangular annulus used to compute local background around each source"),
            Param("apermask_method", "option", "correct", choices=("correct", "mask", "none"), support=SUPPORT_IGNORED,
                  doc="How to handle neighboring sources"),
            Param("kron_params", "float_list", None, support=SUPPORT_IGNORED, doc="Parameters defining Kron aperture"),
            Param("deblend", "boolean", True, support=SUPPORT_IGNORED, doc="deblend sources?"),
            Param("enforce_user_order", "boolean", False, doc="Align images in user specified order?"),
            Param("expand_refcat", "boolean", False, doc="Expand reference catalog with new sources?"),
            Param("minobj", "integer", 15, doc="Minimum number of objects acceptable for matching"),
            Param("fitgeometry", "option", "rshift", choices=("shift", "rshift", "rscale", "general"),
                  doc="Fitting geometry"),
            Param("nclip", "integer", 3, min=0, doc="Number of clipping iterations in fit"),
            Param("sigma", "float", 3.0, min=0.0, doc="Clipping limit in sigma units"),
            Param("searchrad", "float", 2.0, doc="The search radius in arcsec for a match"),
            Param("use2dhist", "boolean", True, doc="Use 2d histogram to find initial offset?"),
            Param("separation", "float", 1.0, doc="Minimum object separation for xyxymatch in arcsec"),
            Param("tolerance", "float", 0.7, doc="Matching tolerance for xyxymatch in arcsec"),
            Param("xoffset", "float", 0.0, doc="Initial guess for X offset in arcsec"),
            Param("yoffset", "float", 0.0, doc="Initial guess for Y offset in arcsec"),
            Param("abs_refcat", "string", "",
                  doc="Catalog file name or one of: ''GAIAREFCAT'', ''GAIADR3'', ''GAIADR2'', or ''GAIADR1'', or ..."),
            Param("save_abs_catalog", "boolean", False, support=SUPPORT_IGNORED,
                  doc="Write out used absolute astrometric reference catalog as a separate product"),
            Param("abs_minobj", "integer", 15, support=SUPPORT_IGNORED,
                  doc="Minimum number of objects acceptable for matching when performing absolute astrometry"),
            Param("abs_fitgeometry", "option", "rshift", choices=("shift", "rshift", "rscale", "general"),
                  support=SUPPORT_IGNORED,
                  doc=""),
            Param("abs_nclip", "integer", 3, min=0, support=SUPPORT_IGNORED,
                  doc="Number of clipping iterations in fit when performing absolute astrometry"),
            Param("abs_sigma", "float", 3.0, min=0.0, support=SUPPORT_IGNORED,
                  doc="Clipping limit in sigma units when performing absolute astrometry"),
            Param("abs_searchrad", "float", 6.0, support=SUPPORT_IGNORED,
                  doc="The search radius in arcsec for a match when performing absolute astrometry"),
            Param("abs_use2dhist", "boolean", True, support=SUPPORT_IGNORED,
                  doc="Use 2D histogram to find initial offset when performing absolute astrometry? We encourage ..."),
            Param("abs_separation", "float", 1.0, support=SUPPORT_IGNORED,
                  doc="Minimum object separation in arcsec when performing absolute astrometry"),
            Param("abs_tolerance", "float", 0.7, support=SUPPORT_IGNORED,
                  doc="Matching tolerance for xyxymatch in arcsec when performing absolute astrometry"),
            Param("sip_approx", "boolean", True, doc="enables SIP approximation for imaging modes."),
            Param("sip_max_pix_error", "float", 0.01, doc="max err for SIP fit, forward."),
            Param("sip_degree", "integer", None, max=6, doc="degree for forward SIP fit, None to use best fit."),
            Param("sip_max_inv_pix_error", "float", 0.01, doc="max err for SIP fit, inverse."),
            Param("sip_inv_degree", "integer", None, max=6, doc="degree for inverse SIP fit, None to use best fit."),
            Param("sip_npoints", "integer", 12, doc="number of points for SIP"),
            Param("in_memory", "boolean", True, support=SUPPORT_IGNORED,
                  doc="If False, preserve memory using temporary files at expense of runtime"),
    ),
    doc="IRAFStarFinder catalogs (photutils) matched and fitted with tweakwcs (stcal relative_align).",
)
