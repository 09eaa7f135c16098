"""source_catalog: the source catalog (``_cat.ecsv``) and segmentation map (``_segm``) of the mosaic.

As jwst's source_catalog step does (jwst documentation "source_catalog"), with photutils
(Bradley et al., photutils 3.0), which jwst uses for all of it:

* SCI and ERR in Jy (times 1e6 PIXAR_SR); pixels with NaN ERR or zero weight are masked;
* the background and its RMS from ``Background2D`` (``bkg_boxsize`` meshes, 3-sigma
  clipped medians, 3x3 median filter); detection threshold ``snr_threshold`` x RMS;
* the background-subtracted image convolved with a Gaussian of FWHM ``kernel_fwhm``
  (astropy's ``convolve``, computed by :func:`calib.detection.convolve_fill`), segmented by ``SourceFinder``
  (``npixels``, ``connectivity``, deblending with
  ``nlevels``/``contrast``/``multithresh_mode``; single-peaked sources, which no threshold
  can split, recognised at once by :func:`calib.detection.fast_deblending`), measured by
  ``SourceCatalog`` (only the properties the catalog uses: :data:`CATALOG_COLUMNS`);
* aperture photometry (``aperture_photometry``) in three circles holding ``aperture_ee1/2/3``
  percent of the encircled energy (radii, aperture corrections and sky annulus from the
  APCORR reference, divided by the resample pixel-scale ratio), less the 3-sigma-clipped
  median sky of the annulus; the total flux is the largest aperture's times its aperture
  correction; AB magnitudes ``-2.5 log10(F/Jy) + 8.9``, Vega = AB - ABVEGAOFFSET's offset;
  concentration indices, ``is_extended`` (both CIs above ``ci1/ci2_star_threshold``),
  nearest neighbours.

Columns as jwst names them (label, xcentroid, ycentroid, sky_centroid, aper_bkg_flux(_err),
aper<EE>_flux(_err), aper_total_flux(_err), their AB/Vega magnitudes, CI_<a>_<b>,
is_extended, nn_label, nn_dist, isophotal_flux(_err), isophotal magnitudes,
isophotal_area, semimajor_sigma, semiminor_sigma, ellipticity, orientation, sky_bbox_*);
not made: jwst's DAOFind ``sharpness``/``roundness`` and ``sky_orientation``. Only the
"segmentation" star finder (jwst's default) is implemented.
"""
from __future__ import annotations

import warnings

import numpy as np

from calib.errors import InputError
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, Param
from calib.step import StepSpec

__all__ = ["STEP", "estimate_background", "detect_sources", "aperture_parameters", "abvega_offset", "make_catalog"]


#: the segment properties :func:`make_catalog` uses; photutils computes a column only when asked
#: (its default columns add the Kron apertures and photometry, 0.47 s of a profiled run on the 4-member
#: benchmark mosaic, which the catalog does not contain)
CATALOG_COLUMNS = ("label", "x_centroid", "y_centroid", "area", "semimajor_axis", "semiminor_axis", "orientation",
                   "ellipticity", "segment_flux", "segment_flux_err", "sky_bbox_ll", "sky_bbox_ul", "sky_bbox_lr",
                   "sky_bbox_ur")


def estimate_background(data, mask, box_size: int):
    """Background and background RMS as jwst's source finding estimates them (photutils).

    ``Background2D`` with ``box_size`` meshes, 3-sigma-clipped medians and a 3x3 median
    filter over the meshes; when the meshes have too few good pixels, one mesh of the whole
    image (jwst's fallback). The meshes are upsampled to the image by
    :func:`calib.detection.zoom_mesh` (photutils' order-3 spline zoom, evaluated separably;
    equal to photutils' result for float32 data, within float64 rounding otherwise).

    Parameters
    ----------
    data : numpy.ndarray
        float32 (ny, nx).
    mask : numpy.ndarray
        bool (ny, nx), True where not covered.
    box_size : int
        Mesh size, px.

    Returns
    -------
    background, rms : numpy.ndarray
        float (ny, nx), in the units of ``data``.
    """
    from astropy.stats import SigmaClip
    from astropy.utils.exceptions import AstropyUserWarning
    from photutils.background import Background2D, MedianBackground

    from calib.detection import MeshZoom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        kw = {"filter_size": (3, 3), "coverage_mask": mask, "sigma_clip": SigmaClip(sigma=3.0),
              "bkg_estimator": MedianBackground()}
        try:
            bkg = Background2D(data, int(box_size), **kw)
        except ValueError:              # too few good pixels per mesh: one mesh, as jwst
            bkg = Background2D(data, data.shape, exclude_percentile=100.0, **kw)
        bkg.interpolator = MeshZoom()   # photutils' spline zoom of the meshes, separable in numba
        return bkg.background, bkg.background_rms


