"""The product graph: stage-2 and stage-3 jobs from associations (DESIGN.md, "The product graph").

A Level-2 association's asn_type names its stage-2 pipeline and a Level-3's its stage-3
pipeline (:func:`archive.catalog.pipeline_policy.association_pipeline`). A job's inputs are
its members' current products of the previous stage, named by the member's ``expname``
(``<root>_rate.fits`` -> the exposure's current ``rate``; ``<root>_cal.fits`` -> its current
``cal``), recorded with their sha256 in ``job_inputs``. A job is

- *ready* when every input is current and not stale, and then owed unless its latest
  succeeded job read exactly those products and its products are current and not stale;
- *waiting* while an input is still to be made or remade (its member's upstream job is
  queued, running, or not created yet);
- *held* when a member's upstream job failed (or a member is not in the catalog): the
  plan says which member and why, and nothing is sent.

Staleness flows down by the same rule: a remade rate makes the cal that read the old one
owed, and a remade cal the i2d. Stage 1 is never rerun for it.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import object_session
from sqlalchemy.orm.attributes import set_committed_value

from calib import __version__ as CAL_VER

from ..catalog.models import Association, AssociationMember, Job, JobInput, Product, as_utc
from ..catalog.pipeline_policy import association_pipeline
from ..catalog.queries import program_id
from ..execution.engines import engine_for
from ..execution.runner import software_versions


@dataclass
class _Current:
    id: int
    sha256: str
    stale: bool
    job_id: int


def member_suffix(expname: str) -> str:
    """Return the product suffix a member's ``expname`` names (``jw..._rate.fits`` -> ``rate``)."""
    return expname.split(".", 1)[0].rsplit("_", 1)[-1]


def requeue_expired(job: Job, now) -> bool:
    """Re-queue a running job whose lease expired at ``now``, if it still has (in the catalog).

    One conditional UPDATE in the job's session: status running, the same attempt number
    and a lease at or before ``now``. Between the planner's read and this write the
    worker's :class:`archive.execution.runner.LeaseHeartbeat` may have renewed the lease,
    the attempt recorded, or another claim taken the job: then nothing is changed.

    Returns
    -------
    bool
        True if the job was set back to queued (``job.status`` is then ``queued`` too).
    """
    s = object_session(job)
    result = s.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == "running", Job.attempts == job.attempts,
               or_(Job.lease_expires_at.is_(None), Job.lease_expires_at <= now))
        .values(status="queued")
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        s.refresh(job)
        return False
    set_committed_value(job, "status", "queued")
    return True


def revive(job: Job, *, now, broker_epoch, retry_failed: bool, dry_run: bool, requeue_before) -> tuple[str, str, bool]:
    """Decide what to do with a job that has not succeeded: (action, detail, send).

    ``retry`` a failed job (with ``retry_failed``, else ``failed``); ``requeue`` a running job
    whose lease expired or a queued job that is not in the broker (never sent, sent under
    another broker epoch, or longer ago than ``requeue_before``); otherwise ``pending``.
    The job row is updated accordingly unless ``dry_run``. A running job is re-queued with
    a conditional UPDATE (:func:`requeue_expired`): if its worker's heartbeat renewed the
    lease, or the job was recorded, since the row was read, it stays ``pending``.
    """
    send = False
    if job.status == "failed":
        if retry_failed:
            action, detail, send = "retry", f"failed before: {(job.error or '')[:80]}", True
            if not dry_run:
                job.status, job.error, job.retryable = "queued", None, None
        else:
            action, detail = "failed", (job.error or "")[:80]
    elif job.status == "running":
        if (as_utc(job.lease_expires_at) or now) <= now:
            action, detail, send = "requeue", f"lease of {job.worker} expired", True
            if not dry_run and not requeue_expired(job, now):
                action, detail, send = "pending", f"running on {job.worker} (lease renewed)", False
        else:
            action, detail = "pending", f"running on {job.worker}"
    else:  # queued
        if broker_epoch is None or job.broker_epoch is None:
            action, detail, send = "requeue", "queued, not in a broker", True
        elif job.broker_epoch != broker_epoch:
            action, detail, send = "requeue", "the broker restarted since it was sent", True
        elif (as_utc(job.enqueued_at) or now) < requeue_before:
            action, detail, send = "requeue", "sent long ago and not started", True
        else:
            action, detail = "pending", "queued"
    return action, detail, send


