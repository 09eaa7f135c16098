"""The job runner: one job executed idempotently, as the Celery task does it.

:func:`execute_job` leases the job in a short transaction, calibrates with no database
session held (a :class:`LeaseHeartbeat` renews the lease, one short UPDATE every third of
``ARCHIVE_LEASE_SECONDS``, so a live worker keeps its job however long it runs), and
records the products in a second short transaction. Running a job
twice is harmless: a succeeded job is not redone, products are written atomically into
the job's own directory, and the rows that mark it done are written once (STYLE.md,
"Idempotent work under an at-least-once queue"). Each new product is then compared with
the one it supersedes (:mod:`archive.execution.comparison`).

What a job is identified by (:func:`software_versions`, :func:`param_hash`) and where
its products go (:func:`product_root`) are defined here, beside the code that runs with
them; the planner stamps them on the jobs it creates.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from calib import __version__ as CAL_VER
from calib.errors import CalibError

from ..catalog.db import session_scope
from ..catalog.paths import UnsafePath, from_stored, name_component, program_component, to_stored, under_root
from ..catalog.models import (
    Association,
    AssociationMember,
    CrdsContext,
    Exposure,
    Job,
    JobInput,
    Product,
    ProductReference,
    ReferenceFile,
    as_utc,
    utcnow,
)
from ..config import Settings
from ..crds import cache as crdscache
from ..crds.references import compute_bestrefs, crds_header, ensure_reference
from ..ingest.storage import remove_tree_quietly, sha256_file
from .comparison import compare_with_superseded
from .previews import draw_quietly, preview_rows

log = logging.getLogger(__name__)

SOFTWARE = ("jwst-archive", "jwst", "numpy", "numba", "astropy", "crds", "stdatamodels", "sqlalchemy", "celery")


class PermanentJobError(RuntimeError):
    """A job failure that retrying cannot fix (bad input, bad reference file)."""


#: faults worth retrying with backoff: the catalog, the broker or the disk was unreachable
#: or full (sqlalchemy's OperationalError/InterfaceError cover lost database connections)
TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError, OSError)


def software_versions() -> dict[str, str]:
    """Versions of this package and of every library that shapes a product's numbers."""
    out = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    out["jwst-archive"] = CAL_VER
    return out


