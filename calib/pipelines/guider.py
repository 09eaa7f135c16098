"""calwebb_guider: FGS guiding-mode exposures (``_uncal``) to count-rate images (``_cal``).

This project's engine for jwst's ``GuiderPipeline`` (jwst documentation "calwebb_guider"),
declared on the step registry: dq_init (MASK into the exposure's one DQ array),
guider_cds (count rates by correlated double sampling, per integration; one image for the
ID modes) and flat_field (divided by the FLAT reference), for the EXP_TYPEs of
:func:`calib.ramps.guider_exp_types` (FGS_ACQ1, FGS_ACQ2, FGS_TRACK, FGS_FINEGUIDE,
FGS_ID-IMAGE, FGS_ID-STACK). The input is opened as jwst opens it, as a GuiderRawModel.

Product ``_cal``: a GuiderCalModel as jwst 3.0 writes it: SCI float32 (n, ny, nx) DN/s (n =
NINTS, 1 for the ID modes), ERR float32 (n, ny, nx) DN/s, DQ uint32 (ny, nx), VAR_FLAT (n,
ny, nx) (DN/s)**2 (in the ASDF extension, as jwst stores it, when flat_field ran), the
input's header and guider tables, BUNIT DN/s, S_DQINIT, S_GUICDS, S_FLAT.

References: mask (dq_init), gain and readnoise (guider_cds), flat (flat_field).
"""
from __future__ import annotations

from stdatamodels.jwst import datamodels

from calib.errors import InputError, ReferenceFileError
from calib.params import ParamError
from calib.ramps import GuiderState, guider_exp_types, open_guider
from calib.runner import PipelineSpec, ProductSpec
from calib.step import ExposureKeys, StepSpec
from calib.steps import dq_init, flat_field, guider_cds

__all__ = ["PIPELINE", "STEPS", "exp_types"]

#: the order of jwst 3.0's GuiderPipeline.process
STEPS: tuple[StepSpec, ...] = (dq_init.STEP, guider_cds.STEP, flat_field.STEP)

#: the guider tables jwst's guider_cds carries into the product, when the input has them
_TABLES = ("planned_star_table", "flight_star_table", "pointing_table", "centroid_table", "track_sub_table")


def exp_types() -> tuple[str, ...]:
    """EXP_TYPEs this pipeline is for (jwst's FGS_GUIDE_EXP_TYPES, upper case)."""
    return guider_exp_types()


def _flavours(keys: ExposureKeys) -> tuple[StepSpec, ...]:
    """Return the steps for an exposure: FGS only.

    Raises
    ------
    InputError
        For another instrument.
    """
    if keys.instrument != "FGS":
        raise InputError(f"calwebb_guider is for FGS guiding-mode exposures, not {keys.instrument or None!r}")
    return STEPS


def _check(resolved) -> None:
    if resolved["guider_cds"]["skip"]:
        raise ParamError("step 'guider_cds' cannot be skipped in the calib engine: it makes the _cal "
                         "count rates (jwst's re-run of flat_field on a _cal input needs the jwst engine)",
                         step="guider_cds", param="skip", value=True, allowed="false")


def _products(state: GuiderState, status: dict[str, str]) -> dict:
    """Build the ``cal`` GuiderCalModel (see the module docstring).

    Raises
    ------
    ReferenceFileError
        When guider_cds was SKIPPED (GAIN or READNOISE N/A in the context): there are then no
        count rates to write (jwst would go on with the raw ramp).
    """
    cal = state.cal
    if cal is None:
        raise ReferenceFileError(f"guider_cds: no GAIN or no READNOISE reference applies to {state.path} "
                                 "(N/A in the context): calwebb_guider cannot make its _cal count rates")
    m = datamodels.GuiderCalModel(data=cal["data"], err=cal["err"], dq=state.dq, validate_on_assignment=False)
    m.update(state.model)
    for name in _TABLES:
        if state.model.hasattr(name):
            setattr(m, name, getattr(state.model, name))
    if "var_flat" in cal:
        m.var_flat = cal["var_flat"]
    m.meta.bunit_data = "DN/s"
    return {"cal": m}


PIPELINE = PipelineSpec(
    name="calwebb_guider", jwst_class="jwst.pipeline.GuiderPipeline",
    aliases=("guider", "GuiderPipeline", "jwst.pipeline.GuiderPipeline", "calwebb_guider.cfg"),
    flavours=_flavours, steps=STEPS,
    products=(ProductSpec("cal", "GuiderCalModel",
                          "count rates: SCI/ERR (n, ny, nx) DN/s, DQ (ny, nx), VAR_FLAT (DN/s)**2"),),
    open=open_guider, finish=_products, check=_check, instruments=("FGS",), input_model="GuiderRawModel",
    doc="FGS guiding modes: dq_init, count rates by CDS, flat field",
)
