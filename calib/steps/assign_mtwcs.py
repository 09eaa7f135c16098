"""assign_mtwcs: the moving-target WCS of calwebb_image3 (not implemented by this engine).

jwst's Image3Pipeline runs assign_mtwcs instead of tweakreg when the association's exposures
track a moving target (``is_moving_target``: TARGTYPE "moving"), giving every member a WCS
in the target's frame (jwst documentation "assign_mtwcs"). This engine serves fixed
targets only: for them the step does nothing and is recorded SKIPPED; a moving-target
association is refused with a clear error naming the jwst engine.
"""
from __future__ import annotations

from calib.errors import InputError
from calib.step import StepSpec

__all__ = ["STEP"]


def _run(state, ctx) -> str:
    from jwst.lib.exposure_types import is_moving_target

    if is_moving_target(state.models[0]):
        raise InputError(f"{state.path}: a moving-target association (TARGTYPE moving) needs assign_mtwcs, which "
                         "the calib engine does not implement; use the jwst engine")
    return "SKIPPED"


STEP = StepSpec(
    name="assign_mtwcs", jwst_class="jwst.assign_mtwcs.AssignMTWcsStep", run=_run,
    doc="moving-target WCS (jwst assign_mtwcs): fixed targets only, where it is SKIPPED.",
)
