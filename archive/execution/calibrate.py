"""``archive calibrate``: run a pipeline on files without the catalog, like jwst's ``strun``.

Best references come from the local CRDS cache (offline) under ``CRDS_CONTEXT`` or the
cache's operational context, except where ``--steps.<step>.override_<reftype>=PATH``
names a file, which is then used as is (and recorded by its base name). Products and
provenance keywords are the same as through the archive. Several files are calibrated in
turn by one process, so compiled kernels and prepared references are reused.

Exit codes follow strun: 0 success, 1 a file failed, 2 bad usage.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from calib import __version__ as cal_ver
from calib.errors import CalibError

from ..config import Settings
from ..crds import cache as crdscache
from ..crds.references import cache_operational_context
from .runner import product_root

PIPELINE_ALIASES = {
    "calwebb_detector1": "calwebb_detector1",
    "detector1": "calwebb_detector1",
    "jwst.pipeline.Detector1Pipeline": "calwebb_detector1",
    "Detector1Pipeline": "calwebb_detector1",
    "calwebb_detector1.cfg": "calwebb_detector1",
}


class UsageError(ValueError):
    """Bad command line (unknown pipeline, step or parameter)."""


@dataclass
class CalibrateOutcome:
    """One file's result: succeeded (with its products) or failed (with the message)."""

    path: Path
    status: str  # succeeded | failed
    products: dict[str, Path]
    message: str = ""
    seconds: float = 0.0


def resolve_pipeline(name: str) -> str:
    """Map a pipeline alias or class name to its calwebb name.

    Raises
    ------
    UsageError
        For a pipeline this engine does not run.
    """
    try:
        return PIPELINE_ALIASES[name]
    except KeyError:
        raise UsageError(f"unknown or unsupported pipeline {name!r}; supported: calwebb_detector1") from None


def split_overrides(params: dict) -> tuple[dict, dict[str, str]]:
    """Take ``override_<reftype>`` entries out of step parameters.

    Returns (params without overrides, {reftype: path}).

    Raises
    ------
    UsageError
        If an override names a file that does not exist.
    """
    clean: dict = {}
    overrides: dict[str, str] = {}
    for step, values in params.items():
        for name, value in values.items():
            if name.startswith("override_"):
                path = Path(str(value)).expanduser()
                if str(value).upper() == "N/A":
                    overrides[name[len("override_"):]] = "N/A"
                    continue
                if not path.is_file():
                    raise UsageError(f"--steps.{step}.{name}: no such file {value}")
                overrides[name[len("override_"):]] = str(path.resolve())
            else:
                clean.setdefault(step, {})[name] = value
    return clean, overrides


def _context(settings: Settings) -> str:
    ctx = settings.crds_context or cache_operational_context(settings.crds_path)
    if not ctx:
        raise UsageError(f"no CRDS context: set CRDS_CONTEXT or give a cache with config/jwst/server_config "
                         f"(CRDS_PATH={settings.crds_path})")
    return ctx


def calibrate_files(settings: Settings, pipeline: str, files: list[Path], output_dir: Path | None,
                    params: dict, progress=None) -> list[CalibrateOutcome]:
    """Calibrate ``files`` in turn; a failing file does not stop the others.

    Raises
    ------
    UsageError
        For an unknown pipeline, step, parameter or override file (before any work).
    """
    import crds  # heavy (crds, astropy, numba kernels): loaded when files are calibrated
    from astropy.io import fits

    from calib.pipelines.detector1 import reftypes_for, release_unreachable, run_detector1, validate_params
    from calib.products import save_products

    resolve_pipeline(pipeline)
    params, overrides = split_overrides(params)
    try:
        validate_params(params)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    context = None
    outcomes: list[CalibrateOutcome] = []
    for path in files:
        t0 = time.monotonic()
        path = Path(path)
        out_dir = Path(output_dir) if output_dir else path.parent
        try:
            header = dict(fits.getheader(path, 0))
            reftypes = reftypes_for(header.get("INSTRUME", ""), header.get("EXP_TYPE", ""))
            needed = [r for r in reftypes if r not in overrides]
            names: dict[str, str] = {}
            refs: dict[str, str | None] = {}
            if needed:
                if context is None:
                    context = _context(settings)
                    crdscache.configure(settings.crds_path)
                best = crdscache.bestrefs(header, context, needed)
                for reftype in needed:
                    name = best.get(reftype, "N/A")
                    refs[reftype] = None if name == "N/A" else str(crdscache.locate(name))
                    names[reftype] = name
            for reftype, value in overrides.items():
                if reftype in reftypes:
                    refs[reftype] = None if value == "N/A" else value
                    names[reftype] = "N/A" if value == "N/A" else os.path.basename(value)
            out_dir.mkdir(parents=True, exist_ok=True)
            result = run_detector1(path, refs, params)
            prov = {"crds_context": context or "N/A", "crds_version": crds.__version__, "cal_version": cal_ver,
                    "references": names, "overrides": {r for r in overrides if r in reftypes}}
            files_out = save_products(result, out_dir, product_root(path.name), prov)
            del result
            release_unreachable()     # the products' arrays, before the next file
            outcomes.append(CalibrateOutcome(path, "succeeded", {k: Path(v) for k, v in files_out.items() if v},
                                             seconds=time.monotonic() - t0))
        except (CalibError, OSError, ValueError, KeyError, crdscache.BestrefsError) as exc:
            outcomes.append(CalibrateOutcome(path, "failed", {}, f"{type(exc).__name__}: {exc}",
                                             seconds=time.monotonic() - t0))
        if progress:
            progress(outcomes[-1])
    return outcomes
