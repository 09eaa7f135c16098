"""calwebb_image2: count-rate images (``_rate``) to calibrated (``_cal``) and resampled (``_i2d``) images.

This project's engine for jwst's ``Image2Pipeline`` (jwst documentation "calwebb_image2"),
declared on the step registry, in jwst 3.0's order: bkg_subtract (only for a Level-2
association with background members; SKIPPED otherwise), assign_wcs (jwst's own gwcs
pipeline from DISTORTION and FILTEROFFSET), flat_field (numba: / FLAT), photom (numba:
DN/s -> MJy/sr by PHOTMJSR, AREA attached), resample (drizzle -> ``_i2d``; SKIPPED for
exposure types jwst does not resample). The input is a ``_rate`` file opened as an
ImageModel, or a Level-2 association naming one (:mod:`calib.images`).

Products:

* ``_cal``: ImageModel: SCI/ERR float32 (ny, nx) MJy/sr, DQ uint32, VAR_POISSON,
  VAR_RNOISE, VAR_FLAT float32 (MJy/sr)**2, AREA float32, the gwcs in the ASDF extension,
  PHOTMJSR/PHOTUJA2/PIXAR_SR/PIXAR_A2, S_* keywords.
* ``_i2d``: ImageModel: SCI/ERR float32 (my, mx) MJy/sr, WHT float32, CON int32
  (1, my, mx), VAR_* float32, the output gwcs (when resample ran).

References: distortion, filteroffset (assign_wcs), flat (flat_field), photom, area (photom).
"""
from __future__ import annotations

from calib.errors import InputError
from calib.images import open_image
from calib.runner import PipelineSpec, ProductSpec
from calib.step import ExposureKeys, StepSpec
from calib.steps import assign_wcs, bkg_subtract, flat_field, photom, resample

__all__ = ["PIPELINE", "STEPS"]

#: the order of jwst 3.0's Image2Pipeline.process_exposure_product
STEPS: tuple[StepSpec, ...] = (bkg_subtract.STEP, assign_wcs.STEP, flat_field.STEP, photom.STEP, resample.STEP)

INSTRUMENTS = ("NIRCAM", "NIRISS", "MIRI", "FGS")   # NIRSpec imaging: the jwst engine


def _flavours(keys: ExposureKeys) -> tuple[StepSpec, ...]:
    """Return the steps, the same for every instrument (jwst's Image2Pipeline has one order).

    Raises
    ------
    InputError
        For an instrument jwst's Image2Pipeline does not serve.
    """
    if keys.instrument not in INSTRUMENTS:
        raise InputError(f"calwebb_image2 in the calib engine is for NIRCam, NIRISS, MIRI and FGS imaging, not "
                         f"instrument {keys.instrument or None!r} (use the jwst engine)")
    return STEPS


def _products(state, status: dict[str, str]) -> dict:
    """``cal`` (the calibrated ImageModel) and, when resample ran, ``i2d``."""
    out = {"cal": state.model}
    if state.i2d is not None:
        out["i2d"] = state.i2d
    return out


def _release(state, suffix: str) -> None:
    """After the ``_cal`` is written: resample may consume it (see :func:`calib.steps.resample.resample_image`)."""
    if suffix == "cal":
        state.cal_written = True


PIPELINE = PipelineSpec(
    name="calwebb_image2", jwst_class="jwst.pipeline.Image2Pipeline",
    aliases=("image2", "Image2Pipeline", "jwst.pipeline.Image2Pipeline", "calwebb_image2.cfg"),
    flavours=_flavours, steps=STEPS,
    products=(ProductSpec("cal", "ImageModel", "SCI/ERR (ny, nx) MJy/sr, DQ, VAR_* (MJy/sr)**2, AREA, gwcs",
                          made_before="resample", write_early=True),
              ProductSpec("i2d", "ImageModel", "resampled SCI/ERR MJy/sr, WHT, CON, VAR_*, output gwcs",
                          optional=True)),
    open=open_image, finish=_products, release=_release, instruments=INSTRUMENTS, input_model="ImageModel",
    doc="imaging stage 2: background, WCS, flat field, flux calibration, resampling",
)
