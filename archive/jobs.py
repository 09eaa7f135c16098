"""Jobs: planning what the catalog owes, and executing one job idempotently.

A job is owed when an exposure has no current product made under the context in use,
this software version and these parameters. :func:`plan` creates (or revives) job rows;
:func:`execute_job` is what a Celery task calls: it leases the job in a short
transaction, calibrates with no database session open, and records the products in a
second short transaction. Running a job twice is harmless: a succeeded job is not
redone, products are written atomically into the job's own directory, and the rows
that mark it done are written once (STYLE.md, "Idempotent work under an at-least-once
queue").
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from calib import __version__ as CAL_VER

from .crds import cache as crdscache
from .config import Settings
from .catalog.db import session_scope
from .catalog.models import Exposure, Job, JobInput, Product, ProductReference, ReferenceFile
from .catalog.pipeline_policy import engine_for
from .crds.references import compute_bestrefs, context_in_use, ensure_reference
from .ingest.storage import remove_tree_quietly, sha256_file

log = logging.getLogger(__name__)

#: where a remake for new software starts: the first step of calwebb_detector1
SOFTWARE_FIRST_STEP = "group_scale"

SOFTWARE = ("jwst-archive", "numpy", "numba", "astropy", "crds", "stdatamodels", "sqlalchemy", "celery")


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
    """``jw..._uncal.fits`` -> ``jw...`` (the root the jwst products share)."""
    name = filename[:-5] if filename.endswith(".fits") else filename
    return name[: -len("_uncal")] if name.endswith("_uncal") else name


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(dt: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes for timezone-aware columns; they are UTC.
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


# --------------------------------------------------------------------------- planning
@dataclass
class PlanItem:
    """One exposure's line in a plan."""

    exposure: str
    pipeline: str
    action: str  # new | retry | requeue | pending | failed | current | unsupported
    detail: str = ""
    job_id: int | None = None


@dataclass
class Plan:
    context: str
    cal_version: str
    param_hash: str
    items: list[PlanItem] = field(default_factory=list)

    @property
    def job_ids(self) -> list[int]:
        """Jobs to send: new, retried and re-queued ones."""
        return [i.job_id for i in self.items if i.action in ("new", "retry", "requeue") and i.job_id]

    def count(self, action: str) -> int:
        return sum(1 for i in self.items if i.action == action)


def _select_exposures(q, program, instrument, exp_type):
    if program:
        q = q.where(Exposure.program == program.lstrip("0").rjust(5, "0"))
    if instrument:
        q = q.where(Exposure.instrume == instrument.upper())
    if exp_type:
        q = q.where(Exposure.exp_type == exp_type.upper())
    return q


def _pinned_context(settings: Settings, context: str | None, dry_run: bool) -> None:
    """Bring the catalog's context in use in line with ``CRDS_CONTEXT`` (opening a
    campaign for what the change makes stale; not in a dry run, which plans under the
    context in use); refuse ``--context`` for another one."""
    from .campaigns import switch_context
    from .catalog.models import CrdsContext
    from .crds.references import ContextError

    with session_scope(settings.db_url) as s:
        row = s.execute(select(CrdsContext).where(CrdsContext.in_use.is_(True))).scalar_one_or_none()
        in_use = row.name if row else None
    if context and in_use and context != in_use:
        raise ContextError(f"{context} is not the context in use ({in_use}): run 'archive crds use {context}' "
                           f"first, which also marks what it makes stale")
    wanted = context or settings.crds_context
    if wanted and wanted != in_use and not (dry_run and in_use):
        switch_context(settings, wanted, reason=f"CRDS context {in_use} -> {wanted} (pinned by configuration)")


