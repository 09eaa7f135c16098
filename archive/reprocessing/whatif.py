"""The what-if view of owed work, before anything runs (``archive plan``).

How many products of which kinds would be remade, the changes driving it, the first step
to redo, and the cost estimated from past jobs of the same shape.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..catalog.db import session_scope
from ..catalog.models import (
    Association,
    AssociationMember,
    Campaign,
    CampaignExposure,
    Exposure,
    Job,
    Product,
    as_utc,
)
from ..catalog.pipeline_policy import STAGE1_PIPELINES
from ..config import Settings
from ..crds import cache as crdscache
from ..crds.references import crds_header
from .planner import plan
from .stale import CHUNK


def _job_seconds(job: Job) -> float | None:
    if job.started_at is None or job.finished_at is None:
        return None
    a, b = as_utc(job.started_at), as_utc(job.finished_at)
    return max((b - a).total_seconds(), 0.0)


class CostModel:
    """Seconds per job from past succeeded jobs of the same shape.

    Shape = (instrument, subarray, ngroups, nints); failing that, (instrument, subarray);
    failing that, seconds per pixel-group-integration over all past jobs; with no history,
    None. One job occupies one worker process (its numba threads included), so job wall
    seconds x worker cores is the core-seconds estimate.
    """

    def __init__(self, session: Session) -> None:
        rows = session.execute(
            select(Job, Exposure).join(Exposure, Exposure.id == Job.exposure_id)
            .where(Job.status == "succeeded").order_by(Job.id.desc()).limit(5000)).all()
        self.shape: dict[tuple, list[float]] = {}
        self.coarse: dict[tuple, list[float]] = {}
        self.per_unit: list[float] = []
        for job, exp in rows:
            sec = _job_seconds(job)
            if sec is None:
                continue
            self.shape.setdefault(self._shape(exp), []).append(sec)
            self.coarse.setdefault((exp.instrume, exp.subarray), []).append(sec)
            units = self._units(exp)
            if units:
                self.per_unit.append(sec / units)

    @staticmethod
    def _shape(exp: Exposure) -> tuple:
        return (exp.instrume, exp.subarray, exp.ngroups, exp.nints)

    @staticmethod
    def _units(exp: Exposure) -> float:
        h = exp.header or {}
        nx, ny = h.get("SUBSIZE1") or 2048, h.get("SUBSIZE2") or 2048
        return float(nx) * float(ny) * (exp.ngroups or 1) * (exp.nints or 1)

    def seconds(self, exp: Exposure) -> tuple[float | None, str]:
        """Estimate the wall seconds of a job on ``exp``.

        Returns
        -------
        seconds : float or None
            The median of the past jobs on the best basis available; None with no history.
        basis : str
            "same shape", "same subarray", "scaled by size" or "no history".
        """
        if self.shape.get(self._shape(exp)):
            return statistics.median(self.shape[self._shape(exp)]), "same shape"
        if self.coarse.get((exp.instrume, exp.subarray)):
            return statistics.median(self.coarse[(exp.instrume, exp.subarray)]), "same subarray"
        if self.per_unit:
            return statistics.median(self.per_unit) * self._units(exp), "scaled by size"
        return None, "no history"


@dataclass
class WhatIf:
    """The what-if view of owed work (``archive plan``)."""

    campaign_id: int | None
    jobs: int
    by_kind: dict[str, int]  # "NIRCAM NRC_IMAGE SUB160 rate+rateints": n
    by_change: dict[str, int]
    by_first_step: dict[str, int]
    est_core_seconds: float | None
    basis: dict[str, int]  # cost basis -> exposures
    unsupported: int = 0
    by_stage: dict[str, dict] = field(default_factory=dict)  # pipeline -> stage_costs() entry
    lacking: list[LackingReferences] = field(default_factory=list)


@dataclass
class LackingReferences:
    """Planned stage-2/3 jobs of one pipeline and mode that cannot run: the context lacks references.

    ``reftypes`` maps each reftype jwst's pipeline prefetches that crds cannot select for the
    mode under ``context`` to crds's reason; ``associations`` are the planned jobs' names.
    """

    pipeline: str
    context: str
    instrument: str
    exp_type: str
    reftypes: dict[str, str]
    associations: list[str] = field(default_factory=list)
    mode: dict[str, str] = field(default_factory=dict)  # parkey -> value crds selects by


#: plan actions that are work to do now (sendable) or later (after their inputs are made)
_TO_DO = ("new", "retry", "requeue", "pending")


def lacking_references(settings: Settings, items, context: str) -> list[LackingReferences]:
    """Predict which planned stage-2/3 jobs cannot run because ``context`` lacks references.

    The same determination a job makes when it starts (:mod:`archive.execution.jwst_engine`):
    the reftypes jwst's pipeline for the association prefetches
    (:func:`archive.execution.jwst_engine.prefetch_reftypes`, asked of jwst itself), looked up
    by crds under the context on the header of each science member
    (:func:`archive.crds.cache.unselectable`); a reftype crds cannot select is one the job
    would fail on (:class:`~archive.execution.jwst_engine.MissingReferencesError`). crds is
    asked once per pipeline, context and mode (the header values the context's rmaps select
    by, :func:`archive.crds.cache.selection_mode`), so a plan over many associations costs a
    few look-ups; jwst is imported (a few seconds) only when stage-2/3 jobs are planned.

    Parameters
    ----------
    settings : Settings
        The archive's settings (catalog, CRDS cache).
    items : iterable of PlanItem
        Plan items; those of stage-2/3 pipelines with work to do (new, retry, requeue,
        pending, waiting) are checked, others ignored.
    context : str
        The context the jobs run under (the plan's).

    Returns
    -------
    list of LackingReferences
        One entry per pipeline and mode that lacks references, with its associations; empty
        when every planned job can find its references.
    """
    from ..execution.jwst_engine import JwstEngineError, prefetch_reftypes

    todo = [i for i in items if i.pipeline not in STAGE1_PIPELINES and i.action in (*_TO_DO, "waiting")]
    if not todo:
        return []
    crdscache.configure(settings.crds_path)
    answers: dict[tuple, dict[str, str]] = {}
    groups: dict[tuple, LackingReferences] = {}
    with session_scope(settings.db_url) as s:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            asns = {a.asn_name: a for a in s.execute(select(Association).where(
                Association.asn_name.in_([i.exposure for i in chunk]))).scalars()}
            science: dict[int, list[Exposure]] = {}
            for m, exp in s.execute(select(AssociationMember, Exposure)
                                    .join(Exposure, Exposure.id == AssociationMember.exposure_id)
                                    .where(AssociationMember.association_id.in_([a.id for a in asns.values()]),
                                           AssociationMember.exptype == "science")
                                    .order_by(AssociationMember.id)):
                science.setdefault(m.association_id, []).append(exp)
            for item in chunk:
                asn = asns.get(item.exposure)
                if asn is None:
                    continue
                try:
                    reftypes = prefetch_reftypes(item.pipeline)
                except JwstEngineError:
                    continue   # no jwst pipeline of that name: "unsupported" already says so
                seen: set[tuple] = set()
                for exp in science.get(asn.id, []):
                    header = crds_header(exp)
                    mode = crdscache.selection_mode(header, context, reftypes)
                    key = (item.pipeline, context, mode)
                    if key in seen:
                        continue
                    seen.add(key)
                    if key not in answers:
                        answers[key] = crdscache.unselectable(header, context, reftypes)
                    if not answers[key]:
                        continue
                    group = groups.get(key)
                    if group is None:
                        group = groups[key] = LackingReferences(
                            item.pipeline, context, exp.instrume or mode[0], exp.exp_type or "",
                            dict(sorted(answers[key].items())), [],
                            {k: str(v) for k, v in mode[1]})
                    if item.exposure not in group.associations:
                        group.associations.append(item.exposure)
    return list(groups.values())


def stage_costs(settings: Settings, *, stale_only: bool = False, cores_per_job: int = 1,
                lacking: list | None = None) -> dict[str, dict]:
    """Count the owed jobs of every stage and estimate their cost, from a dry-run plan.

    Stage 1 jobs are per exposure, stage 2/3 jobs per association (the product graph): a job
    is counted as ``jobs`` when it can run now and as ``waiting`` when its inputs are still to
    be made or remade (it will run once they are); ``held`` ones wait on a failed member and
    ``no_references`` ones cannot run because the context lacks references for their mode
    (:func:`lacking_references`); neither is counted in ``jobs``, ``waiting`` or the cost.
    The cost of a pipeline's job is the median wall time of its past succeeded jobs (stage
    2/3 run per association, so their shape is the pipeline's), times ``cores_per_job``.

    Parameters
    ----------
    settings : Settings
        The archive's settings (its catalog).
    stale_only : bool
        Only stale work, as ``plan(stale_only=True)`` (what beat and ``reprocess --stale`` do).
    cores_per_job : int
        Cores one job occupies.
    lacking : list, optional
        Receives the :class:`LackingReferences` found.

    Returns
    -------
    dict
        Pipeline name -> ``{"jobs": int, "waiting": int, "held": int, "no_references": int,
        "est_core_seconds": float or None}`` (None: no past job of that pipeline to estimate
        from).
    """
    p = plan(settings, dry_run=True, stale_only=stale_only, retry_failed=True)
    found = lacking_references(settings, p.items, p.context)
    if lacking is not None:
        lacking.extend(found)
    cannot = {(g.pipeline, name) for g in found for name in g.associations}
    out: dict[str, dict] = {}
    for item in p.items:
        st = out.setdefault(item.pipeline, {"jobs": 0, "waiting": 0, "held": 0, "no_references": 0,
                                            "est_core_seconds": None})
        if (item.pipeline, item.exposure) in cannot and item.action in (*_TO_DO, "waiting"):
            st["no_references"] += 1
        elif item.action in _TO_DO:
            st["jobs"] += 1
        elif item.action in ("waiting", "held"):
            st[item.action] += 1
    out = {k: v for k, v in out.items() if v["jobs"] or v["waiting"] or v["held"] or v["no_references"]}
    with session_scope(settings.db_url) as s:
        for pipeline, st in out.items():
            past = [sec for job in s.execute(select(Job).where(Job.pipeline == pipeline, Job.status == "succeeded")
                                             .order_by(Job.id.desc()).limit(500)).scalars()
                    if (sec := _job_seconds(job)) is not None]
            if past:
                st["est_core_seconds"] = statistics.median(past) * (st["jobs"] + st["waiting"]) * cores_per_job
    return dict(sorted(out.items()))


def what_if(settings: Settings, *, campaign_id: int | None = None, stale_only: bool = False,
            cores_per_job: int = 1) -> WhatIf:
    """Say how many products of which kinds would be remade, why, and at what cost.

    Parameters
    ----------
    settings : Settings
        The archive's settings (its catalog).
    campaign_id : int, optional
        The campaign's stale exposures without a succeeded job. Default: everything the
        planner owes (:func:`archive.reprocessing.planner.plan` in a dry run).
    stale_only : bool
        Without ``campaign_id``: only stale work, as ``plan(stale_only=True)``.
    cores_per_job : int
        Cores one job occupies (its numba threads): the cost is job seconds x cores.

    Returns
    -------
    WhatIf

    Raises
    ------
    KeyError
        If there is no campaign ``campaign_id``.
    """
    with session_scope(settings.db_url) as s:
        if campaign_id is not None:
            if s.get(Campaign, campaign_id) is None:
                raise KeyError(f"no campaign {campaign_id}")
            rows = s.execute(
                select(CampaignExposure, Exposure).join(Exposure, Exposure.id == CampaignExposure.exposure_id)
                .join(Product, Product.id == CampaignExposure.product_id)
                .where(CampaignExposure.campaign_id == campaign_id, Product.is_current.is_(True),
                       Product.stale_campaign_id == campaign_id)).all()
            exps = [(e, ce) for ce, e in rows]
            unsupported = 0
        else:
            p = plan(settings, dry_run=True, stale_only=stale_only, retry_failed=True)
            names = [i.exposure for i in p.items if i.action in _TO_DO]
            unsupported = p.count("unsupported")
            exps = []
            for start in range(0, len(names), CHUNK):
                chunk = names[start:start + CHUNK]
                found = {e.filename: e
                         for e in s.execute(select(Exposure).where(Exposure.filename.in_(chunk))).scalars()}
                ces = {}
                ids = [e.id for e in found.values()]
                for ce in s.execute(
                        select(CampaignExposure).join(Product, Product.id == CampaignExposure.product_id)
                        .where(CampaignExposure.exposure_id.in_(ids),
                               Product.stale_campaign_id == CampaignExposure.campaign_id,
                               Product.is_current.is_(True))).scalars():
                    ces[ce.exposure_id] = ce
                exps.extend((found[n], ces.get(found[n].id)) for n in chunk if n in found)
        model = CostModel(s)
        by_kind: dict[str, int] = {}
        by_change: dict[str, int] = {}
        by_step: dict[str, int] = {}
        basis: dict[str, int] = {}
        total = 0.0
        known = True
        for exp, ce in exps:
            products = "rate+rateints" if (exp.nints or 1) > 1 else "rate"
            kind = f"{exp.instrume} {exp.exp_type} {exp.subarray} {products}"
            by_kind[kind] = by_kind.get(kind, 0) + 1
            if ce is not None:
                for c in ce.changes:
                    key = (f"{c.get('instrument', '')} {c['reftype']} {c['old']} -> {c['new']}".strip()
                           if "reftype" in c else f"{c['software']} {c['old']} -> {c['new']}")
                    by_change[key] = by_change.get(key, 0) + 1
                by_step[ce.first_step or "?"] = by_step.get(ce.first_step or "?", 0) + 1
            else:
                by_change["never processed"] = by_change.get("never processed", 0) + 1
                by_step["group_scale"] = by_step.get("group_scale", 0) + 1
            sec, why = model.seconds(exp)
            basis[why] = basis.get(why, 0) + 1
            if sec is None:
                known = False
            else:
                total += sec * cores_per_job
    lacking: list[LackingReferences] = []
    stages = stage_costs(settings, stale_only=stale_only or campaign_id is not None, cores_per_job=cores_per_job,
                         lacking=lacking)
    return WhatIf(campaign_id, len(exps), dict(sorted(by_kind.items())), dict(sorted(by_change.items())),
                  by_step, total if known else None, basis, unsupported, stages, lacking)
