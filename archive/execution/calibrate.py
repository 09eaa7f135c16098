"""``archive calibrate``: run a pipeline on files without the catalog, like jwst's ``strun``.

Best references come from the local CRDS cache (offline) under ``CRDS_CONTEXT`` or the
cache's operational context, except where ``--steps.<step>.override_<reftype>=PATH``
names a file, which is then used as is (and recorded by its base name). Products and
provenance keywords are the same as through the archive. Several files are calibrated in
turn by one process, so compiled kernels and prepared references are reused.

Exit codes follow strun: 0 success, 1 a file failed, 2 bad usage.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from calib import __version__ as cal_ver
from calib.errors import CalibError

from ..catalog.paths import name_component
from ..config import Settings
from ..crds import cache as crdscache
from ..crds.references import cache_operational_context
from .runner import product_root

log = logging.getLogger(__name__)

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
    """Map a pipeline name, alias or jwst class name to its registered calwebb name.

    Raises
    ------
    UsageError
        For a pipeline the calib engine does not run.
    """
    from calib.pipelines import UnknownPipelineError, resolve_name

    try:
        return resolve_name(name)
    except UnknownPipelineError as exc:
        raise UsageError(str(exc)) from None


def split_overrides(pipeline: str, params: dict) -> tuple[dict, dict[str, str]]:
    """Take ``override_<reftype>`` entries out of step parameters.

    An override must name a reftype its step declares (jwst's ``override_<reftype>``
    parameters) and an existing file, or ``N/A``.

    Returns
    -------
    (dict, dict)
        The parameters without overrides, and ``{reftype: absolute path or "N/A"}``.

    Raises
    ------
    UsageError
        If an override names an unknown step, a reftype the step does not read, or a file
        that does not exist.
    """
    from calib.pipelines import get_pipeline
    from calib.params import ParamError

    spec = get_pipeline(pipeline)
    clean: dict = {}
    overrides: dict[str, str] = {}
    for step, values in params.items():
        for name, value in values.items():
            if not name.startswith("override_"):
                clean.setdefault(step, {})[name] = value
                continue
            reftype = name[len("override_"):]
            try:
                declared = spec.step(step).reftypes
            except ParamError as exc:
                raise UsageError(str(exc)) from None
            if reftype not in declared:
                raise UsageError(f"--steps.{step}.{name}: step {step!r} reads no {reftype!r} reference "
                                 f"(its reftypes: {', '.join(declared) or 'none'})")
            if str(value).upper() == "N/A":
                overrides[reftype] = "N/A"
                continue
            path = Path(str(value)).expanduser()
            if not path.is_file():
                raise UsageError(f"--steps.{step}.{name}: no such file {value}")
            overrides[reftype] = str(path.resolve())
    return clean, overrides


def _context(settings: Settings, required: bool) -> str | None:
    ctx = settings.crds_context or cache_operational_context(settings.crds_path)
    if not ctx and required:
        raise UsageError(f"no CRDS context: set CRDS_CONTEXT or give a cache with config/jwst/server_config "
                         f"(CRDS_PATH={settings.crds_path})")
    return ctx


def selection_header(path: Path) -> dict:
    """Return the primary header CRDS selects references with for one input.

    For a FITS input it is the file's own primary header; for a Level-2 association
    (``*_asn.json``, as jwst's ``strun calwebb_image2 x_asn.json``) it is the primary header
    of the product's science member (path relative to the association file), which is
    the exposure the pipeline calibrates.

    Parameters
    ----------
    path : Path
        A FITS file or a Level-2 association JSON.

    Returns
    -------
    dict
        Header keyword -> value.

    Raises
    ------
    calib.errors.InputError
        If the association cannot be read or names no science member.
    OSError
        If the FITS file cannot be read.
    """
    from astropy.io import fits

    if path.suffix.lower() == ".json":
        from calib.images import read_level2_asn

        science, _background, _names = read_level2_asn(str(path))
        return dict(fits.getheader(science, 0))
    return dict(fits.getheader(path, 0))


def output_root(path: Path) -> str:
    """Return the file-name root of the products of one input.

    ``jw..._uncal.fits`` -> ``jw...``; for a Level-2 association its product's ``name``, as
    jwst names the products of ``strun calwebb_image2 x_asn.json``.

    Raises
    ------
    calib.errors.InputError
        If the association cannot be read.
    """
    if path.suffix.lower() == ".json":
        from calib.images import read_level2_asn

        name = read_level2_asn(str(path))[2]["product"]
        return name or product_root(path.name[: -len(".json")])
    return product_root(path.name)


def calibrate_files(settings: Settings, pipeline: str, files: list[Path], output_dir: Path | None,
                    params: dict, progress=None) -> list[CalibrateOutcome]:
    """Calibrate ``files`` in turn with a registered calib pipeline; a failing file does not stop the others.

    Everything about the command line is checked before any file is opened: the pipeline,
    every step and parameter against the pipeline's declarations (calib.pipelines), and
    every override. Then, per file, CRDS is asked only for the reftypes of the steps that
    will run and are not overridden (``calib.pipelines.required_reftypes``), so a skipped
    step needs no reference, and with every reference overridden no CRDS selection is made.

    Parameters
    ----------
    settings : Settings
        The CRDS cache (``crds_path``) and context (``crds_context``) to select with.
    pipeline : str
        A pipeline name or alias (``calwebb_detector1``, ``Detector1Pipeline`` ...).
    files : list of Path
        Input files (``*_uncal.fits``).
    output_dir : Path, optional
        Where products go (default: beside each input).
    params : dict
        ``{step: {parameter: value}}`` with ``override_<reftype>`` entries allowed.
    progress : callable, optional
        Called with each file's :class:`CalibrateOutcome`.

    Returns
    -------
    list of CalibrateOutcome

    Raises
    ------
    UsageError
        For an unknown pipeline, step, parameter, bad value or override file (before any
        file is opened).
    """
    import crds  # heavy (crds, astropy, numba kernels): loaded when files are calibrated

    from calib.params import ParamError
    from calib.pipelines import release_unreachable, required_reftypes, validate_params
    from calib.products import run_and_save

    pipeline = resolve_pipeline(pipeline)
    params, overrides = split_overrides(pipeline, params)
    try:
        validate_params(pipeline, params)
    except ParamError as exc:
        raise UsageError(str(exc)) from exc
    outcomes: list[CalibrateOutcome] = []
    for path in files:
        t0 = time.monotonic()
        path = Path(path)
        out_dir = Path(output_dir) if output_dir else path.parent
        try:
            # an association's product name is the products' file-name root: one plain name that
            # keeps them in the output directory (never ../ or a path), checked before anything runs
            root = name_component(output_root(path), "product name")
            header = selection_header(path)
            reftypes = required_reftypes(pipeline, header, params)
            needed = [r for r in reftypes if r not in overrides]
            context = _context(settings, required=bool(needed))
            names: dict[str, str] = {}
            refs: dict[str, str | None] = {}
            if needed:
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
            prov = {"crds_context": context or "N/A", "crds_version": crds.__version__, "cal_version": cal_ver,
                    "references": names, "overrides": {r for r in overrides if r in reftypes}}
            result, files_out = run_and_save(pipeline, path, refs, params, out_dir, root, prov)
            del result
            release_unreachable()     # the products' arrays, before the next file
            outcomes.append(CalibrateOutcome(path, "succeeded", {k: Path(v) for k, v in files_out.items() if v},
                                             seconds=time.monotonic() - t0))
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of one file is reported, the batch goes on
            if not isinstance(exc, (CalibError, OSError, ValueError, KeyError, crdscache.BestrefsError)):
                log.exception("%s: unexpected failure", path)
            outcomes.append(CalibrateOutcome(path, "failed", {}, f"{type(exc).__name__}: {exc}",
                                             seconds=time.monotonic() - t0))
        if progress:
            progress(outcomes[-1])
    return outcomes