def plan(settings: Settings, *, program: str | None = None, instrument: str | None = None,
         exp_type: str | None = None, context: str | None = None,
         pipeline: str | None = "calwebb_detector1", params: dict | None = None,
         dry_run: bool = False, campaign_id: int | None = None, stale_only: bool = False,
         retry_failed: bool = True, broker_epoch: str | None = None) -> Plan:
    """Decide, from the catalog, which jobs are owed, and (unless ``dry_run``) create them.

    An exposure is *current* when it has a current product of this pipeline made with
    these parameters that no campaign has marked stale (a new context marks stale exactly
    the products whose references it changes; new software only when the operator says so:
    :mod:`archive.campaigns`). Otherwise it is owed a job under the context in use:

    - ``new``: no job yet (its campaign is the one that made its product stale);
    - ``retry``: its job failed (only with ``retry_failed``; the beat schedule does not
      retry failures, which would fail again until someone fixes the input);
    - ``requeue``: running with an expired lease, or queued but lost: sent under another
      broker epoch (the broker restarted), never sent, or sent longer ago than
      ``requeue_after_seconds``; with ``broker_epoch`` None (eager execution) every queued
      job is sent;
    - ``pending``: queued in the broker or running under a live lease: nothing to do;
    - ``failed``: failed and not retried; ``unsupported``: no engine runs its pipeline.

    ``stale_only`` limits the plan to exposures with a stale product or an unfinished
    job (what ``archive reprocess --stale`` and the beat schedule do). Jobs to send are
    stamped with ``broker_epoch`` and the time.

    Raises
    ------
    archive.crds.references.ContextError
        If no CRDS context is configured or in use, or ``context`` is not the one in use.
    """
    from .campaigns import close_finished
    from .catalog.models import CrdsContext

    params = params or {}
    phash = param_hash(params)
    now = _now()
    requeue_before = now - timedelta(seconds=settings.requeue_after_seconds)
    _pinned_context(settings, context, dry_run)
    with session_scope(settings.db_url) as s:
        ctx = s.execute(select(CrdsContext).where(CrdsContext.in_use.is_(True))).scalar_one_or_none()
        if ctx is None:
            ctx = context_in_use(settings, s)
        result = Plan(context=ctx.name, cal_version=CAL_VER, param_hash=phash)
        # current products by exposure: fresh (not stale) and made this way
        current: dict[int, int] = {}
        stale: dict[int, int] = {}
        cq = (select(Product.exposure_id, Product.stale_campaign_id, Job.id, Job.param_hash, Job.pipeline)
              .join(Job, Job.id == Product.job_id).where(Product.is_current.is_(True), Job.status == "succeeded"))
        for eid, stale_cid, jid, jhash, jpipe in s.execute(cq):
            if stale_cid is not None:
                stale[eid] = stale_cid
            elif jhash == phash:
                current.setdefault(eid, jid)
        open_jobs: dict[int, Job] = {}
        for job in s.execute(select(Job).where(Job.context_id == ctx.id, Job.cal_version == CAL_VER,
                                               Job.param_hash == phash, Job.status != "succeeded")
                             .order_by(Job.id)).scalars():
            open_jobs[job.exposure_id] = job  # the latest one wins
        q = _select_exposures(select(Exposure).order_by(Exposure.filename), program, instrument, exp_type)
        if stale_only:
            ids = set(stale) | set(open_jobs)
            if not ids:
                return result
            q = q.where(Exposure.id.in_(sorted(ids))) if len(ids) < 30000 else q
        for exp in s.execute(q).scalars():
            if stale_only and exp.id not in stale and exp.id not in open_jobs:
                continue
            needed = exp.stage1_pipeline
            if (pipeline and needed != pipeline) or engine_for(needed) is None:
                if engine_for(needed) is None:
                    result.items.append(PlanItem(exp.filename, needed, "unsupported",
                                                 f"{exp.exp_type} needs {needed}: not supported yet"))
                continue
            if exp.id in current and exp.id not in stale:
                result.items.append(PlanItem(exp.filename, needed, "current", f"job {current[exp.id]}",
                                             current[exp.id]))
                continue
            owner = campaign_id or stale.get(exp.id)
            job = open_jobs.get(exp.id)
            if job is not None and job.pipeline == needed:
                send = False
                if job.status == "failed":
                    if retry_failed:
                        action, detail, send = "retry", f"failed before: {(job.error or '')[:80]}", True
                        if not dry_run:
                            job.status, job.error, job.retryable = "queued", None, None
                    else:
                        action, detail = "failed", (job.error or "")[:80]
                elif job.status == "running":
                    if (_aware(job.lease_expires_at) or now) <= now:
                        action, detail, send = "requeue", f"lease of {job.worker} expired", True
                        if not dry_run:
                            job.status = "queued"
                    else:
                        action, detail = "pending", f"running on {job.worker}"
                else:  # queued
                    if broker_epoch is None or job.broker_epoch is None:
                        action, detail, send = "requeue", "queued, not in a broker", True
                    elif job.broker_epoch != broker_epoch:
                        action, detail, send = "requeue", "the broker restarted since it was sent", True
                    elif (_aware(job.enqueued_at) or now) < requeue_before:
                        action, detail, send = "requeue", "sent long ago and not started", True
                    else:
                        action, detail = "pending", "queued"
                if send and not dry_run:
                    job.enqueued_at, job.broker_epoch = now, broker_epoch
                    if owner and job.campaign_id is None:
                        job.campaign_id = owner
                result.items.append(PlanItem(exp.filename, needed, action, detail, job.id))
                continue
            item = PlanItem(exp.filename, needed, "new",
                            f"stale (campaign {stale[exp.id]})" if exp.id in stale else "never processed")
            if not dry_run:
                job = Job(pipeline=needed, engine=engine_for(needed), exposure_id=exp.id, context_id=ctx.id,
                          campaign_id=owner, cal_version=CAL_VER, software_versions=software_versions(),
                          parameters=params, param_hash=phash, status="queued", enqueued_at=now,
                          broker_epoch=broker_epoch)
                s.add(job)
                s.flush()
                s.add(JobInput(job_id=job.id, exposure_id=exp.id, sha256=exp.sha256))
                item.job_id = job.id
            result.items.append(item)
        if dry_run:
            s.rollback()
        else:
            close_finished(s)
    return result


