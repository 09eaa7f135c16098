"""bkg_subtract: background subtraction from an association's background members (declared).

jwst's Image2Pipeline calls its background step only when the association product has
members of exptype ``background`` (jwst documentation "calwebb_image2"); a plain ``_rate``
input has none. The calib engine records the step SKIPPED then (jwst leaves S_BKDSUB
unset) and, for an association that does name background members, refuses the input with
a clear error (use the jwst engine): the sigma-clipped background combination is not
implemented here yet. It reads no reference for imaging (BKG and WAVELENGTHRANGE are read
for WFSS and spectroscopy only).
"""
from __future__ import annotations

from calib.errors import InputError
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, Param
from calib.step import ExposureKeys, StepSpec

__all__ = ["STEP"]


def _reads(spec: StepSpec, keys: ExposureKeys, params) -> tuple[str, ...]:
    """Imaging background subtraction reads no reference."""
    return ()


def _run(state, ctx) -> str:
    if not getattr(state, "background", None):
        return "SKIPPED"
    raise InputError(f"{state.path}: the association has {len(state.background)} background member(s); "
                     "background subtraction from members is not implemented by the calib engine yet "
                     "(use the jwst engine)")


STEP = StepSpec(
    name="bkg_subtract", jwst_class="jwst.background.BackgroundStep",
    reftypes=("bkg", "wavelengthrange"), run=_run, reads=_reads, skip_if_na=(), status_attr="bkg_subtract",
    params=(Param("bkg_list", "string_list", None, support=SUPPORT_DEFAULT_ONLY,
                  doc="background files (the association's members are used)"),
            Param("save_combined_background", "boolean", False, support=SUPPORT_IGNORED,
                  doc="save the combined background image (output option)"),
            Param("sigma", "float", 3.0, support=SUPPORT_DEFAULT_ONLY, doc="clipping threshold, sigma"),
            Param("maxiters", "integer", None, support=SUPPORT_DEFAULT_ONLY, doc="clipping iterations"),
            Param("soss_source_percentile", "float", 35.0, support=SUPPORT_IGNORED, doc="NIRISS SOSS only"),
            Param("soss_bkg_percentile", "float_list", None, support=SUPPORT_IGNORED, doc="NIRISS SOSS only"),
            Param("wfss_mmag_extract", "float", None, support=SUPPORT_IGNORED, doc="WFSS only"),
            Param("wfss_mask", "string", None, support=SUPPORT_IGNORED, doc="WFSS only"),
            Param("wfss_maxiter", "integer", 5, support=SUPPORT_IGNORED, doc="WFSS only"),
            Param("wfss_rms_stop", "float", 0.0, support=SUPPORT_IGNORED, doc="WFSS only"),
            Param("wfss_outlier_percent", "float", 1.0, support=SUPPORT_IGNORED, doc="WFSS only")),
    doc="subtract the association's background members (jwst background step); SKIPPED without them.",
)