def detect_sources(data, err, mask, wcs, params: dict):
    """Background, detection, deblending and segment properties (photutils), as jwst.

    Parameters
    ----------
    data, err : numpy.ndarray
        float32 (ny, nx) in Jy.
    mask : numpy.ndarray
        bool (ny, nx): True where not covered (NaN ERR or zero weight).
    wcs : gwcs.WCS
        The image's WCS (sky centroids and bounding boxes).
    params : dict
        The step's resolved parameters (snr_threshold, bkg_boxsize, kernel_fwhm, npixels,
        connectivity, deblend, nlevels, contrast, multithresh_mode, localbkg_width,
        apermask_method, kron_params).

    Returns
    -------
    table : astropy.table.QTable or None
        photutils' segment properties (label, x/y centroid, fluxes, shape ...), None when
        nothing was found.
    segm : photutils.segmentation.SegmentationImage or None
        The segmentation map (int labels, 0 = background).
    """
    from astropy.convolution import Gaussian2DKernel
    from astropy.stats import gaussian_fwhm_to_sigma
    from astropy.utils.exceptions import AstropyUserWarning
    from photutils.segmentation import SourceCatalog, SourceFinder
    from photutils.utils import NoDetectionsWarning

    from calib.detection import convolve_fill, fast_deblending

    background, rms = estimate_background(data, mask, params["bkg_boxsize"])
    threshold = params["snr_threshold"] * rms
    sub = data - background
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        conv = sub
        if params["kernel_fwhm"] > 0:
            kernel = Gaussian2DKernel(params["kernel_fwhm"] * gaussian_fwhm_to_sigma)
            conv = convolve_fill(sub, kernel, mask=mask)       # astropy's convolve, in numba
    finder = SourceFinder(params["npixels"], connectivity=int(params["connectivity"]), deblend=params["deblend"],
                          n_levels=params["nlevels"], contrast=params["contrast"], mode=params["multithresh_mode"],
                          relabel=True, progress_bar=False)
    with warnings.catch_warnings(), fast_deblending():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        segm = finder(conv, threshold, mask=mask)
    if segm is None:
        return None, None
    kron = params["kron_params"] if params["kron_params"] is not None else (2.5, 1.4, 0.0)
    cat = SourceCatalog(sub, segm, mask=mask, convolved_data=conv, error=err, wcs=wcs,
                        local_bkg_width=params["localbkg_width"], aperture_mask_method=params["apermask_method"],
                        kron_params=kron)
    return cat.to_table(columns=CATALOG_COLUMNS), segm


def aperture_parameters(apcorr_path: str | None, model, aperture_ee: tuple[int, int, int]) -> dict:
    """Aperture radii (px), corrections and sky annulus from the APCORR reference.

    Rows of the reference's ``apcorr_table`` for the image's filter and pupil (NIRCam,
    NIRISS), filter and subarray (MIRI) or all (FGS) whose ``eefraction`` rounds to each
    percentage; radii divided by the resample step's pixel-scale ratio. Without a
    reference: radii 1, 2, 3 px, no corrections, annulus 5-10 px (jwst's fallback).

    Raises
    ------
    InputError
        When the reference has no or several rows for a percentage, or several annuli.
    """
    if apcorr_path is None:
        return {"aperture_ee": np.array((1, 2, 3)), "aperture_radii": np.array((1.0, 2.0, 3.0)),
                "aperture_corrections": np.array((1.0, 1.0, 1.0)), "bkg_aperture_inner_radius": 5.0,
                "bkg_aperture_outer_radius": 10.0}
    from stdatamodels.jwst import datamodels

    inst = model.meta.instrument
    with datamodels.open(apcorr_path) as ref:
        table = ref.apcorr_table
        if inst.name in ("NIRCAM", "NIRISS"):
            sel = (table["filter"] == inst.filter) & (table["pupil"] == inst.pupil)
        elif inst.name == "MIRI":
            sel = (table["filter"] == inst.filter) & (table["subarray"] == model.meta.subarray.name)
        else:
            sel = np.ones(len(table), bool)
        rows = table[sel]
    ratio = model.meta.resample.pixel_scale_ratio or 1.0
    radii, corr, skyin, skyout = [], [], set(), set()
    for ee in aperture_ee:
        row = rows[np.round(rows["eefraction"] * 100) == ee]
        if len(row) != 1:
            raise InputError(f"source_catalog: APCORR {apcorr_path} has {len(row)} rows for {ee}% encircled energy "
                             f"({inst.filter}/{inst.pupil})")
        radii.append(row["radius"][0])
        corr.append(row["apcorr"][0])
        skyin.add(row["skyin"][0])
        skyout.add(row["skyout"][0])
    if len(skyin) != 1 or len(skyout) != 1:
        raise InputError(f"source_catalog: APCORR {apcorr_path} gives several sky annuli for one selection")
    return {"aperture_ee": np.array(aperture_ee), "aperture_radii": np.array(radii) / ratio,
            "aperture_corrections": np.array(corr), "bkg_aperture_inner_radius": skyin.pop() / ratio,
            "bkg_aperture_outer_radius": skyout.pop() / ratio}