def unsend(settings: Settings, job_ids: list[int]) -> None:
    """Forget that jobs were sent (the broker refused them), so the next plan sends them."""
    with session_scope(settings.db_url) as s:
        for start in range(0, len(job_ids), 5000):
            s.execute(update(Job).where(Job.id.in_(job_ids[start:start + 5000]), Job.status == "queued")
                      .values(broker_epoch=None, enqueued_at=None))


# --------------------------------------------------------------------------- execution
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
    from calib.pipelines.detector1 import reftypes_for

    now = _now()
    with session_scope(settings.db_url) as s:
        job = s.execute(select(Job).where(Job.id == job_id).with_for_update(skip_locked=True)).scalar_one_or_none()
        if job is None:
            # unknown id, or another worker holds its row lock right now (PostgreSQL)
            return None
        if job.status == "succeeded":
            return None
        if job.status == "failed" and job.retryable is False:
            return None  # a duplicate message of a job that failed for good; the planner revives it
        if job.status == "running" and (_aware(job.lease_expires_at) or now) > now and job.worker != worker:
            return None  # leased by a live worker
        exp = s.get(Exposure, job.exposure_id)
        job.status = "running"
        job.attempts += 1
        job.started_at = now
        job.worker = worker
        job.lease_expires_at = now + timedelta(seconds=settings.lease_seconds)
        job.error = None
        from .catalog.models import CrdsContext

        ctx = s.get(CrdsContext, job.context_id)
        reftypes = reftypes_for(exp.instrume, exp.exp_type)
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
                raise PermanentJobError(f"reference file {name} ({reftype}) for {exp.filename} is not in the CRDS cache "
                                        f"{settings.crds_path}")
            refs[reftype] = row.path
            names[reftype] = name
            sums[reftype] = row.sha256
        # one directory per attempt: a slow run whose lease was taken over never shares files
        out = (settings.products_dir / (exp.program or "unknown") / product_root(exp.filename)
               / f"job-{job.id}-attempt-{job.attempts}")
        job.output_dir = str(out)
        return _Work(job.id, job.pipeline, dict(job.parameters or {}), exp.id, exp.storage_path, exp.sha256,
                     exp.program or "unknown", exp.filename, ctx.name, ctx.crds_version or "", refs, names, sums, out)


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
        raise PermanentJobError(f"{what} {path} has changed on disk: sha256 {got} differs from the catalog's {expected}")


def _record(settings: Settings, work: _Work, files: dict[str, Path], timings: dict, worker: str) -> bool:
    """Write the products and mark the job succeeded, once. False if another run did it first."""
    with session_scope(settings.db_url) as s:
        job = s.execute(select(Job).where(Job.id == work.job_id).with_for_update()).scalar_one()
        if job.status == "succeeded":
            return False
        for suffix, path in files.items():
            previous = s.execute(
                select(Product).where(Product.exposure_id == work.exposure_id, Product.suffix == suffix,
                                      Product.is_current.is_(True))
            ).scalars().all()
            for old in previous:
                old.is_current = False
            s.flush()
            product = Product(job_id=job.id, exposure_id=work.exposure_id, filename=path.name, path=str(path),
                              suffix=suffix, sha256=sha256_file(path), size_bytes=path.stat().st_size,
                              is_current=True, supersedes_id=previous[0].id if previous else None)
            s.add(product)
            s.flush()
            for reftype, name in work.reference_names.items():
                ref = s.execute(select(ReferenceFile).where(ReferenceFile.name == name)).scalar_one()
                s.add(ProductReference(product_id=product.id, reftype=reftype, reference_file_id=ref.id))
        job.status = "succeeded"
        job.finished_at = _now()
        job.lease_expires_at = None
        job.worker = worker
        job.step_timings = timings
    return True


