"""calwebb_detector1: raw ramps (``_uncal``) to slopes (``_rate``, ``_rateints``).

This project's own engine for jwst's ``Detector1Pipeline`` (jwst documentation
"calwebb_detector1"), declared on the step registry: the steps in jwst 3.0's order for
near-IR detectors (NIRCam, NIRISS, NIRSpec, FGS) and for MIRI, and the two products.
Everything else (parameters, skip, N/A references, S_* keywords, timings) is the generic
runner's (:mod:`calib.runner`).

Implemented: group_scale, dq_init, saturation, ipc, superbias, refpix, linearity,
dark_current, charge_migration (off by default, as in jwst), jump, ramp_fit, gain_scale,
and for MIRI emicorr (off by default, as in jwst 3.0), firstframe (off by default, as in
jwst 3.0), lastframe, reset and rscd (SKIPPED when their reference is N/A, as in jwst);
MIRI refpix for full frame (SKIPPED for MIRI subarrays, as jwst). Always recorded SKIPPED:
persistence, picture_frame and clean_flicker_noise (off by default in jwst 3.0 for the
modes this engine runs).
"""
from __future__ import annotations

from stdatamodels.jwst import datamodels

from calib.images import _share_parsed_schemas
from calib.params import ParamError
from calib.ramps import NIR_INSTRUMENTS, RampState, open_ramp
from calib.runner import PipelineSpec, ProductSpec
from calib.step import ExposureKeys, StepSpec
from calib.steps import (charge_migration, dark_current, dq_init, emicorr, firstframe, gain_scale, group_scale, ipc,
                         jump, linearity, not_implemented, ramp_fit, refpix, reset, rscd, saturation, superbias)

__all__ = ["PIPELINE", "NIR_STEPS", "MIRI_STEPS", "steps_for"]

# asdf parses each schema resource once per process (calib.images): without it, opening the
# input as a Level1bModel re-parsed ~20 stdatamodels schemas (YAML) on every exposure, and
# so did writing the products (deepdark, warm: opening 0.11-0.15 -> 0.09 CPU s, saving
# 0.09-0.13 -> 0.09 s). A process running only calwebb_detector1 never imported calib.images.
_share_parsed_schemas()

# the order of jwst 3.0's Detector1Pipeline.process (persistence runs after jump)
NIR_STEPS: tuple[StepSpec, ...] = (
    group_scale.STEP, dq_init.STEP, saturation.STEP, ipc.STEP, superbias.STEP, refpix.STEP, linearity.STEP,
    dark_current.STEP, charge_migration.STEP, jump.STEP, not_implemented.PICTURE_FRAME,
    not_implemented.CLEAN_FLICKER_NOISE, not_implemented.PERSISTENCE, ramp_fit.STEP, gain_scale.STEP,
)
MIRI_STEPS: tuple[StepSpec, ...] = (
    group_scale.STEP, dq_init.STEP, emicorr.STEP, saturation.STEP, ipc.STEP, firstframe.FIRSTFRAME,
    firstframe.LASTFRAME, reset.STEP, linearity.STEP, rscd.STEP, dark_current.STEP, refpix.STEP,
    charge_migration.STEP, jump.STEP, not_implemented.PICTURE_FRAME, not_implemented.CLEAN_FLICKER_NOISE,
    not_implemented.PERSISTENCE, ramp_fit.STEP, gain_scale.STEP,
)


def steps_for(keys: ExposureKeys) -> tuple[StepSpec, ...]:
    """Return the calwebb_detector1 steps, in jwst order, for an exposure's instrument.

    Raises
    ------
    calib.errors.InputError
        For an instrument that is neither near-IR nor MIRI.
    """
    from calib.errors import InputError

    if keys.instrument == "MIRI":
        return MIRI_STEPS
    if keys.instrument in NIR_INSTRUMENTS:
        return NIR_STEPS
    raise InputError(f"unknown instrument {keys.instrument!r} for calwebb_detector1")


def _check(resolved) -> None:
    if resolved["ramp_fit"]["skip"]:
        raise ParamError("step 'ramp_fit' cannot be skipped: it makes the rate products",
                         step="ramp_fit", param="skip", value=True, allowed="false")


def _products(state: RampState, status: dict[str, str]) -> dict:
    """Build the rate ImageModel and (NINTS > 1) the rateints CubeModel, the science header copied in.

    The header values come from the input model, which datamodels validated when it opened
    the file: validating each again on assignment (~0.15 s a run, asdf re-resolving
    schemas) is skipped; the keywords set here are fixed values.
    """
    def build(cls, arrays):
        m = cls(data=arrays["data"], dq=arrays["dq"], err=arrays["err"], var_poisson=arrays["var_poisson"],
                var_rnoise=arrays["var_rnoise"], validate_on_assignment=False)
        m.update(state.model)
        m.meta.bunit_data = "DN/s"
        m.meta.bunit_err = "DN/s"
        return m

    out = {"rate": build(datamodels.ImageModel, state.rate)}
    if state.info.nints > 1:
        ints = build(datamodels.CubeModel, state.rateints)
        int_times = getattr(state.model, "int_times", None)
        if int_times is not None and len(int_times):
            ints.int_times = int_times.copy()
        out["rateints"] = ints
    return out


PIPELINE = PipelineSpec(
    name="calwebb_detector1", jwst_class="jwst.pipeline.Detector1Pipeline",
    aliases=("detector1", "Detector1Pipeline", "jwst.pipeline.Detector1Pipeline", "calwebb_detector1.cfg"),
    flavours=steps_for,
    steps=tuple(dict.fromkeys(NIR_STEPS + MIRI_STEPS)),
    products=(ProductSpec("rate", "ImageModel", "slope per exposure: SCI/ERR DN/s, DQ, VAR_POISSON, VAR_RNOISE"),
              ProductSpec("rateints", "CubeModel", "slope per integration (NINTS > 1)", optional=True)),
    open=open_ramp, finish=_products, check=_check, instruments=(*NIR_INSTRUMENTS, "MIRI"),
    doc="ramps to slopes: detector corrections, jump detection, ramp fitting",
)
