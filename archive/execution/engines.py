"""Which engine runs a pipeline here.

calib (this project's numba implementations) runs every pipeline in its registry
(``calib.pipelines.REGISTRY``); a pipeline that no engine runs is reported by the planner as
unsupported, never dropped (DESIGN.md, "Pipelines and steps": engines).
"""
from __future__ import annotations

from calib.pipelines import REGISTRY as _CALIB_REGISTRY

#: pipelines an engine of this archive can run (engine name -> pipelines)
SUPPORTED = {"calib": set(_CALIB_REGISTRY)}


def engine_for(pipeline: str) -> str | None:
    """Return the engine that runs ``pipeline`` here.

    Parameters
    ----------
    pipeline : str
        A pipeline name, e.g. ``calwebb_detector1``.

    Returns
    -------
    str or None
        The engine's name (``"calib"``), or None if no engine supports the pipeline yet.
    """
    for engine, pipes in SUPPORTED.items():
        if pipeline in pipes:
            return engine
    return None