def plan_graph(s, ctx, result, *, item_cls, program: str | None, pipeline: str | None, params: dict, phash: str,
               dry_run: bool, campaign_id: int | None, stale_only: bool, retry_failed: bool,
               broker_epoch: str | None, now, requeue_before) -> None:
    """Add the stage-2/3 items (and jobs, unless ``dry_run``) of every association to ``result``.

    Level 2 before Level 3. Items: ``new``, ``retry``, ``requeue``, ``pending``, ``failed``,
    ``current``, ``unsupported`` as for stage 1, plus ``waiting`` (an input is still being
    made) and ``held`` (a member's upstream job failed; the detail names it and its error).
    ``stale_only`` (beat, ``reprocess --stale``) considers only associations processed
    before or whose members' stage 1 has run, so work sent through a broker (and a
    campaign) advances through the stages with each beat, without starting the graph of
    exposures nobody asked to process.
    """
    q = select(Association).order_by(Association.level, Association.id)
    if program:
        q = q.where(Association.program == program_id(program).lstrip("0").zfill(5))
    asns = s.execute(q).scalars().all()
    if not asns:
        return
    current: dict[tuple[int, str], _Current] = {}
    for p in s.execute(select(Product).where(Product.is_current.is_(True), Product.exposure_id.is_not(None))).scalars():
        current[(p.exposure_id, p.suffix)] = _Current(p.id, p.sha256, p.stale_campaign_id is not None, p.job_id)
    campaign_jobs = set(s.execute(select(Job.id).where(Job.campaign_id.is_not(None))).scalars())
    # the latest job that makes each exposure's stage-1 product / stage-2 product (its status explains a wait)
    upstream: dict[tuple[int, int], Job] = {}
    level_of = {a.id: a.level for a in asns}
    for job in s.execute(select(Job).where(Job.exposure_id.is_not(None)).order_by(Job.id)).scalars():
        upstream[(job.exposure_id, level_of.get(job.association_id, 1) if job.association_id else 1)] = job
    members: dict[int, list[AssociationMember]] = {}
    for m in s.execute(select(AssociationMember).where(AssociationMember.association_id.in_([a.id for a in asns]))
                       .order_by(AssociationMember.id)).scalars():
        members.setdefault(m.association_id, []).append(m)
    jobs_of: dict[int, list[Job]] = {}
    for job in s.execute(select(Job).where(Job.association_id.in_([a.id for a in asns])).order_by(Job.id)).scalars():
        jobs_of.setdefault(job.association_id, []).append(job)
    for asn in asns:
        pipe = association_pipeline(asn.asn_type)
        if pipeline and pipe != pipeline:
            continue
        engine = engine_for(pipe)
        if engine is None:
            result.items.append(item_cls(asn.asn_name, pipe, "unsupported",
                                         f"asn_type {asn.asn_type}: no engine runs {pipe}"))
            continue
        inputs: list[tuple[int, _Current]] = []
        waiting, held = [], []
        for m in members.get(asn.id, []):
            if m.exposure_id is None:
                held.append(f"{m.expname}: its exposure is not in the catalog")
                continue
            suffix = member_suffix(m.expname)
            cur = current.get((m.exposure_id, suffix))
            if cur is not None and not cur.stale:
                inputs.append((m.exposure_id, cur))
                continue
            up = upstream.get((m.exposure_id, asn.level - 1 if asn.level > 1 else 1))
            if up is not None and up.status == "failed" and up.retryable is False:
                held.append(f"{m.expname}: job {up.id} ({up.pipeline}) failed: {(up.error or '')[:160]}")
            else:
                waiting.append(f"{m.expname} ({'stale' if cur is not None else 'not made yet'})")
        history = jobs_of.get(asn.id, [])
        started = any((m.exposure_id, 1) in upstream for m in members.get(asn.id, []))
        if stale_only and not history and not started:
            continue   # beat advances what has been started (a member's stage 1 ran), nothing else
        if held:
            result.items.append(item_cls(asn.asn_name, pipe, "held", "; ".join(held)))
            continue
        if waiting:
            result.items.append(item_cls(asn.asn_name, pipe, "waiting", "waiting for " + ", ".join(waiting[:5])
                                         + (f" and {len(waiting) - 5} more" if len(waiting) > 5 else "")))
            continue
        wanted = {c.id for _, c in inputs}
        done = [j for j in history if j.status == "succeeded" and j.param_hash == phash]
        stale_cid = None
        if done:
            last = done[-1]
            read = set(s.execute(select(JobInput.product_id).where(JobInput.job_id == last.id)).scalars())
            made = s.execute(select(Product).where(Product.job_id == last.id)).scalars().all()
            if read == wanted and made and all(p.is_current and p.stale_campaign_id is None for p in made):
                result.items.append(item_cls(asn.asn_name, pipe, "current", f"job {last.id}", last.id))
                continue
            stale_cid = next((p.stale_campaign_id for p in made if p.stale_campaign_id is not None), None)
            why = f"stale (campaign {stale_cid})" if stale_cid else "an input was remade"
        else:
            why = "never processed"
        owner = (campaign_id or stale_cid
                 or next((j.campaign_id for j in reversed(history) if j.campaign_id), None)
                 or next((s.get(Job, c.job_id).campaign_id for _, c in inputs if c.job_id in campaign_jobs), None))
        open_job = next((j for j in reversed(history) if j.status != "succeeded" and j.context_id == ctx.id
                         and j.cal_version == CAL_VER and j.param_hash == phash), None)
        if open_job is not None:
            action, detail, send = revive(open_job, now=now, broker_epoch=broker_epoch, retry_failed=retry_failed,
                                          dry_run=dry_run, requeue_before=requeue_before)
            if send and not dry_run:
                recorded = set(s.execute(select(JobInput.product_id).where(JobInput.job_id == open_job.id)).scalars())
                if recorded != wanted:     # an input was remade since the job was created: read the new one
                    s.execute(delete(JobInput).where(JobInput.job_id == open_job.id))
                    for eid, c in inputs:
                        s.add(JobInput(job_id=open_job.id, exposure_id=eid, product_id=c.id, sha256=c.sha256))
                open_job.enqueued_at, open_job.broker_epoch = now, broker_epoch
                if owner and open_job.campaign_id is None:
                    open_job.campaign_id = owner
            result.items.append(item_cls(asn.asn_name, pipe, action, detail, open_job.id))
            continue
        item = item_cls(asn.asn_name, pipe, "new", why)
        if not dry_run:
            science = next((m.exposure_id for m in members.get(asn.id, []) if m.exptype == "science"), None)
            job = Job(pipeline=pipe, engine=engine, exposure_id=science if asn.level == 2 else None,
                      association_id=asn.id, context_id=ctx.id, campaign_id=owner, cal_version=CAL_VER,
                      software_versions=software_versions(), parameters=params, param_hash=phash,
                      status="queued", enqueued_at=now, broker_epoch=broker_epoch)
            s.add(job)
            s.flush()
            for eid, c in inputs:
                s.add(JobInput(job_id=job.id, exposure_id=eid, product_id=c.id, sha256=c.sha256))
            item.job_id = job.id
        result.items.append(item)