def abvega_offset(path: str | None, model) -> float:
    """Return the AB - Vega magnitude offset of the image's filter (ABVEGAOFFSET; 0 without one).

    Raises
    ------
    InputError
        When the reference has not exactly one row for the image.
    """
    if path is None:
        return 0.0
    from stdatamodels.jwst.datamodels import ABVegaOffsetModel

    inst = model.meta.instrument
    with ABVegaOffsetModel(path) as ref:
        t = ref.abvega_offset
        if inst.name in ("NIRCAM", "NIRISS"):
            sel = (t["filter"] == inst.filter) & (t["pupil"] == inst.pupil)
        elif inst.name == "MIRI":
            sel = t["filter"] == inst.filter
        else:
            sel = t["detector"] == inst.detector
        rows = t[sel]
        if len(rows) != 1:
            raise InputError(f"source_catalog: ABVEGAOFFSET {path} has {len(rows)} rows for {inst.filter}/{inst.pupil}")
        return float(rows["abvega_offset"][0])


def _abmag(flux, err):
    with np.errstate(all="ignore"):
        mag = -2.5 * np.log10(flux) + 8.9
        magerr = 2.5 * np.log10(1.0 + err / flux)
    bad = flux < 0
    mag[bad] = np.nan
    magerr[bad] = np.nan
    return mag, magerr


