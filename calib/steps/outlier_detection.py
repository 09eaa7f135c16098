"""outlier_detection: cosmic rays and other outliers of the members of a Level-3 imaging association.

Declared with jwst 3.0's parameters (jwst documentation "outlier_detection", imaging
mode).
"""
from __future__ import annotations

from calib.params import SUPPORT_IGNORED, Param
from calib.step import StepSpec

__all__ = ["STEP"]

STEP = StepSpec(
    name="outlier_detection", jwst_class="jwst.outlier_detection.OutlierDetectionStep",
    params=(
            Param("weight_type", "option", "ivm", choices=("ivm", "exptime"), doc=""),
            Param("pixfrac", "float", 1.0, min=0.0, max=1.0, doc="Pixel shrinkage factor"),
            Param("kernel", "option", "square", choices=("square", "point", "turbo"), doc="Flux distribution kernel"),
            Param("fillval", "string", "NAN", doc=""),
            Param("maskpt", "float", 0.7, doc=""),
            Param("snr", "string", "5.0 4.0", doc=""),
            Param("scale", "string", "1.2 0.7", doc=""),
            Param("backg", "float", 0.0, doc=""),
            Param("kernel_size", "string", "7 7", doc=""),
            Param("threshold_percent", "float", 99.8, doc=""),
            Param("rolling_window_width", "integer", 25, doc=""),
            Param("ifu_second_check", "boolean", False, doc=""),
            Param("save_intermediate_results", "boolean", False, support=SUPPORT_IGNORED, doc=""),
            Param("resample_data", "boolean", True, doc=""),
            Param("good_bits", "string", "~DO_NOT_USE", doc="DQ flags to allow"),
            Param("in_memory", "boolean", True, support=SUPPORT_IGNORED,
                  doc="in_memory flag ignored if run within the pipeline; set at pipeline level instead"),
            Param("pixmap_stepsize", "float", 1.0,
                  doc="Interpolation step size for pixel map; interpolation is used for stepsize > 1"),
            Param("pixmap_order", "integer", 1, doc="Spline order for pixel mapping, must be 1 or 3"),
    ),
    doc="median of the members drizzled apart, blotted back and compared with each member; not implemented.",
)
