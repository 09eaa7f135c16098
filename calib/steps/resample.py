"""resample: drizzle one calibrated image onto a distortion-free sky grid (``_i2d``).

As jwst's resample step does in calwebb_image2 (jwst documentation "resample").

For now the step runs jwst 3.0's own resampling machinery (``jwst.resample.ResampleImage``
on the one exposure, as ``ResampleStep.process`` does for an ImageModel: output WCS from
the input's footprint, drizzle's C kernel, inverse-variance weights, ERR from the resampled
variances, context image): the i2d is then jwst's by construction. A pixel map of this
project's own (the gwcs distortion evaluated on a coarse grid and interpolated with a
checked error bound) is the next piece of issue 12. Only exposures of jwst's
``Image2Pipeline.image_exptypes`` (NRC_IMAGE, NIS_IMAGE, MIR_IMAGE, FGS_IMAGE) are resampled;
the step is SKIPPED for others, as in jwst.
"""
from __future__ import annotations

from calib.errors import InputError
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, Param
from calib.step import StepSpec

__all__ = ["STEP", "resample_image"]

#: jwst's ``Image2Pipeline.image_exptypes``
IMAGE_EXP_TYPES = ("MIR_IMAGE", "NRC_IMAGE", "NIS_IMAGE", "FGS_IMAGE")


def resample_image(model, params: dict):
    """Resample one calibrated image into its ``_i2d`` ImageModel.

    Parameters
    ----------
    model : stdatamodels.jwst.datamodels.ImageModel
        The ``_cal`` image with its gwcs (``meta.wcs``): SCI/ERR float32 (ny, nx) MJy/sr,
        DQ, VAR_* (MJy/sr)**2. Not modified (a copy is resampled).
    params : dict
        The step's resolved parameters (jwst's names).

    Returns
    -------
    stdatamodels.jwst.datamodels.ImageModel
        SCI/ERR/VAR_* float32 (my, mx) MJy/sr, WHT float32, CON int32 (1, my, mx), with the
        output gwcs.
    """
    from jwst.datamodels import ModelLibrary
    from jwst.lib.pipe_utils import match_nans_and_flags
    from jwst.resample.resample import ResampleImage
    from jwst.resample.resample_step import GOOD_BITS
    from jwst.resample.resample_utils import load_custom_wcs

    m = model.copy()
    match_nans_and_flags(m)
    shape = params["output_shape"]
    lib = ModelLibrary([m], on_disk=False)
    resamp = ResampleImage(
        lib, output=None, enable_ctx=params["enable_ctx"], enable_var=params["enable_err"],
        report_var=params["enable_err"] and params["report_var"],
        compute_err="from_var" if params["enable_err"] else None,
        pixfrac=params["pixfrac"], kernel=params["kernel"], fillval=params["fillval"],
        weight_type=params["weight_type"], good_bits=GOOD_BITS, blendheaders=False,
        pixmap_stepsize=params["pixmap_stepsize"], pixmap_order=params["pixmap_order"],
        propagate_dq=params["propagate_dq"],
        output_wcs=load_custom_wcs(params["output_wcs"], shape),
        wcs_pars={"crpix": params["crpix"], "crval": params["crval"], "rotation": params["rotation"],
                  "pixel_scale": params["pixel_scale"], "pixel_scale_ratio": params["pixel_scale_ratio"],
                  "output_shape": None if shape is None else shape[::-1]})
    return resamp.resample_many_to_one()


def _run(state, ctx) -> str:
    if not hasattr(state, "background"):
        raise InputError(f"{state.path}: the calib engine's resample runs on calibrated images (calwebb_image2)")
    if state.keys.exp_type not in IMAGE_EXP_TYPES or state.model.data.ndim != 2:
        return "SKIPPED"
    if state.model.meta.wcs is None:
        raise InputError(f"{state.path}: resample needs the WCS of assign_wcs (was it skipped?)")
    state.i2d = resample_image(state.model, dict(ctx.params))
    return "COMPLETE"


STEP = StepSpec(
    name="resample", jwst_class="jwst.resample.ResampleStep", reftypes=(), run=_run,
    params=(Param("pixfrac", "float", 1.0, min=0.0, max=1.0, doc="drop shrink factor"),
            Param("kernel", "option", "square", choices=("square", "gaussian", "point", "turbo", "lanczos2",
                                                          "lanczos3"), doc="drizzle kernel"),
            Param("fillval", "string", "NAN", doc="value of output pixels without weight"),
            Param("weight_type", "option", "ivm", choices=("ivm", "exptime", None), nullable=True,
                  doc="input weighting"),
            Param("output_shape", "int_list", None, min=1, doc="[nx, ny] of the output"),
            Param("crpix", "float_list", None, doc="0-based output reference pixel"),
            Param("crval", "float_list", None, doc="RA, Dec of the reference pixel, deg"),
            Param("rotation", "float", None, doc="output Y axis PA, deg"),
            Param("pixel_scale_ratio", "float", 1.0, doc="output / input pixel scale"),
            Param("pixel_scale", "float", None, doc="output pixel scale, arcsec"),
            Param("output_wcs", "string", "", doc="an ASDF file with a custom output gwcs"),
            Param("single", "boolean", False, support=SUPPORT_DEFAULT_ONLY, doc="one output per input (image3)"),
            Param("blendheaders", "boolean", True, support=SUPPORT_IGNORED, doc="blend input headers (one input)"),
            Param("in_memory", "boolean", True, support=SUPPORT_IGNORED, doc="keep models in memory"),
            Param("enable_ctx", "boolean", True, doc="make the context (CON) image"),
            Param("enable_err", "boolean", True, doc="make ERR from the resampled variances"),
            Param("report_var", "boolean", True, doc="write the VAR_* arrays"),
            Param("propagate_dq", "boolean", False, doc="OR the input DQ into the output"),
            Param("pixmap_stepsize", "float", 1.0, doc="pixel-map evaluation step, px"),
            Param("pixmap_order", "integer", 1, doc="pixel-map interpolation order (1 or 3)")),
    doc="drizzle the cal image onto a sky grid (jwst's ResampleImage; drizzle C kernel) -> _i2d.",
)