def make_catalog(data, err, sources, wcs, aper: dict, vega_offset: float, ci_thresholds: tuple[float, float]):
    """Make the jwst-named catalog columns from photutils' segment properties and aperture photometry.

    Parameters
    ----------
    data, err : numpy.ndarray
        float32 (ny, nx) in Jy (not background-subtracted: the local annulus sky is).
    sources : astropy.table.QTable
        From :func:`detect_sources`.
    wcs : gwcs.WCS
    aper : dict
        From :func:`aperture_parameters`.
    vega_offset : float
        AB - Vega, mag.
    ci_thresholds : tuple of float
        ``ci1_star_threshold``, ``ci2_star_threshold``.

    Returns
    -------
    astropy.table.QTable
        One row per source; fluxes in Jy, magnitudes in mag, positions in px (0-based).
    """
    import astropy.units as u
    from astropy.stats import SigmaClip
    from astropy.table import QTable
    from photutils.aperture import CircularAnnulus, CircularAperture, aperture_photometry
    from scipy.spatial import KDTree

    x = np.asarray(sources["x_centroid"], float)
    y = np.asarray(sources["y_centroid"], float)
    xy = np.transpose((x, y))
    xyf = xy.copy()
    xyf[~np.isfinite(xyf)] = -1000.0
    ann = CircularAnnulus(xyf, aper["bkg_aperture_inner_radius"], aper["bkg_aperture_outer_radius"])
    clip = SigmaClip(sigma=3.0)
    med, std, nval = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in ann.to_mask(method="center"):
            v = clip(m.get_values(data), masked=False)
            nval.append(v.size)
            med.append(np.median(v))
            std.append(np.std(v))
    bkg = np.array(med)
    bkg_err = np.sqrt(np.pi / (2.0 * np.array(nval))) * np.array(std)
    apertures = [CircularAperture(xyf, r) for r in aper["aperture_radii"]]
    phot = aperture_photometry(data, apertures, error=err)
    t = QTable()
    t["label"] = sources["label"]
    t["xcentroid"] = x
    t["ycentroid"] = y
    t["sky_centroid"] = wcs.pixel_to_world(x, y)
    t["aper_bkg_flux"] = bkg * u.Jy
    t["aper_bkg_flux_err"] = bkg_err * u.Jy
    ees = [int(e) for e in aper["aperture_ee"]]
    fluxes = []
    for i, ap in enumerate(apertures):
        f = np.asarray(phot[f"aperture_sum_{i}"]) - bkg * ap.area
        fe = np.asarray(phot[f"aperture_sum_err_{i}"])
        fluxes.append((f, fe))
    total = (aper["aperture_corrections"][-1] * fluxes[-1][0], aper["aperture_corrections"][-1] * fluxes[-1][1])
    named = [(f"aper{e}", fl) for e, fl in zip(ees, fluxes, strict=True)] + [("aper_total", total)]
    for name, (f, fe) in named:
        t[f"{name}_flux"] = f * u.Jy
        t[f"{name}_flux_err"] = fe * u.Jy
    for name, (f, fe) in named:
        mag, magerr = _abmag(f, fe)
        t[f"{name}_abmag"] = mag
        t[f"{name}_abmag_err"] = magerr
    for name, (f, fe) in named:
        mag, magerr = _abmag(f, fe)
        t[f"{name}_vegamag"] = mag - vega_offset
        t[f"{name}_vegamag_err"] = magerr
    with np.errstate(all="ignore"):
        ci = [fluxes[j][0] / fluxes[i][0] for i, j in ((0, 1), (1, 2), (0, 2))]
    for (i, j), c in zip(((0, 1), (1, 2), (0, 2)), ci, strict=True):
        t[f"CI_{ees[j]}_{ees[i]}"] = c
    t["is_extended"] = (ci[0] > ci_thresholds[0]) & (ci[1] > ci_thresholds[1])
    if len(t) > 1:
        dist, idx = KDTree(xyf).query(xyf, k=[2])
        t["nn_label"] = np.asarray(sources["label"])[idx[:, 0]]
        t["nn_dist"] = dist[:, 0]
    else:
        t["nn_label"] = np.array([-1])
        t["nn_dist"] = np.array([np.nan])
    iso = np.asarray(sources["segment_flux"], float)
    iso_err = np.asarray(sources["segment_flux_err"], float)
    t["isophotal_flux"] = iso * u.Jy
    t["isophotal_flux_err"] = iso_err * u.Jy
    mag, magerr = _abmag(iso, iso_err)
    t["isophotal_abmag"], t["isophotal_abmag_err"] = mag, magerr
    t["isophotal_vegamag"], t["isophotal_vegamag_err"] = mag - vega_offset, magerr
    t["isophotal_area"] = sources["area"]
    t["semimajor_sigma"] = sources["semimajor_axis"]
    t["semiminor_sigma"] = sources["semiminor_axis"]
    t["ellipticity"] = sources["ellipticity"]
    t["orientation"] = u.Quantity(sources["orientation"], u.deg)
    for corner in ("ll", "ul", "lr", "ur"):
        t[f"sky_bbox_{corner}"] = sources[f"sky_bbox_{corner}"]
    for name in t.colnames:
        if name in ("xcentroid", "ycentroid") or name.startswith("CI_"):
            t[name].info.format = ".4f"
        elif "flux" in name:
            t[name].info.format = ".6e"
        elif "mag" in name or name in ("nn_dist", "semimajor_sigma", "semiminor_sigma", "ellipticity", "orientation"):
            t[name].info.format = ".6f"
    t.meta["aperture_params"] = aper
    t.meta["abvega_offset"] = vega_offset
    return t


def _run(state, ctx) -> str:
    from stdatamodels.jwst import datamodels

    model = getattr(state, "i2d", None)
    if model is None:
        return "SKIPPED"                    # jwst runs it only on a resampled image
    p = ctx.params
    if p["starfinder"] != "segmentation":
        raise InputError("source_catalog: only the 'segmentation' star finder is implemented by the calib engine")
    if model.meta.bunit_data != "MJy/sr" or model.meta.bunit_err != "MJy/sr":
        raise InputError("source_catalog: the i2d's SCI and ERR must be in MJy/sr")
    par = model.meta.photometry.pixelarea_steradians
    if par is None:
        raise InputError("source_catalog: the i2d has no PIXAR_SR: fluxes cannot be made")
    aperture_ee = (p["aperture_ee1"], p["aperture_ee2"], p["aperture_ee3"])
    if not (0 < aperture_ee[0] < aperture_ee[1] < aperture_ee[2] < 100):
        raise InputError(f"source_catalog: aperture_ee {aperture_ee} must increase strictly within (0, 100)")
    apcorr = ctx.path("apcorr")
    abvega = ctx.path("abvegaoffset")
    for rt, path in (("apcorr", apcorr), ("abvegaoffset", abvega)):
        if path is not None:
            ctx.mark_used(rt)
    aper = aperture_parameters(apcorr, model, aperture_ee)
    offset = abvega_offset(abvega, model)
    mask = np.isnan(model.err) | (model.wht == 0)
    to_jy = 1e6 * par
    data = np.array(model.data, np.float32)
    err = np.array(model.err, np.float32)
    data *= to_jy
    err *= to_jy
    sources, segm = detect_sources(data, err, mask, model.meta.wcs, dict(p))
    if sources is None or len(sources) == 0:
        return "COMPLETE"                  # jwst writes no catalog when nothing is found
    state.catalog = make_catalog(data, err, sources, model.meta.wcs, aper, offset,
                                 (p["ci1_star_threshold"], p["ci2_star_threshold"]))
    segm_model = datamodels.SegmentationMapModel(segm.data)
    segm_model.update(model, only="PRIMARY")
    segm_model.meta.wcs = model.meta.wcs
    segm_model.meta.wcsinfo = model.meta.wcsinfo
    state.segm = segm_model
    return "COMPLETE"


