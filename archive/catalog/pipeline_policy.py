"""Which pipelines an exposure gets, by EXP_TYPE, following the jwst package's table.

The jwst documentation ("Pipeline Stages", jwst.readthedocs.io/en/latest/jwst/pipeline/
main.html) assigns each EXP_TYPE a stage-1 pipeline (calwebb_detector1 for science
ramps, calwebb_dark for darks, calwebb_guider for FGS guiding modes) and stage-2/3
pipelines (calwebb_image2/image3, spec2/spec3, tso3, ami3, coron3). This module is the
archive's copy of that policy table. It lives in the catalog because the catalog records
its answer (``exposures.stage1_pipeline``, set at ingest) and ingest, associations and the
planner all read it; which engine can run a pipeline is :mod:`archive.execution.engines`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

@lru_cache(maxsize=1)
def _stage1_lists() -> tuple[frozenset[str], frozenset[str]]:
    """(guider EXP_TYPEs, dark EXP_TYPEs) as jwst defines them (through calib's pipelines)."""
    from calib.pipelines import dark, guider

    return frozenset(guider.exp_types()), frozenset(dark.exp_types())


def stage1_pipeline(exp_type: str) -> str:
    """Return the stage-1 pipeline of an EXP_TYPE.

    calwebb_guider for the FGS guiding modes (jwst's FGS_GUIDE_EXP_TYPES), calwebb_dark for
    the types jwst's association rules call darks, calwebb_detector1 for everything else (as
    the operations system chooses stage 1 per exposure).
    """
    guider, dark = _stage1_lists()
    et = str(exp_type).upper()
    if et in guider:
        return "calwebb_guider"
    if et in dark:
        return "calwebb_dark"
    return "calwebb_detector1"

TSO_EXP_TYPES = {
    "MIR_LRS-SLITLESS", "NIS_SOSS", "NRC_TSIMAGE", "NRC_TSGRISM", "NRS_BRIGHTOBJ",
}
IMAGE_EXP_TYPES = {"FGS_IMAGE", "MIR_IMAGE", "NIS_IMAGE", "NRC_IMAGE"}
CORON_EXP_TYPES = {"MIR_4QPM", "MIR_LYOT", "NRC_CORON"}
AMI_EXP_TYPES = {"NIS_AMI"}
SPEC_EXP_TYPES = {
    "MIR_LRS-FIXEDSLIT", "MIR_MRS", "NIS_WFSS", "NRC_WFSS", "NRS_FIXEDSLIT", "NRS_IFU",
    "NRS_MSASPEC",
}

@dataclass(frozen=True)
class PipelinePlan:
    """The pipelines of an exposure by stage (None: that stage does not apply)."""

    stage1: str
    stage2: str | None
    stage3: str | None


def pipelines_for(exp_type: str) -> PipelinePlan:
    """Return the stage-1/2/3 pipelines for an EXP_TYPE (upper case, e.g. ``NRC_IMAGE``).

    Unknown science EXP_TYPEs get calwebb_detector1 and no stage 2/3, which is what
    the jwst package does for calibration exposures it has no further stage for.
    """
    et = exp_type.upper()
    stage1 = stage1_pipeline(et)
    if stage1 != "calwebb_detector1":
        return PipelinePlan(stage1, None, None)
    if et in TSO_EXP_TYPES:
        stage2 = "calwebb_tso-image2" if et == "NRC_TSIMAGE" else "calwebb_spec2"
        return PipelinePlan("calwebb_detector1", stage2, "calwebb_tso3")
    if et in IMAGE_EXP_TYPES:
        return PipelinePlan("calwebb_detector1", "calwebb_image2", "calwebb_image3")
    if et in CORON_EXP_TYPES:
        return PipelinePlan("calwebb_detector1", "calwebb_image2", "calwebb_coron3")
    if et in AMI_EXP_TYPES:
        return PipelinePlan("calwebb_detector1", "calwebb_image2", "calwebb_ami3")
    if et in SPEC_EXP_TYPES:
        return PipelinePlan("calwebb_detector1", "calwebb_spec2", "calwebb_spec3")
    return PipelinePlan("calwebb_detector1", None, None)
