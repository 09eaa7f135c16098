"""calwebb_dark: raw dark exposures (``_uncal``) to corrected ramps (``_dark``).

This project's engine for jwst's ``DarkPipeline`` (jwst documentation "calwebb_dark"): the
calwebb_detector1 steps up to, not including, dark_current, in jwst 3.0's order, reusing the
declared steps of :mod:`calib.steps`:

* near-IR (NIRCam, NIRISS, NIRSpec, FGS): group_scale, dq_init, saturation, ipc, superbias,
  refpix, linearity;
* MIRI: group_scale, dq_init, emicorr (off by default), saturation, ipc, firstframe (off by
  default), lastframe, reset, linearity, rscd.

Defaults are those of jwst's DarkPipeline class (the same as calwebb_detector1's). In
operations the CRDS parameter reference ``pars-darkpipeline`` also skips ipc; pass
``--steps.ipc.skip=true`` for the same.

Product ``_dark``: a RampModel as jwst 3.0's DarkPipeline saves it: SCI float32 (nints,
ngroups, ny, nx) DN after linearity, PIXELDQ uint32 (ny, nx), GROUPDQ uint8 (nints, ngroups,
ny, nx), no ERR, the input's header and its GROUP, INT_TIMES and REFOUT tables when present
(a ZEROFRAME is not carried: this engine does not correct it). jwst 3.0 run from Python or
strun names the file ``<root>_darkpipeline.fits`` (the step name); the jwst documentation's
suffix, ``_dark``, is used here.

Which exposures are darks: :func:`exp_types` (from jwst's association rules).
"""
from __future__ import annotations

from stdatamodels.jwst import datamodels

from calib.errors import InputError
from calib.ramps import NIR_INSTRUMENTS, RampState, open_ramp
from calib.runner import PipelineSpec, ProductSpec
from calib.step import ExposureKeys, StepSpec
from calib.steps import (dq_init, emicorr, firstframe, group_scale, ipc, linearity, refpix, reset, rscd, saturation,
                         superbias)

__all__ = ["PIPELINE", "NIR_STEPS", "MIRI_STEPS", "exp_types"]

# the orders of jwst 3.0's DarkPipeline.process
NIR_STEPS: tuple[StepSpec, ...] = (
    group_scale.STEP, dq_init.STEP, saturation.STEP, ipc.STEP, superbias.STEP, refpix.STEP, linearity.STEP,
)
MIRI_STEPS: tuple[StepSpec, ...] = (
    group_scale.STEP, dq_init.STEP, emicorr.STEP, saturation.STEP, ipc.STEP, firstframe.FIRSTFRAME,
    firstframe.LASTFRAME, reset.STEP, linearity.STEP, rscd.STEP,
)

#: tables of the input that jwst's RampModel carries into the product
_TABLES = ("group", "int_times", "refout")


def exp_types() -> tuple[str, ...]:
    """EXP_TYPEs of dark exposures, upper case, as jwst classifies them.

    The exposure types that jwst's association rules map to the "dark" exposure class
    (``jwst.associations.lib.dms_base.EXPTYPE_MAP``): in jwst 3.0 MIR_DARKALL, MIR_DARKIMG,
    MIR_DARKMRS, NIS_DARK, NRC_DARK, NRS_DARK. (FGS_DARK, also a dark, is absent from that
    map; CRDS's system configuration sends it to calwebb_dark too.) jwst is imported on
    first call.
    """
    from jwst.associations.lib.dms_base import EXPTYPE_MAP

    return tuple(sorted(t.upper() for t, kind in EXPTYPE_MAP.items() if kind == "dark"))


def _flavours(keys: ExposureKeys) -> tuple[StepSpec, ...]:
    """Return the steps, in jwst order, for an exposure's instrument.

    Raises
    ------
    InputError
        For an instrument that is neither near-IR nor MIRI.
    """
    if keys.instrument == "MIRI":
        return MIRI_STEPS
    if keys.instrument in NIR_INSTRUMENTS:
        return NIR_STEPS
    raise InputError(f"unknown instrument {keys.instrument!r} for calwebb_dark")


def _products(state: RampState, status: dict[str, str]) -> dict:
    """Build the ``dark`` RampModel (see the module docstring); its arrays are the state's."""
    m = datamodels.RampModel(data=state.data, pixeldq=state.pdq, groupdq=state.gdq, validate_on_assignment=False)
    m.update(state.model)
    for name in _TABLES:
        table = getattr(state.model, name, None) if state.model.hasattr(name) else None
        if table is not None and len(table):
            setattr(m, name, table.copy())
    return {"dark": m}


PIPELINE = PipelineSpec(
    name="calwebb_dark", jwst_class="jwst.pipeline.DarkPipeline",
    aliases=("dark", "DarkPipeline", "jwst.pipeline.DarkPipeline", "calwebb_dark.cfg"),
    flavours=_flavours, steps=tuple(dict.fromkeys(NIR_STEPS + MIRI_STEPS)),
    products=(ProductSpec("dark", "RampModel",
                          "corrected ramp: SCI (nints, ngroups, ny, nx) DN after linearity, PIXELDQ, GROUPDQ"),),
    open=open_ramp, finish=_products, instruments=(*NIR_INSTRUMENTS, "MIRI"),
    doc="dark exposures: the detector1 steps before dark_current, ramps kept",
)
