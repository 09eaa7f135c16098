"""The registry of pipelines, and the one entry point the archive calls: :func:`run_pipeline`.

Pipelines are named as in jwst (``calwebb_detector1`` ...). Each is one module of this
package that defines ``PIPELINE`` (a :class:`calib.runner.PipelineSpec`); :data:`REGISTRY`
maps the name to that module, imported on first use. The archive reaches calibration only
through the functions here, by pipeline name: :func:`validate_params` before any file is
opened, :func:`required_reftypes` to ask CRDS only for what will be read, and
:func:`run_pipeline`, which the worker and ``archive calibrate`` share.

Adding a pipeline: write ``calib/pipelines/<name>.py`` with ``PIPELINE = PipelineSpec(...)``
and add one line to :data:`REGISTRY`.
"""
from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any, Mapping

from calib.params import ParamError
from calib.step import ExposureKeys

if TYPE_CHECKING:   # the runner imports stdatamodels (~1 s): loaded when a pipeline is used
    from calib.runner import PipelineResult, PipelineSpec

__all__ = ["REGISTRY", "get_pipeline", "pipeline_names", "resolve_name", "validate_params",
           "required_reftypes", "step_order", "run_pipeline", "release_unreachable", "PipelineResult",
           "PipelineSpec", "UnknownPipelineError"]

#: pipeline name -> module defining PIPELINE (one line per pipeline)
REGISTRY: dict[str, str] = {
    "calwebb_detector1": "calib.pipelines.detector1",
    "calwebb_guider": "calib.pipelines.guider",
    "calwebb_dark": "calib.pipelines.dark",
    "calwebb_image2": "calib.pipelines.image2",
    "calwebb_image3": "calib.pipelines.image3",
}


class UnknownPipelineError(ParamError):
    """No pipeline of that name (or alias) is registered in the calib engine."""


def get_pipeline(name: str) -> PipelineSpec:
    """Return the declared pipeline for a name or alias (``calwebb_detector1``, ``Detector1Pipeline``).

    Raises
    ------
    UnknownPipelineError
        If no registered pipeline has that name or alias.
    """
    module = REGISTRY.get(name)
    if module is not None:
        return importlib.import_module(module).PIPELINE
    for module in REGISTRY.values():
        spec = importlib.import_module(module).PIPELINE
        if name in spec.aliases:
            return spec
    raise UnknownPipelineError(f"unknown or unsupported pipeline {name!r}; the calib engine runs: "
                               + ", ".join(REGISTRY))


def pipeline_names() -> list[str]:
    """Names of every registered pipeline."""
    return list(REGISTRY)


def resolve_name(name: str) -> str:
    """Return the registered name of a pipeline given by name or alias (raises UnknownPipelineError)."""
    return get_pipeline(name).name


def validate_params(pipeline: str, params: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Check parameters against the pipeline's declarations; return them resolved.

    Parameters
    ----------
    pipeline : str
        A registered pipeline name or alias.
    params : dict
        ``{step: {parameter: value}}`` (jwst names; strings as a command line gives them).

    Returns
    -------
    dict
        ``{step: {parameter: value}}`` for every step, defaults filled in.

    Raises
    ------
    calib.params.ParamError
        For an unknown pipeline, step or parameter, or a value outside what is allowed (the
        message names step, parameter, value and the allowed range).
    """
    return get_pipeline(pipeline).resolve_params(params)


def required_reftypes(pipeline: str, header: Mapping[str, Any], params: Mapping | None = None) -> list[str]:
    """Return the CRDS reftypes a run will read, for an exposure header and parameters.

    Only steps that will run (not skipped, implemented, applicable) count, and only the
    reftypes they read for this exposure (e.g. no superbias for MIRI), so CRDS is asked for
    nothing else.

    Parameters
    ----------
    pipeline : str
        A registered pipeline name or alias.
    header : mapping
        FITS keywords of the exposure (INSTRUME, DETECTOR, EXP_TYPE, READPATT, SUBARRAY ...).
    params : dict, optional
        As for :func:`validate_params`.

    Returns
    -------
    list of str
        Lower-case reftypes in first-use order.

    Raises
    ------
    calib.params.ParamError
        For bad parameters.
    calib.errors.InputError
        For an instrument the pipeline does not know.
    """
    spec = get_pipeline(pipeline)
    return spec.required_reftypes(ExposureKeys.from_header(header), spec.resolve_params(params))


def step_order(pipeline: str, header: Mapping[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    """``[(step, reftypes it reads), ...]`` in run order for an exposure, default parameters.

    A step that will not run (skipped by default, not implemented, not applicable) reads
    nothing. The archive uses it to name the first step a changed reference affects.
    """
    spec = get_pipeline(pipeline)
    keys = ExposureKeys.from_header(header)
    resolved = spec.resolve_params(None)
    return [(s.name, tuple(s.reads(s, keys, resolved[s.name])) if spec.will_run(s, keys, resolved) else ())
            for s in spec.flavours(keys)]


def run_pipeline(pipeline: str, input_path: str | os.PathLike, references: Mapping[str, Any] | None,
                 params: Mapping[str, Mapping[str, Any]] | None = None) -> PipelineResult:
    """Run a registered pipeline on one input (see :func:`calib.runner.run`).

    Parameters
    ----------
    pipeline : str
        A registered pipeline name or alias.
    input_path : str or os.PathLike
        The input file (stage 1: ``_uncal.fits``).
    references : dict
        ``{reftype: local path}``; None/"N/A"/absent: not applicable.
    params : dict, optional
        ``{step: {parameter: value}}``.

    Returns
    -------
    PipelineResult
        Products ``{suffix: datamodel}``, step statuses, references read, timings.

    Raises
    ------
    calib.params.ParamError, calib.errors.InputError, calib.errors.ReferenceFileError
    """
    from calib.runner import run

    return run(get_pipeline(pipeline), input_path, references, params)


def release_unreachable() -> int:
    """Free what finished runs left behind between inputs (see :func:`calib.runner.release_unreachable`)."""
    from calib.runner import release_unreachable as _release

    return _release()


def __getattr__(name: str):
    """``PipelineResult`` and ``PipelineSpec`` from :mod:`calib.runner`, imported on first use."""
    if name in ("PipelineResult", "PipelineSpec"):
        from calib import runner

        return getattr(runner, name)
    raise AttributeError(name)
