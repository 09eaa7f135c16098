"""The jwst engine: a pipeline calib does not implement, run by the official jwst package.

A stage-2/3 job whose pipeline is not in calib's registry (:mod:`archive.execution.engines`)
runs the class the jwst package's own configuration names (``jwst/pipeline/<pipeline>.cfg``,
e.g. ``calwebb_image3.cfg`` -> ``jwst.pipeline.Image3Pipeline``) on the association JSON,
whose members point at the catalogued input products. It runs in a child Python process:
crds reads ``CRDS_PATH``, ``CRDS_CONTEXT`` and ``CRDS_SERVER_URL`` once per process, so each
job gets a fresh one pinned to the job's context in the archive's offline cache (the
archive's reference selection: crds's bestrefs under the job's context), and the worker's
memory is not held by jwst's models. The references each product was made with are read
back from its R_* keywords (``meta.ref_file``) into ``product_references``.

The child dies with the worker that started it (SIGKILL included): a killed worker leaves
no orphan jwst run writing into the attempt's directory while another worker redoes the
job (:func:`die_with_parent`).

Source of the method: jwst's "Running the pipeline" documentation (``Step.call`` with a
configuration file and ``steps`` overrides; association files as input).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from calib.errors import CalibError

from ..catalog.pipeline_policy import jwst_pipeline_config

#: files a jwst run leaves that are not products (the association, logs, the run's config)
RUN_DIR = "_run"
SERVERLESS = "https://jwst-serverless-mode.stsci.edu"


class JwstEngineError(CalibError):
    """jwst could not run the job on its input (bad input or a missing reference): permanent."""


class MissingReferencesError(JwstEngineError):
    """The job's context has no reference of a type jwst needs for this mode (a permanent failure).

    ``reftypes`` maps each reftype crds could not select to crds's reason, e.g. ``{"specwcs":
    "parameter='META.EXPOSURE.TYPE' value='NRC_WFSS' is not in ['NRC_IMAGE']"}``.
    """

    def __init__(self, message: str, reftypes: dict[str, str]) -> None:
        super().__init__(message)
        self.reftypes = reftypes


#: how crds (through jwst's prefetch) logs a reftype it cannot select under the context
_CRDS_LOOKUP_ERROR = re.compile(r"Error determining best reference for '(\w+)'\s*=\s*(.*)$")


def missing_references(log_text: str) -> dict[str, str]:
    """Return the reftypes crds could not select, from a jwst run's log, with crds's reason.

    Parameters
    ----------
    log_text : str
        The child process's log (jwst and crds log lines).

    Returns
    -------
    dict
        Reftype -> crds's reason (empty when the failure was not a reference lookup).
    """
    out: dict[str, str] = {}
    for line in log_text.splitlines():
        m = _CRDS_LOOKUP_ERROR.search(line)
        if m:
            out.setdefault(m.group(1), " ".join(m.group(2).split()))
    return out


@dataclass
class JwstOutput:
    """One file jwst wrote.

    Its suffix, the member root it belongs to (None: the whole association's product), and
    the references its R_* keywords name (reftype -> file).
    """

    path: Path
    suffix: str
    member_root: str | None
    references: dict[str, str]


def _suffix_and_owner(name: str, product_name: str, member_roots: list[str]) -> tuple[str, str | None]:
    """``<product>_i2d.fits`` -> ("i2d", None); ``<member>_c1000_crf.fits`` -> ("crf", member)."""
    stem = name.split(".", 1)[0]
    suffix = stem.rsplit("_", 1)[-1]
    for root in sorted(member_roots, key=len, reverse=True):
        if stem.startswith(root + "_") and root != product_name:
            return suffix, root
    return suffix, None


def product_references(path: Path) -> dict[str, str]:
    """Return reftype -> reference file name from a jwst product's ``meta.ref_file``.

    Read through stdatamodels (the R_* keywords are abbreviated: ``R_DISTOR``, ``R_FILOFF``),
    ``crds://`` stripped; an empty dict for a file that is not a FITS data model (ECSV).
    """
    if not path.name.endswith(".fits"):
        return {}
    from stdatamodels.jwst import datamodels

    out = {}
    with datamodels.open(path) as model:
        ref_file = model.meta.ref_file.instance if model.meta.hasattr("ref_file") else {}
    for reftype, entry in (ref_file or {}).items():
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name.startswith("crds://"):
            out[reftype.lower()] = name[len("crds://"):]
    return out


def run_association(pipeline: str, asn: dict, inputs: dict[str, str], output_dir: Path, crds_path: Path,
                    context: str, params: dict | None = None, member_roots: list[str] | None = None,
                    timeout: float | None = None) -> list[JwstOutput]:
    """Run a jwst pipeline on an association whose members are catalogued products.

    Parameters
    ----------
    pipeline : str
        ``calwebb_<name>`` with a configuration file in the jwst package.
    asn : dict
        The association JSON as the generator made it (catalogued content).
    inputs : dict
        Member ``expname`` -> absolute path of the catalogued input product.
    output_dir : pathlib.Path
        The attempt's own directory (must not exist); products are written there, the
        association and the log under ``_run/``.
    crds_path : pathlib.Path
        The offline CRDS cache.
    context : str
        The job's context (``.pmap``): every reference is crds's best under it.
    params : dict, optional
        ``{step: {parameter: value}}`` passed to jwst as ``steps``.
    member_roots : list of str, optional
        Product roots of the members (file names of per-member outputs start with them).
    timeout : float, optional
        Seconds before the child process is killed.

    Returns
    -------
    list of JwstOutput
        Every file written (FITS, ECSV ...), with its suffix and references.

    Raises
    ------
    MissingReferencesError
        If the context has no reference of a type jwst needs for the mode (e.g. specwcs for
        a spectroscopic mode under a context made for imaging): the message names the
        reftypes, the context and crds's reason.
    JwstEngineError
        If jwst fails otherwise (the message ends with jwst's last error line), or writes
        nothing.
    """
    cfg = jwst_pipeline_config(pipeline)
    if cfg is None:
        raise JwstEngineError(f"the jwst package defines no pipeline {pipeline}")
    output_dir.mkdir(parents=True, exist_ok=False)
    run = output_dir / RUN_DIR
    run.mkdir()
    content = json.loads(json.dumps(asn))
    for product in content.get("products", []):
        for member in product.get("members", []):
            if member.get("expname") in inputs:
                member["expname"] = str(inputs[member["expname"]])
    asn_path = run / f"{content.get('asn_id', 'asn')}_{content.get('asn_type', 'asn')}_asn.json"
    asn_path.write_text(json.dumps(content, indent=1))
    spec = {"config": str(cfg), "asn": str(asn_path), "output_dir": str(output_dir), "crds_path": str(crds_path),
            "context": context, "steps": params or {}, "parent_pid": os.getpid()}
    spec_path = run / "run.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(CRDS_PATH=str(crds_path), CRDS_CONTEXT=context, CRDS_MODE="local", CRDS_SERVER_URL=SERVERLESS)
    log = run / "jwst.log"
    with open(log, "wb") as fh:
        proc = subprocess.run([sys.executable, "-m", "archive.execution.jwst_engine", str(spec_path)],
                              stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False)
    if proc.returncode != 0:
        text = log.read_text(errors="replace")
        missing = missing_references(text)
        if missing:
            reasons = sorted(set(missing.values()))
            raise MissingReferencesError(
                f"jwst {pipeline} on {asn_path.name}: context {context} has no {', '.join(sorted(missing))} "
                f"reference for this mode ({'; '.join(reasons)[:400]})", missing)
        tail = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["no output"]
        raise JwstEngineError(f"jwst {pipeline} on {asn_path.name} under {context} failed "
                              f"(exit {proc.returncode}): {tail[0][:500]}")
    product_name = (content.get("products") or [{}])[0].get("name", "")
    roots = list(member_roots or [])
    # references the inputs carry from earlier stages (jwst copies a rate's R_* keywords into
    # the cal) are not this job's, unless this pipeline reads that reftype itself (a spec3's
    # extract_1d reads the extract1d reference its x1d members were made with too)
    inherited = {(k, v) for path in inputs.values() for k, v in product_references(Path(path)).items()}
    own = set(prefetch_reftypes(pipeline)) if inherited else set()
    out = []
    for path in sorted(p for p in output_dir.iterdir() if p.is_file()):
        suffix, owner = _suffix_and_owner(path.name, product_name, roots)
        refs = {k: v for k, v in product_references(path).items() if k in own or (k, v) not in inherited}
        out.append(JwstOutput(path, suffix, owner, refs))
    if not out:
        raise JwstEngineError(f"jwst {pipeline} on {asn_path.name} wrote no product")
    return out


def _config_class(config: Path):
    """Return the Step/Pipeline class a jwst ``.cfg`` file names (its ``class`` line)."""
    from stpipe.utilities import import_class

    from jwst.stpipe import Step

    cls_name = None
    for line in Path(config).read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "class":
            cls_name = value.strip().strip('"').strip("'")
    return import_class(cls_name, subclassof=Step)


@lru_cache(maxsize=None)
def prefetch_reftypes(pipeline: str) -> tuple[str, ...]:
    """Return the reftypes jwst's pipeline prefetches before it runs, as jwst itself lists them.

    The pipeline is built from the jwst package's own configuration (the class and the
    operational parameters the engine runs, :func:`run_association`), and asked for
    ``reference_file_types``: stpipe's ``Pipeline`` gathers them from every step that is not
    skipped and prefetches references, and looks each up with crds on the first science
    member's header before any step runs. A type crds cannot select under the job's
    context is what fails the job (:class:`MissingReferencesError`). Importing jwst costs
    a few seconds once per process; the answer is cached per pipeline.

    Parameters
    ----------
    pipeline : str
        ``calwebb_<name>`` with a configuration file in the jwst package.

    Returns
    -------
    tuple of str
        Sorted lower-case reftypes (``pars-*`` step-parameter references are not among them).

    Raises
    ------
    JwstEngineError
        If the jwst package defines no such pipeline.
    """
    cfg = jwst_pipeline_config(pipeline)
    if cfg is None:
        raise JwstEngineError(f"the jwst package defines no pipeline {pipeline}")
    cls = _config_class(cfg)
    step = cls.from_config_file(str(cfg))
    return tuple(sorted({str(r).lower() for r in step.reference_file_types}))


def die_with_parent(parent_pid: int, poll_seconds: float = 1.0) -> None:
    """End this process as soon as process ``parent_pid``, its parent, is gone.

    A worker killed with SIGKILL cannot stop its jwst child; left alone, the orphan would go
    on computing and writing into the attempt's directory while the job's lease expires and
    another worker redoes it. On Linux the kernel delivers SIGKILL to this process when its
    parent dies (``prctl(PR_SET_PDEATHSIG)``, see prctl(2)); elsewhere a daemon thread checks
    every ``poll_seconds`` whether this process was re-parented. If the parent is already
    gone (it died before this call), the process exits at once.

    Parameters
    ----------
    parent_pid : int
        The pid of the process that started this one (the worker running the job).
    poll_seconds : float, optional
        Interval of the portable check, seconds.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig = 1   # <linux/prctl.h>
            armed = ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:   # the parent died before the signal was armed
        os._exit(1)
    if armed:
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _main(spec_path: str) -> None:  # the child process: CRDS_* are set before jwst is imported
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("parent_pid"):
        die_with_parent(int(spec["parent_pid"]))
    cls = _config_class(spec["config"])
    kwargs = {"output_dir": spec["output_dir"], "save_results": True}
    if spec["steps"]:
        kwargs["steps"] = spec["steps"]
    cls.call(spec["asn"], config_file=spec["config"], **kwargs)


if __name__ == "__main__":
    _main(sys.argv[1])
