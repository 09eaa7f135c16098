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
from ..catalog.models import Campaign, CampaignExposure, Exposure, Job, Product, as_utc
from ..config import Settings
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


#: plan actions that are work to do now (sendable) or later (after their inputs are made)
_TO_DO = ("new", "retry", "requeue", "pending")


def stage_costs(settings: Settings, *, stale_only: bool = False, cores_per_job: int = 1) -> dict[str, dict]:
    """Count the owed jobs of every stage and estimate their cost, from a dry-run plan.

    Stage 1 jobs are per exposure, stage 2/3 jobs per association (the product graph): a job
    is counted as ``jobs`` when it can run now and as ``waiting`` when its inputs are still to
    be made or remade (it will run once they are); ``held`` ones wait on a failed member and
    are not counted in the cost. The cost of a pipeline's job is the median wall time of its
    past succeeded jobs (stage 2/3 run per association, so their shape is the pipeline's),
    times ``cores_per_job``.

    Parameters
    ----------
    settings : Settings
        The archive's settings (its catalog).
    stale_only : bool
        Only stale work, as ``plan(stale_only=True)`` (what beat and ``reprocess --stale`` do).
    cores_per_job : int
        Cores one job occupies.

    Returns
    -------
    dict
        Pipeline name -> ``{"jobs": int, "waiting": int, "held": int, "est_core_seconds":
        float or None}`` (None: no past job of that pipeline to estimate from).
    """
    p = plan(settings, dry_run=True, stale_only=stale_only, retry_failed=True)
    out: dict[str, dict] = {}
    for item in p.items:
        st = out.setdefault(item.pipeline, {"jobs": 0, "waiting": 0, "held": 0, "est_core_seconds": None})
        if item.action in _TO_DO:
            st["jobs"] += 1
        elif item.action in ("waiting", "held"):
            st[item.action] += 1
    out = {k: v for k, v in out.items() if v["jobs"] or v["waiting"] or v["held"]}
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
    stages = stage_costs(settings, stale_only=stale_only or campaign_id is not None, cores_per_job=cores_per_job)
    return WhatIf(campaign_id, len(exps), dict(sorted(by_kind.items())), dict(sorted(by_change.items())),
                  by_step, total if known else None, basis, unsupported, stages)
