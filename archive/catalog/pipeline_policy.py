"""Which stage-1 pipeline an exposure gets, by EXP_TYPE, from the jwst package's own lists.

The jwst documentation ("Pipeline Stages", jwst.readthedocs.io/en/latest/jwst/pipeline/
main.html) chooses stage 1 per exposure: calwebb_detector1 for science ramps,
calwebb_dark for darks, calwebb_guider for FGS guiding modes. Stages 2 and 3 are chosen
per association (its asn_type names the pipeline, as in operations), not per EXP_TYPE, so
no EXP_TYPE table for them is kept here. This lives in the catalog because the catalog
records its answer (``exposures.stage1_pipeline``, set at ingest); which engine can run a
pipeline is :mod:`archive.execution.engines`.
"""
from __future__ import annotations

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
