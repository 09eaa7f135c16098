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


#: every answer :func:`stage1_pipeline` gives
STAGE1_PIPELINES = frozenset({"calwebb_detector1", "calwebb_guider", "calwebb_dark"})


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


def _jwst_pipeline_dir():
    """Return the directory of the installed ``jwst.pipeline`` package, found without importing it."""
    from importlib.util import find_spec
    from pathlib import Path

    spec = find_spec("jwst")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pipeline"


@lru_cache(maxsize=None)
def jwst_pipeline_config(pipeline: str):
    """Return the jwst package's configuration file of a ``calwebb_*`` pipeline, or None.

    The jwst package ships one ``jwst/pipeline/calwebb_<name>.cfg`` per pipeline the
    operations system runs (``calwebb_image2``, ``calwebb_tso-image2``,
    ``calwebb_nrslamp-spec2``, ``calwebb_wfs-image3`` ...), naming the Step or Pipeline class
    and its operational parameters; the jwst engine runs exactly that.

    Parameters
    ----------
    pipeline : str
        A pipeline name, e.g. ``calwebb_image3``.

    Returns
    -------
    pathlib.Path or None
        The ``.cfg`` file, or None when jwst defines no such pipeline.
    """
    d = _jwst_pipeline_dir()
    if d is None or not pipeline.startswith("calwebb_"):
        return None
    path = d / f"{pipeline}.cfg"
    return path if path.is_file() else None


def association_pipeline(asn_type: str) -> str:
    """Return the pipeline an association runs, from its asn_type, as operations map it.

    A Level-2 association's asn_type names its stage-2 pipeline (image2, spec2, tso-image2,
    tso-spec2, nrslamp-spec2, wfs-image2) and a Level-3's its stage-3 pipeline (image3,
    spec3, coron3, ami3, tso3, wfs-image3): ``calwebb_<asn_type>``, the name under which the
    jwst package ships the pipeline's configuration (``jwst/pipeline/calwebb_<asn_type>.cfg``,
    see :func:`jwst_pipeline_config`; jwst documentation "Pipeline Stages"). Whether any
    engine runs it is :func:`archive.execution.engines.engine_for`'s answer.

    Parameters
    ----------
    asn_type : str
        The association's ``asn_type`` (as jwst's rules set it).

    Returns
    -------
    str
        The pipeline name, e.g. ``calwebb_image2``.
    """
    return f"calwebb_{str(asn_type).strip().lower()}"
