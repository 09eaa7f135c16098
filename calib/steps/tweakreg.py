"""tweakreg: relative alignment of the members of a Level-3 imaging association (not yet native).

jwst's tweakreg step (jwst documentation "tweakreg") finds point sources in each member
(photutils' star finders), matches the catalogs of the exposure groups with tweakwcs and
corrects each member's gwcs with the fitted shift/rotation/scale. Declared here with jwst
3.0's parameters; the calib engine does not run it yet, so asking for it (jwst's default)
is a usage error naming the jwst engine, and ``--steps.tweakreg.skip=true`` records it
SKIPPED.
"""
from __future__ import annotations

from calib.params import SUPPORT_IGNORED, Param
from calib.step import StepSpec

__all__ = ["STEP"]

STEP = StepSpec(
    name="tweakreg", jwst_class="jwst.tweakreg.TweakRegStep",
    params=(
            Param("save_catalogs", "boolean", False, support=SUPPORT_IGNORED, doc="Write out catalogs?"),
            Param("use_custom_catalogs", "boolean", False, doc="Use custom user-provided catalogs?"),
            Param("catalog_format", "string", "ecsv", support=SUPPORT_IGNORED, doc="Catalog output file format"),
            Param("catfile", "string", "", doc="Name of the file with a list of custom user-provided catalogs"),
            Param("starfinder", "option", "iraf", choices=("dao", "iraf", "segmentation"), doc="Star finder to use."),
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
            Param("npixels", "integer", 10, doc="Minimum number of connected pixels"),
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
            Param("abs_minobj", "integer", 15,
                  doc="Minimum number of objects acceptable for matching when performing absolute astrometry"),
            Param("abs_fitgeometry", "option", "rshift", choices=("shift", "rshift", "rscale", "general"), doc=""),
            Param("abs_nclip", "integer", 3, min=0,
                  doc="Number of clipping iterations in fit when performing absolute astrometry"),
            Param("abs_sigma", "float", 3.0, min=0.0,
                  doc="Clipping limit in sigma units when performing absolute astrometry"),
            Param("abs_searchrad", "float", 6.0,
                  doc="The search radius in arcsec for a match when performing absolute astrometry"),
            Param("abs_use2dhist", "boolean", True,
                  doc="Use 2D histogram to find initial offset when performing absolute astrometry? We encourage ..."),
            Param("abs_separation", "float", 1.0,
                  doc="Minimum object separation in arcsec when performing absolute astrometry"),
            Param("abs_tolerance", "float", 0.7,
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
    doc="source finding (photutils) and catalog matching (tweakwcs) to align the members' WCS; not implemented.",
)