def param_hash(params: dict) -> str:
    """SHA-256 of the canonical JSON of a pipeline's parameters ({} for the defaults)."""
    return hashlib.sha256(json.dumps(params or {}, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def product_root(filename: str) -> str:
    """Return the root the jwst products share: ``jw..._uncal.fits`` (or ``_rate``/``_rateints``) -> ``jw...``."""
    name = filename[:-5] if filename.endswith(".fits") else filename
    for suffix in ("_uncal", "_rateints", "_rate"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass
class _Work:
    job_id: int
    pipeline: str
    params: dict
    exposure_id: int
    exposure_path: str
    exposure_sha256: str
    program: str
    filename: str
    context: str
    crds_version: str
    references: dict[str, str | None]  # reftype -> path (None: N/A)
    reference_names: dict[str, str]  # reftype -> name (applicable only)
    reference_sha256: dict[str, str]
    output_dir: Path
    association_id: int | None = None
    engine: str = "calib"
    asn: dict | None = None
    inputs: dict[str, tuple[str, str]] | None = None  # expname -> (absolute path, sha256) of a catalogued product
    member_roots: dict[str, int] | None = None  # product root -> exposure id
    instrument: str | None = None
    attempt: int = 0  # the job's attempt number this claim made (with the worker: who owns the row)
    started_at: datetime | None = None  # when this attempt claimed the job


def _claim(settings: Settings, job_id: int, worker: str) -> _Work | None:
    """Lease the job and load everything the calibration needs; None if nothing to do.

    Workers that meet a reference file (or an exposure's best references) for the first
    time at the same moment both insert its row; the loser's transaction fails on the
    unique constraint and is tried again, and then finds the winner's row.
    """
    for tries_left in range(2, -1, -1):
        try:
            return _claim_once(settings, job_id, worker)
        except IntegrityError:
            if not tries_left:
                raise
            log.info("job %s: catalog rows inserted concurrently by another worker; claiming again", job_id)
    return None  # not reached


def _claim_once(settings: Settings, job_id: int, worker: str) -> _Work | None:
    from calib.pipelines import required_reftypes

    now = utcnow()
    with session_scope(settings.db_url) as s:
        job = s.execute(select(Job).where(Job.id == job_id).with_for_update(skip_locked=True)).scalar_one_or_none()
        if job is None:
            # unknown id, or another worker holds its row lock right now (PostgreSQL)
            return None
        if job.status == "succeeded":
            return None
        if job.status == "failed" and job.retryable is False:
            return None  # a duplicate message of a job that failed for good; the planner revives it
        if job.status == "running" and (as_utc(job.lease_expires_at) or now) > now and job.worker != worker:
            return None  # leased by a live worker
        job.status = "running"
        job.attempts += 1
        job.started_at = now
        job.worker = worker
        job.lease_expires_at = now + timedelta(seconds=settings.lease_seconds)
        job.error = None
        ctx = s.get(CrdsContext, job.context_id)
        if job.association_id is not None:
            work = _claim_association(settings, s, job, ctx)
            work.attempt, work.started_at = job.attempts, now
            return work
        exp = s.get(Exposure, job.exposure_id)
        # CRDS is asked only for what the steps that will run read (calib's declarations)
        reftypes = required_reftypes(job.pipeline, crds_header(exp), job.parameters or {})
        try:
            best = compute_bestrefs(settings, s, exp, ctx, reftypes)
        except crdscache.BestrefsError as exc:  # crds cannot select for this header: retrying cannot help
            raise PermanentJobError(f"{exp.filename}: best references under {ctx.name}: {exc}") from exc
        refs: dict[str, str | None] = {}
        names: dict[str, str] = {}
        sums: dict[str, str] = {}
        for reftype, name in best.items():
            if name == "N/A":
                refs[reftype] = None
                continue
            row = ensure_reference(s, name, reftype, exp.instrume)
            if not row.path:
                raise PermanentJobError(f"reference file {name} ({reftype}) for {exp.filename} is not in the "
                                        f"CRDS cache {settings.crds_path}")
            refs[reftype] = str(from_stored(row.path, settings.crds_path))
            names[reftype] = name
            sums[reftype] = row.sha256
        # one directory per attempt: a slow run whose lease was taken over never shares files
        try:
            out = (settings.products_dir / program_component(exp.program)
                   / name_component(product_root(exp.filename), "product root")
                   / f"job-{job.id}-attempt-{job.attempts}")
            under_root(out.parent, settings.products_dir)  # after resolving links
        except UnsafePath as exc:
            raise PermanentJobError(f"{exp.filename}: {exc}") from exc
        job.output_dir = to_stored(out, settings.data_dir)
        return _Work(job.id, job.pipeline, dict(job.parameters or {}), exp.id,
                     str(from_stored(exp.storage_path, settings.data_dir)), exp.sha256,
                     exp.program, exp.filename, ctx.name, ctx.crds_version or "", refs, names, sums, out,
                     attempt=job.attempts, started_at=now)


def _claim_association(settings: Settings, s, job: Job, ctx: CrdsContext) -> _Work:
    """Load a stage-2/3 job: its association, its input products (from job_inputs), where it writes.

    A calib-engine job (a native stage-2 pipeline) also gets the best references of its
    exposure, as stage 1 does; the jwst engine lets crds choose under the job's context.
    """
    from calib.pipelines import required_reftypes

    asn = s.get(Association, job.association_id)
    rows = s.execute(select(JobInput, Product).join(Product, Product.id == JobInput.product_id)
                     .where(JobInput.job_id == job.id)).all()
    # one exposure may be a member twice (a spec3's cal as science, its x1d as background):
    # the member's expname names the product by its suffix (<root>_<suffix>.fits)
    by_product = {(ji.exposure_id, p.suffix): (str(from_stored(p.path, settings.data_dir)), ji.sha256)
                  for ji, p in rows}
    members = s.execute(select(AssociationMember).where(AssociationMember.association_id == asn.id)
                        .order_by(AssociationMember.id)).scalars().all()
    inputs: dict[str, tuple[str, str]] = {}
    roots: dict[str, int] = {}
    instrument = None
    for m in members:
        key = (m.exposure_id, m.expname.split(".", 1)[0].rsplit("_", 1)[-1])
        if key in by_product:
            inputs[m.expname] = by_product[key]
            exp_row = s.get(Exposure, m.exposure_id)
            roots[product_root(exp_row.filename)] = exp_row.id
            instrument = instrument or exp_row.instrume
    if not inputs:
        raise PermanentJobError(f"job {job.id}: association {asn.asn_name} has no catalogued input product")
    refs: dict[str, str | None] = {}
    names: dict[str, str] = {}
    sums: dict[str, str] = {}
    exp = s.get(Exposure, job.exposure_id) if job.exposure_id else None
    # a stage-3 job's references are selected with its first member's header (jwst: the
    # first science member's, for its prefetch)
    ref_exp = exp if exp is not None else (s.get(Exposure, next(iter(roots.values()))) if roots else None)
    if job.engine == "calib" and ref_exp is not None:
        reftypes = required_reftypes(job.pipeline, crds_header(ref_exp), job.parameters or {})
        try:
            best = compute_bestrefs(settings, s, ref_exp, ctx, reftypes)
        except crdscache.BestrefsError as exc:
            raise PermanentJobError(f"{ref_exp.filename}: best references under {ctx.name}: {exc}") from exc
        for reftype, name in best.items():
            if name == "N/A":
                refs[reftype] = None
                continue
            row = ensure_reference(s, name, reftype, ref_exp.instrume)
            if not row.path:
                raise PermanentJobError(f"reference file {name} ({reftype}) is not in the CRDS cache "
                                        f"{settings.crds_path}")
            refs[reftype] = str(from_stored(row.path, settings.crds_path))
            names[reftype], sums[reftype] = name, row.sha256
    try:
        out = (settings.products_dir / program_component(asn.program)
               / name_component(asn.asn_name, "association name") / f"job-{job.id}-attempt-{job.attempts}")
        under_root(out.parent, settings.products_dir)
    except UnsafePath as exc:
        raise PermanentJobError(f"{asn.asn_name}: {exc}") from exc
    job.output_dir = to_stored(out, settings.data_dir)
    first_path, first_sha = next(iter(inputs.values()))
    return _Work(job.id, job.pipeline, dict(job.parameters or {}), job.exposure_id, first_path, first_sha,
                 asn.program, exp.filename if exp is not None else asn.asn_name, ctx.name,
                 ctx.crds_version or "", refs, names, sums, out, association_id=asn.id, engine=job.engine,
                 asn=dict(asn.content), inputs=inputs, member_roots=roots, instrument=instrument)


_VERIFIED: dict[tuple[str, int, int], str] = {}


def _verify(path: str, expected: str, what: str) -> None:
    """Check a file's SHA-256 against the catalog (memoised on path, size and mtime)."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    got = _VERIFIED.get(key)
    if got is None:
        got = sha256_file(path)
        _VERIFIED[key] = got
    if got != expected:
        raise PermanentJobError(f"{what} {path} has changed on disk: sha256 {got} differs from the catalog's "
                                f"{expected}")


def _renew_lease(settings: Settings, work: _Work, worker: str) -> bool:
    """Extend the lease of a job by ``lease_seconds`` from now, if this attempt still owns it.

    One conditional UPDATE: it matches only while the row is this attempt's (same job id,
    attempt number and worker, status running), so it can never revive a job that was
    recorded, failed, re-queued by the planner or claimed by another worker meanwhile.

    Returns
    -------
    bool
        True if the lease was extended; False if the attempt no longer owns the job.

    Raises
    ------
    sqlalchemy.exc.OperationalError
        If the catalog is unreachable (the heartbeat tries again at its next beat).
    """
    with session_scope(settings.db_url) as s:
        result = s.execute(
            update(Job)
            .where(Job.id == work.job_id, Job.attempts == work.attempt, Job.worker == worker,
                   Job.status == "running")
            .values(lease_expires_at=utcnow() + timedelta(seconds=settings.lease_seconds))
            .execution_options(synchronize_session=False))
        return result.rowcount == 1


class LeaseHeartbeat:
    """Renew a running attempt's lease every ``lease_seconds / 3`` on a daemon thread.

    A live worker thus keeps its job however long the run takes, and the lease
    (``ARCHIVE_LEASE_SECONDS``) only bounds how long a dead worker's job waits before the
    planner re-queues it. The renewal is :func:`_renew_lease` (one short transaction per
    beat; no session is held in between). If the row is no longer this attempt's (the
    planner re-queued it after the lease expired, another worker claimed it, it was
    recorded or failed) the heartbeat stops for good and sets :attr:`lost`; a catalog
    that cannot be reached is logged and tried again at the next beat.

    Used as a context manager around the calibration; :meth:`stop` (on exit) returns only
    when the thread has finished, so no renewal runs concurrently with the transaction
    that records or fails the attempt (which checks ownership itself, under a row lock).

    Parameters
    ----------
    settings : archive.config.Settings
        ``db_url`` and ``lease_seconds``.
    work : _Work
        The claimed attempt (job id, attempt number).
    worker : str
        The worker name the attempt claimed the job with.
    """

    def __init__(self, settings: Settings, work: _Work, worker: str):
        self.settings, self.work, self.worker = settings, work, worker
        self.interval = max(settings.lease_seconds / 3.0, 0.05)
        self.lost = False
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"lease-heartbeat-job-{work.job_id}-attempt-{work.attempt}")

    def start(self) -> LeaseHeartbeat:
        """Start the thread (its first renewal is one interval from now)."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop renewing and wait (at most ``timeout`` s, a renewal in flight) for the thread to end."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("job %s: lease heartbeat still in a renewal after %.0f s", self.work.job_id, timeout)

    def is_alive(self) -> bool:
        """Whether the heartbeat thread is still running."""
        return self._thread.is_alive()

    def __enter__(self) -> LeaseHeartbeat:
        """Start renewing."""
        return self.start()

    def __exit__(self, *exc) -> None:
        """Stop renewing (waits for the thread)."""
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                owned = _renew_lease(self.settings, self.work, self.worker)
            except Exception:  # catalog unreachable: the lease has 2/3 of its time left, try again
                log.warning("job %s: lease not renewed; trying again in %.0f s", self.work.job_id, self.interval,
                            exc_info=True)
                continue
            if not owned:
                self.lost = True
                log.warning("job %s attempt %s: no longer this worker's (lease expired and re-queued or taken "
                            "over); the heartbeat stops and the attempt will not record", self.work.job_id,
                            self.work.attempt)
                return
            self.renewals += 1


def _owns(job: Job, work: _Work, worker: str) -> bool:
    """Whether the job row (read under a row lock) is still the attempt ``work`` of ``worker``.

    Running, or re-queued by the planner after its lease expired but not claimed again:
    the attempt may record. Another worker's claim (a new attempt number and worker), a
    success or a failure mean it may not.
    """
    return job.status in ("running", "queued") and job.attempts == work.attempt and job.worker == worker


def _record(settings: Settings, work: _Work, files: dict[str, Path], timings: dict, worker: str,
            previews: dict | None = None) -> bool:
    """Write the products (and their previews) and mark the job succeeded, once.

    False if another run did it first, or if the job is no longer this attempt's (its lease
    expired and another worker claimed it: that attempt records).
    """
    with session_scope(settings.db_url) as s:
        job = s.execute(select(Job).where(Job.id == work.job_id).with_for_update()).scalar_one()
        if not _owns(job, work, worker):
            return False
        for suffix, path in files.items():
            previous = s.execute(
                select(Product).where(Product.exposure_id == work.exposure_id, Product.suffix == suffix,
                                      Product.is_current.is_(True))
            ).scalars().all()
            for old in previous:
                old.is_current = False
            s.flush()
            product = Product(job_id=job.id, exposure_id=work.exposure_id, filename=path.name,
                              path=to_stored(path, settings.data_dir),
                              suffix=suffix, sha256=sha256_file(path), size_bytes=path.stat().st_size,
                              is_current=True, supersedes_id=previous[0].id if previous else None)
            s.add(product)
            s.flush()
            for reftype, name in work.reference_names.items():
                ref = s.execute(select(ReferenceFile).where(ReferenceFile.name == name)).scalar_one()
                s.add(ProductReference(product_id=product.id, reftype=reftype, reference_file_id=ref.id))
            s.add_all(preview_rows(product.id, (previews or {}).get(suffix, []), settings.data_dir))
        job.status = "succeeded"
        job.finished_at = utcnow()
        job.lease_expires_at = None
        job.worker = worker
        # the row describes the attempt that recorded: its directory and its start
        job.output_dir = to_stored(work.output_dir, settings.data_dir)
        job.started_at = work.started_at or job.started_at
        job.step_timings = timings
    return True


def _record_outputs(settings: Settings, work: _Work, outputs: list[tuple[str, Path, int | None, dict[str, str]]],
                    timings: dict, worker: str, previews: dict[Path, list] | None = None) -> bool:
    """Record a stage-2/3 job's files once: (suffix, path, exposure id or None, {reftype: file}).

    A new product supersedes the current one of the same association, exposure (None: the
    association's own product) and suffix; ``previews`` (by product path) are recorded with
    their product. False if another run recorded the job first or took it over (as :func:`_record`).
    """
    with session_scope(settings.db_url) as s:
        job = s.execute(select(Job).where(Job.id == work.job_id).with_for_update()).scalar_one()
        if not _owns(job, work, worker):
            return False
        for suffix, path, exposure_id, references in outputs:
            same = (Product.exposure_id == exposure_id) if exposure_id is not None else Product.exposure_id.is_(None)
            previous = s.execute(
                select(Product).where(Product.association_id == work.association_id, same, Product.suffix == suffix,
                                      Product.is_current.is_(True))).scalars().all()
            for old in previous:
                old.is_current = False
            s.flush()
            product = Product(job_id=job.id, exposure_id=exposure_id, association_id=work.association_id,
                              filename=path.name, path=to_stored(path, settings.data_dir), suffix=suffix,
                              sha256=sha256_file(path), size_bytes=path.stat().st_size, is_current=True,
                              supersedes_id=previous[0].id if previous else None)
            s.add(product)
            s.flush()
            for reftype, name in references.items():
                ref = ensure_reference(s, name, reftype, work.instrument)
                s.add(ProductReference(product_id=product.id, reftype=reftype, reference_file_id=ref.id))
            s.add_all(preview_rows(product.id, (previews or {}).get(path, []), settings.data_dir))
        job.status = "succeeded"
        job.finished_at = utcnow()
        job.lease_expires_at = None
        job.worker = worker
        # the row describes the attempt that recorded: its directory and its start
        job.output_dir = to_stored(work.output_dir, settings.data_dir)
        job.started_at = work.started_at or job.started_at
        job.step_timings = timings
    return True


def _run_association(settings: Settings, work: _Work) -> tuple[list, dict]:
    """Run a claimed stage-2/3 job with its engine; return (outputs for _record_outputs, timings)."""
    import time

    from calib.pipelines import get_pipeline, release_unreachable
    from calib.products import run_and_save

    from .jwst_engine import run_association

    for _expname, (path, sha) in work.inputs.items():
        _verify(path, sha, "input product")
    t0 = time.perf_counter()
    if work.engine == "jwst":
        files = run_association(work.pipeline, work.asn, {k: v[0] for k, v in work.inputs.items()},
                                work.output_dir, settings.crds_path, work.context, work.params,
                                member_roots=list(work.member_roots))
        outputs = [(f.suffix, f.path, work.member_roots.get(f.member_root) if f.member_root else None,
                    f.references) for f in files]
        if work.exposure_id is not None:  # a stage-2 job: its products are its exposure's
            outputs = [(sfx, path, eid if eid is not None else work.exposure_id, refs)
                       for sfx, path, eid, refs in outputs]
        return outputs, {"jwst": round(time.perf_counter() - t0, 3)}
    for reftype, path in work.references.items():
        if path is not None:
            _verify(path, work.reference_sha256[reftype], f"reference file ({reftype})")
    work.output_dir.mkdir(parents=True, exist_ok=False)
    if get_pipeline(work.pipeline).input_model == "ModelLibrary":   # stage 3: the association is the input
        return _run_calib_level3(work)
    provenance = {"crds_context": work.context, "crds_version": work.crds_version, "cal_version": CAL_VER,
                  "references": dict(work.reference_names)}
    result, files = run_and_save(work.pipeline, work.exposure_path, work.references, work.params, work.output_dir,
                                 product_root(work.filename), provenance)
    timings = dict(getattr(result, "timings", {}) or {})
    del result
    release_unreachable()
    return ([(sfx, Path(path), work.exposure_id, dict(work.reference_names)) for sfx, path in files.items() if path],
            timings)


def _run_calib_level3(work: _Work) -> tuple[list, dict]:
    """Run a native stage-3 pipeline on its association: (outputs for _record_outputs, timings).

    The association is written under the job's ``_run`` directory with each member that has
    a catalogued input pointing at it (absolute path; the others left out); the products are
    named as jwst names them (``<product>_i2d.fits``, ``<product>_cat.ecsv``, one
    ``<member>_<asn_id>_crf.fits`` per member, recorded as that member's exposure's).
    """
    import json
    import time

    from calib.pipelines import release_unreachable
    from calib.products import run_and_save

    from .jwst_engine import RUN_DIR

    t0 = time.perf_counter()
    content = json.loads(json.dumps(work.asn))
    for product in content.get("products", []):
        product["members"] = [dict(m, expname=work.inputs[m["expname"]][0]) for m in product.get("members", [])
                              if m.get("expname") in work.inputs]
    run_dir = work.output_dir / RUN_DIR
    run_dir.mkdir()
    asn_path = run_dir / f"{content.get('asn_id', 'asn')}_{content.get('asn_type', 'asn')}_asn.json"
    asn_path.write_text(json.dumps(content, indent=1))
    name = str((content.get("products") or [{}])[0].get("name") or work.filename)
    # calib stamps on each product only the references of the steps that made it (the i2d
    # carries no R_APCORR: source_catalog reads it later); the catalog rows record them all
    provenance = {"crds_context": work.context, "crds_version": work.crds_version, "cal_version": CAL_VER,
                  "references": dict(work.reference_names)}
    # each member's _crf written as soon as outlier_detection flagged it, the rest at the end
    result, files = run_and_save(work.pipeline, asn_path, work.references, work.params, work.output_dir, name,
                                 provenance)
    timings = dict(getattr(result, "timings", {}) or {})
    timings.setdefault("total", round(time.perf_counter() - t0, 3))
    del result
    release_unreachable()
    asn_id = str(content.get("asn_id") or "")
    roots = work.member_roots or {}
    outputs = []
    for key, path in files.items():
        kind, _, member = key.partition(":")
        owner = None
        if member:
            root = member[: -len(asn_id) - 1] if asn_id and member.endswith("_" + asn_id) else member
            owner = roots.get(root)
        outputs.append((kind, Path(path), owner, dict(work.reference_names)))
    return outputs, timings


def _fail(settings: Settings, job_id: int, message: str, retryable: bool, while_claiming: str | None = None,
          owner: str | None = None, attempt: int | None = None) -> None:
    """Mark a job failed (unless it succeeded meanwhile).

    ``while_claiming``: the worker whose claim failed (its lease was rolled back, so the
    attempt is counted here). ``owner`` and ``attempt``: the worker and attempt number
    that failed; if another claim has taken the job over since, its attempt decides.
    """
    with session_scope(settings.db_url) as s:
        job = s.execute(select(Job).where(Job.id == job_id).with_for_update()).scalar_one_or_none()
        if owner and job is not None and (job.worker != owner or (attempt is not None and job.attempts != attempt)):
            return
        if job is not None and job.status != "succeeded":
            if while_claiming:
                job.attempts += 1
                job.worker = while_claiming
            job.status = "failed"
            job.retryable = retryable
            job.error = message[:4000]
            job.finished_at = utcnow()
            job.lease_expires_at = None


def _remove_other_attempts(work: _Work) -> None:
    """Delete the directories of a recorded job's other attempts.

    An attempt whose worker was killed leaves its directory behind, perhaps with a partial
    temporary file. (A slower attempt still running finds its directory gone, fails to
    write, and its _record/_fail leave the succeeded job alone.)
    """
    for other in work.output_dir.parent.glob(f"job-{work.job_id}-attempt-*"):
        if other != work.output_dir:
            remove_tree_quietly(other)


def worker_name() -> str:
    """Return this process's worker name, ``<host>:<pid>`` (recorded on the jobs it runs)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def execute_job(settings: Settings, job_id: int, worker: str | None = None) -> str:
    """Run one job to completion; the body of the Celery task.

    Returns
    -------
    str
        ``succeeded``, ``skipped`` (already done, or leased by another live worker) or
        ``duplicate`` (another run recorded it first, or took the job over after this
        attempt's lease expired; this run's files were removed).

    Raises
    ------
    PermanentJobError
        Bad input or reference (the job is marked failed; do not retry).
    Exception
        Anything else (database, broker, disk): the job is marked failed and the error
        re-raised so the task layer can retry it.
    """
    from calib.pipelines import release_unreachable  # numba kernels: loaded when used
    from calib.products import run_and_save

    worker = worker or worker_name()
    try:
        work = _claim(settings, job_id, worker)
    except PermanentJobError as exc:  # e.g. a reference file missing from the cache: say so in the catalog
        _fail(settings, job_id, f"{type(exc).__name__}: {exc}", retryable=False, while_claiming=worker)
        raise
    except TRANSIENT:
        raise  # the catalog or the disk is unreachable: the task layer retries
    except Exception as exc:  # anything else while claiming is a fault of this job's data: record it
        _fail(settings, job_id, f"{type(exc).__name__}: {exc}", retryable=False, while_claiming=worker)
        raise PermanentJobError(f"job {job_id}: {type(exc).__name__}: {exc}") from exc
    if work is None:
        return "skipped"
    if work.association_id is not None:
        return _run_recorded(settings, job_id, work, worker, lambda: _run_association_job(settings, work),
                             lambda r: _record_outputs(settings, work, r[0], r[1], worker, r[2]))

    def run_exposure():
        _verify(work.exposure_path, work.exposure_sha256, "input exposure")
        for reftype, path in work.references.items():
            if path is not None:
                _verify(path, work.reference_sha256[reftype], f"reference file ({reftype})")
        work.output_dir.mkdir(parents=True, exist_ok=False)
        provenance = {"crds_context": work.context, "crds_version": work.crds_version, "cal_version": CAL_VER,
                      "references": dict(work.reference_names)}
        # products written as soon as they are final (image2's _cal before resample)
        result, files = run_and_save(work.pipeline, work.exposure_path, work.references, work.params,
                                     work.output_dir, product_root(work.filename), provenance)
        files = {k: Path(v) for k, v in files.items() if v}
        previews = {k: draw_quietly(v, k) for k, v in files.items()}  # PNGs beside each image product
        timings = dict(getattr(result, "timings", {}) or {})
        del result
        release_unreachable()      # the products' arrays, before the worker's next job
        return files, timings, previews

    return _run_recorded(settings, job_id, work, worker, run_exposure,
                         lambda r: _record(settings, work, r[0], r[1], worker, r[2]))


def _run_association_job(settings: Settings, work: _Work) -> tuple[list, dict, dict]:
    """Run a claimed stage-2/3 job; return (outputs, timings, previews) for :func:`_record_outputs`."""
    outputs, timings = _run_association(settings, work)
    previews = {path: draw_quietly(path, sfx) for sfx, path, _, _ in outputs}  # PNGs beside image products
    return outputs, timings, previews


def _run_recorded(settings: Settings, job_id: int, work: _Work, worker: str, run, record) -> str:
    """Run a claimed job under the lease heartbeat, then record it once (every job's envelope).

    ``run()`` makes the files (in ``work.output_dir``) and returns what ``record(result)``
    needs; ``record`` returns False when another attempt recorded first or took the job
    over. On any failure the attempt's directory is removed and the job marked failed:
    not retryable for bad input or references (:class:`CalibError`,
    :class:`PermanentJobError`, re-raised as the latter), retryable for anything else
    (re-raised as it is). Returns ``succeeded`` or ``duplicate`` as :func:`execute_job`.
    """
    try:
        with LeaseHeartbeat(settings, work, worker):  # renews the lease while the job runs
            result = run()
    except (CalibError, PermanentJobError) as exc:
        remove_tree_quietly(work.output_dir)
        _fail(settings, job_id, f"{type(exc).__name__}: {exc}", retryable=False, owner=worker, attempt=work.attempt)
        raise PermanentJobError(str(exc)) from exc
    except BaseException as exc:
        remove_tree_quietly(work.output_dir)
        _fail(settings, job_id, f"{type(exc).__name__}: {exc}", retryable=True, owner=worker, attempt=work.attempt)
        raise
    if not record(result):
        remove_tree_quietly(work.output_dir)
        return "duplicate"
    _remove_other_attempts(work)
    try:  # the comparison with the superseded products is a report: it never fails the job
        compare_with_superseded(settings, job_id)
    except Exception:
        log.exception("job %s: comparison with the superseded product failed", job_id)
    return "succeeded"


__all__ = [
    "CAL_VER", "LeaseHeartbeat", "PermanentJobError", "TRANSIENT", "execute_job", "software_versions", "param_hash",
    "product_root", "worker_name",
]