def _fail(settings: Settings, job_id: int, message: str, retryable: bool, while_claiming: str | None = None,
          owner: str | None = None) -> None:
    """Mark a job failed. ``while_claiming``: the worker whose claim failed (its lease was
    rolled back, so the attempt is counted here). ``owner``: the worker whose attempt
    failed; if another worker has taken the lease over since, its attempt decides."""
    with session_scope(settings.db_url) as s:
        job = s.execute(select(Job).where(Job.id == job_id).with_for_update()).scalar_one_or_none()
        if owner and job is not None and job.status == "running" and job.worker != owner:
            return
        if job is not None and job.status != "succeeded":
            if while_claiming:
                job.attempts += 1
                job.worker = while_claiming
            job.status = "failed"
            job.retryable = retryable
            job.error = message[:4000]
            job.finished_at = _now()
            job.lease_expires_at = None


def _remove_other_attempts(work: _Work) -> None:
    """Once a job is recorded, delete the directories of its other attempts: one whose
    worker was killed leaves its directory behind, perhaps with a partial temporary file.
    (A slower attempt still running finds its directory gone, fails to write, and its
    _record/_fail leave the succeeded job alone.)"""
    for other in work.output_dir.parent.glob(f"job-{work.job_id}-attempt-*"):
        if other != work.output_dir:
            remove_tree_quietly(other)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def execute_job(settings: Settings, job_id: int, worker: str | None = None) -> str:
    """Run one job to completion; the body of the Celery task.

    Returns
    -------
    str
        ``succeeded``, ``skipped`` (already done, or leased by another live worker) or
        ``duplicate`` (another run recorded it first; this run's files were removed).

    Raises
    ------
    PermanentJobError
        Bad input or reference (the job is marked failed; do not retry).
    Exception
        Anything else (database, broker, disk): the job is marked failed and the error
        re-raised so the task layer can retry it.
    """
    from calib.errors import CalibError
    from calib.pipelines.detector1 import release_unreachable, run_detector1
    from calib.products import save_products

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
    try:
        _verify(work.exposure_path, work.exposure_sha256, "input exposure")
        for reftype, path in work.references.items():
            if path is not None:
                _verify(path, work.reference_sha256[reftype], f"reference file ({reftype})")
        work.output_dir.mkdir(parents=True, exist_ok=False)
        result = run_detector1(work.exposure_path, work.references, work.params)
        provenance = {"crds_context": work.context, "crds_version": work.crds_version, "cal_version": CAL_VER,
                      "references": dict(work.reference_names)}
        files = save_products(result, work.output_dir, product_root(work.filename), provenance)
        files = {k: Path(v) for k, v in files.items() if v}
        timings = dict(getattr(result, "timings", {}) or {})
        del result
        release_unreachable()      # the products' arrays, before the worker's next job
    except (CalibError, PermanentJobError) as exc:
        remove_tree_quietly(work.output_dir)
        _fail(settings, job_id, f"{type(exc).__name__}: {exc}", retryable=False, owner=worker)
        raise PermanentJobError(str(exc)) from exc
    except BaseException as exc:
        remove_tree_quietly(work.output_dir)
        _fail(settings, job_id, f"{type(exc).__name__}: {exc}", retryable=True, owner=worker)
        raise
    if not _record(settings, work, files, timings, worker):
        remove_tree_quietly(work.output_dir)
        return "duplicate"
    _remove_other_attempts(work)
    try:  # the comparison with the superseded product is a report: it never fails the job
        from .campaigns import compare_with_superseded

        compare_with_superseded(settings, job_id)
    except Exception:
        log.exception("job %s: comparison with the superseded product failed", job_id)
    return "succeeded"


def job_summary(settings: Settings) -> dict[str, int]:
    """Counts of jobs by status."""
    from sqlalchemy import func

    with session_scope(settings.db_url) as s:
        return dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())


__all__ = [
    "Plan", "PlanItem", "PermanentJobError", "plan", "unsend", "execute_job", "software_versions", "param_hash",
    "product_root", "job_summary", "worker_name",
]
