"""The planner: which jobs the catalog owes, created and sent.

A job is owed when an exposure has no current product made under the context in use,
this software version and these parameters. :func:`plan` creates (or revives) the job
rows and :func:`plan_and_send` sends them through a dispatcher
(:mod:`archive.execution.dispatch`): in-process, or through the broker. The catalog, not
the broker, is the source of truth for what must run: a job whose message was lost is
sent again by the next plan.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update

from calib import __version__ as CAL_VER

from ..catalog.db import session_scope
from ..catalog.models import Exposure, Job, JobInput, Product, utcnow
from ..catalog.pipeline_policy import STAGE1_PIPELINES
from ..catalog.queries import in_use_context, program_id
from ..config import Settings
from ..crds.references import ContextError, context_in_use
from ..execution.dispatch import Dispatcher, get_dispatcher
from ..execution.engines import engine_for
from ..execution.runner import param_hash, software_versions
from .campaigns import close_finished, switch_context
from .graph import plan_graph, revive


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
    """What the catalog owes under a context, software version and parameters: one item per exposure."""

    context: str
    cal_version: str
    param_hash: str
    items: list[PlanItem] = field(default_factory=list)

    @property
    def job_ids(self) -> list[int]:
        """Jobs to send: new, retried and re-queued ones."""
        return [i.job_id for i in self.items if i.action in ("new", "retry", "requeue") and i.job_id]

    def count(self, action: str) -> int:
        """Return how many items have ``action`` (new, retry, requeue, pending, failed, current, unsupported)."""
        return sum(1 for i in self.items if i.action == action)


def _select_exposures(q, program, instrument, exp_type):
    if program:
        q = q.where(Exposure.program == program_id(program))
    if instrument:
        q = q.where(Exposure.instrume == instrument.upper())
    if exp_type:
        q = q.where(Exposure.exp_type == exp_type.upper())
    return q


def _pinned_context(settings: Settings, context: str | None, dry_run: bool) -> None:
    """Bring the catalog's context in use in line with ``CRDS_CONTEXT``.

    A change opens a campaign for what it makes stale (not in a dry run, which plans
    under the context in use); ``--context`` naming another context than the one in use
    is refused.
    """
    with session_scope(settings.db_url) as s:
        row = in_use_context(s)
        in_use = row.name if row else None
    if context and in_use and context != in_use:
        raise ContextError(f"{context} is not the context in use ({in_use}): run 'archive crds use {context}' "
                           f"first, which also marks what it makes stale")
    wanted = context or settings.crds_context
    if wanted and wanted != in_use and not (dry_run and in_use):
        switch_context(settings, wanted, reason=f"CRDS context {in_use} -> {wanted} (pinned by configuration)")


def plan(settings: Settings, *, program: str | None = None, instrument: str | None = None,
         exp_type: str | None = None, context: str | None = None,
         pipeline: str | None = None, params: dict | None = None,
         dry_run: bool = False, campaign_id: int | None = None, stale_only: bool = False,
         retry_failed: bool = True, broker_epoch: str | None = None, graph: bool = True) -> Plan:
    """Decide, from the catalog, which jobs are owed, and (unless ``dry_run``) create them.

    An exposure is *current* when it has a current product of this pipeline made with
    these parameters that no campaign has marked stale (a new context marks stale exactly
    the products whose references it changes; new software only when the operator says so:
    :mod:`archive.reprocessing.campaigns`). Otherwise it is owed a job under the context in use:

    - ``new``: no job yet (its campaign is the one that made its product stale);
    - ``retry``: its job failed (only with ``retry_failed``; the beat schedule does not
      retry failures, which would fail again until someone fixes the input);
    - ``requeue``: running with an expired lease, or queued but lost: sent under another
      broker epoch (the broker restarted), never sent, or sent longer ago than
      ``requeue_after_seconds``; with ``broker_epoch`` None (eager execution) every queued
      job is sent;
    - ``pending``: queued in the broker or running under a live lease: nothing to do;
    - ``failed``: failed and not retried; ``unsupported``: no engine runs its pipeline.

    ``pipeline`` limits the plan to exposures whose stage-1 pipeline it is (None: every
    stage-1 pipeline, calwebb_detector1, calwebb_guider, calwebb_dark); ``params`` are step
    parameters of that one pipeline and need it named.

    ``graph`` False leaves stages 2 and 3 (:mod:`archive.reprocessing.graph`) out: stage 1 only.

    ``stale_only`` limits the plan to exposures with a stale product or an unfinished
    job (what ``archive reprocess --stale`` and the beat schedule do). Jobs to send are
    stamped with ``broker_epoch`` and the time.

    Returns
    -------
    Plan
        One item per exposure considered; ``Plan.job_ids`` are the jobs to send.

    Raises
    ------
    archive.crds.references.ContextError
        If no CRDS context is configured or in use, or ``context`` is not the one in use.
    calib.params.ParamError
        If ``params`` are given without ``pipeline``, or are not valid for it.
    """
    params = params or {}
    if params:
        from calib.params import ParamError
        from calib.pipelines import validate_params

        if pipeline is None:
            raise ParamError("step parameters apply to one pipeline: name it (--pipeline calwebb_detector1)")
        if engine_for(pipeline) == "calib":   # the jwst engine's parameters are jwst's to check
            validate_params(pipeline, params)
    phash = param_hash(params)
    now = utcnow()
    requeue_before = now - timedelta(seconds=settings.requeue_after_seconds)
    _pinned_context(settings, context, dry_run)
    with session_scope(settings.db_url) as s:
        ctx = in_use_context(s)
        if ctx is None:
            ctx = context_in_use(settings, s)
        result = Plan(context=ctx.name, cal_version=CAL_VER, param_hash=phash)
        # current products by exposure: fresh (not stale) and made this way
        current: dict[int, int] = {}
        stale: dict[int, int] = {}
        cq = (select(Product.exposure_id, Product.stale_campaign_id, Job.id, Job.param_hash, Job.pipeline)
              .join(Job, Job.id == Product.job_id).where(Product.is_current.is_(True), Job.status == "succeeded",
                                                         Job.association_id.is_(None)))
        for eid, stale_cid, jid, jhash, _pipeline in s.execute(cq):
            if stale_cid is not None:
                stale[eid] = stale_cid
            elif jhash == phash:
                current.setdefault(eid, jid)
        open_jobs: dict[int, Job] = {}
        for job in s.execute(select(Job).where(Job.context_id == ctx.id, Job.cal_version == CAL_VER,
                                               Job.param_hash == phash, Job.status != "succeeded",
                                               Job.association_id.is_(None))
                             .order_by(Job.id)).scalars():
            open_jobs[job.exposure_id] = job  # the latest one wins
        q = _select_exposures(select(Exposure).order_by(Exposure.filename), program, instrument, exp_type)
        ids: set[int] = set()
        if stale_only:
            ids = set(stale) | set(open_jobs)
            q = q.where(Exposure.id.in_(sorted(ids))) if len(ids) < 30000 else q
        stage1 = pipeline is None or pipeline in STAGE1_PIPELINES
        for exp in (s.execute(q).scalars() if stage1 and (ids or not stale_only) else ()):
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
                action, detail, send = revive(job, now=now, broker_epoch=broker_epoch, retry_failed=retry_failed,
                                              dry_run=dry_run, requeue_before=requeue_before)
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
        if graph and (not stage1 or (pipeline is None and not instrument and not exp_type)):
            plan_graph(s, ctx, result, item_cls=PlanItem, program=program, pipeline=pipeline, params=params,
                       phash=phash, dry_run=dry_run, campaign_id=campaign_id, stale_only=stale_only,
                       retry_failed=retry_failed, broker_epoch=broker_epoch, now=now, requeue_before=requeue_before)
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


def plan_and_send(settings: Settings, dispatcher: Dispatcher | None = None, progress=None, **plan_args):
    """Plan what the catalog owes (:func:`plan`) and send it.

    Executed in-process (the dispatcher has no broker epoch), each round's products make
    the next stage's jobs ready, so it plans and runs again, down to stage 3 (at most four
    rounds); with a broker, beat's next plan advances the graph.

    Jobs are stamped with the broker's epoch before they are sent; if sending fails they
    are un-stamped (so the next plan sends them again) and the error is raised.

    Returns
    -------
    (Plan, dict)
        The plan and the dispatcher's outcome per job id.
    """
    dispatcher = dispatcher or get_dispatcher(settings)
    epoch = dispatcher.epoch() if hasattr(dispatcher, "epoch") else None
    outcomes: dict[int, str] = {}
    total: Plan | None = None
    for _stage in range(4):    # executed in-process (no epoch): go on down the graph, stage after stage
        p = plan(settings, broker_epoch=epoch, **plan_args)
        if total is None:
            total = p
        else:                  # the next stage's jobs join the first plan's report
            sent_now = {i.exposure: i for i in p.items if i.action in ("new", "retry", "requeue")}
            total.items = [sent_now.pop(i.exposure, i) for i in total.items] + list(sent_now.values())
        if plan_args.get("dry_run") or not p.job_ids:
            break
        try:
            sent = dispatcher.send(p.job_ids, progress=progress)
        except BaseException:
            unsend(settings, p.job_ids)
            raise
        outcomes.update(sent)
        if epoch is not None or not any(o == "succeeded" for o in sent.values()):
            break
        plan_args = {**plan_args, "retry_failed": False}
    return total, outcomes
