"""Which engine runs a pipeline here: the one place that decides.

calib (this project's numba implementations) runs every pipeline in its registry
(``calib.pipelines.REGISTRY``); any other pipeline the jwst package defines (its
``jwst/pipeline/calwebb_<name>.cfg``) runs through the official jwst pipeline classes
(:mod:`archive.execution.jwst_engine`); a pipeline that no engine runs is reported by the
planner as unsupported, never dropped (DESIGN.md, "Pipelines and steps": engines).
"""
from __future__ import annotations

from calib.pipelines import REGISTRY as _CALIB_REGISTRY

from ..catalog.pipeline_policy import jwst_pipeline_config

#: pipelines calib runs natively
SUPPORTED = {"calib": set(_CALIB_REGISTRY)}


def engine_for(pipeline: str) -> str | None:
    """Return the engine that runs ``pipeline`` here.

    calib when the pipeline is in calib's registry (a native implementation always wins),
    else ``jwst`` when the installed jwst package defines it, else None.

    Parameters
    ----------
    pipeline : str
        A pipeline name, e.g. ``calwebb_detector1`` or ``calwebb_image3``.

    Returns
    -------
    str or None
        ``"calib"``, ``"jwst"``, or None if no engine supports the pipeline.
    """
    if pipeline in _CALIB_REGISTRY:
        return "calib"
    if jwst_pipeline_config(pipeline) is not None:
        return "jwst"
    return None