STEP = StepSpec(
    name="source_catalog", jwst_class="jwst.source_catalog.SourceCatalogStep", reftypes=("apcorr", "abvegaoffset"),
    run=_run, skip_if_na=(),
    params=(
            Param("aperture_ee1", "integer", 30, doc="aperture encircled energy 1"),
            Param("aperture_ee2", "integer", 50, doc="aperture encircled energy 2"),
            Param("aperture_ee3", "integer", 70, doc="aperture encircled energy 3"),
            Param("ci1_star_threshold", "float", 2.0, doc="CI 1 star threshold"),
            Param("ci2_star_threshold", "float", 1.8, doc="CI 2 star threshold"),
            Param("starfinder", "option", "segmentation", choices=("dao", "iraf", "segmentation"),
                  support=SUPPORT_DEFAULT_ONLY, doc="Star finder to use."),
            Param("snr_threshold", "float", 3.0, doc="SNR threshold above the bkg for star finder"),
            Param("bkg_boxsize", "integer", 1000, doc="The background mesh box size in pixels."),
            Param("kernel_fwhm", "float", 2.0, doc="Gaussian kernel FWHM in pixels"),
            Param("minsep_fwhm", "float", 0.0, support=SUPPORT_IGNORED,
                  doc="Minimum separation between detected objects in FWHM"),
            Param("sigma_radius", "float", 1.5, support=SUPPORT_IGNORED,
                  doc="Truncation radius of the Gaussian kernel, units of sigma"),
            Param("sharplo", "float", 0.5, support=SUPPORT_IGNORED,
                  doc="The lower bound on sharpness for object detection."),
            Param("sharphi", "float", 2.0, support=SUPPORT_IGNORED,
                  doc="The upper bound on sharpness for object detection."),
            Param("roundlo", "float", 0.0, support=SUPPORT_IGNORED,
                  doc="The lower bound on roundness for object detection."),
            Param("roundhi", "float", 0.2, support=SUPPORT_IGNORED,
                  doc="The upper bound on roundness for object detection."),
            Param("brightest", "integer", 200, support=SUPPORT_IGNORED, doc="Keep top ``brightest`` objects"),
            Param("peakmax", "float", None, support=SUPPORT_IGNORED,
                  doc="Filter out objects with pixel values >= ``peakmax``"),
            Param("npixels", "integer", 25, doc="Minimum number of connected pixels"),
            Param("connectivity", "option", "8", choices=(4, 8),
                  doc="The connectivity defining the neighborhood of a pixel"),
            Param("nlevels", "integer", 32, doc="Number of multi-thresholding levels for deblending"),
            Param("contrast", "float", 0.001, doc="Fraction of total source flux an object must have to be deblended"),
            Param("multithresh_mode", "option", "exponential", choices=("exponential", "linear", "sinh"),
                  doc="Multi-thresholding mode"),
            Param("localbkg_width", "integer", 0,
                  doc="Width of rectangular annulus used to compute local background around each source"),
            Param("apermask_method", "option", "correct", choices=("correct", "mask", "none"),
                  doc="How to handle neighboring sources"),
            Param("kron_params", "float_list", None, doc="Parameters defining Kron aperture"),
            Param("deblend", "boolean", True, doc="deblend sources?"),
    ),
    doc="photutils background, segmentation, deblending and aperture photometry of the i2d -> _cat.ecsv, _segm.",
)
