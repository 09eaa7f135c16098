"""source_catalog: the source catalog and segmentation map of a Level-3 image (not yet native).

Declared with jwst 3.0's parameters and reference types (jwst documentation
"source_catalog"); the calib engine does not run it yet, so asking for it (jwst's default)
is a usage error naming the jwst engine.
"""
from __future__ import annotations

from calib.params import Param
from calib.step import StepSpec

__all__ = ["STEP"]

STEP = StepSpec(
    name="source_catalog", jwst_class="jwst.source_catalog.SourceCatalogStep", reftypes=("apcorr", "abvegaoffset"),
    params=(
            Param("aperture_ee1", "integer", 30, doc="aperture encircled energy 1"),
            Param("aperture_ee2", "integer", 50, doc="aperture encircled energy 2"),
            Param("aperture_ee3", "integer", 70, doc="aperture encircled energy 3"),
            Param("ci1_star_threshold", "float", 2.0, doc="CI 1 star threshold"),
            Param("ci2_star_threshold", "float", 1.8, doc="CI 2 star threshold"),
            Param("starfinder", "option", "segmentation", choices=("dao", "iraf", "segmentation"),
                  doc="Star finder to use."),
            Param("snr_threshold", "float", 3.0, doc="SNR threshold above the bkg for star finder"),
            Param("bkg_boxsize", "integer", 1000, doc="The background mesh box size in pixels."),
            Param("kernel_fwhm", "float", 2.0, doc="Gaussian kernel FWHM in pixels"),
            Param("minsep_fwhm", "float", 0.0, doc="Minimum separation between detected objects in FWHM"),
            Param("sigma_radius", "float", 1.5, doc="Truncation radius of the Gaussian kernel, units of sigma"),
            Param("sharplo", "float", 0.5, doc="The lower bound on sharpness for object detection."),
            Param("sharphi", "float", 2.0, doc="The upper bound on sharpness for object detection."),
            Param("roundlo", "float", 0.0, doc="The lower bound on roundness for object detection."),
            Param("roundhi", "float", 0.2, doc="The upper bound on roundness for object detection."),
            Param("brightest", "integer", 200, doc="Keep top ``brightest`` objects"),
            Param("peakmax", "float", None, doc="Filter out objects with pixel values >= ``peakmax``"),
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
    doc="photutils segmentation, deblending and aperture photometry of the i2d; not implemented.",
)
