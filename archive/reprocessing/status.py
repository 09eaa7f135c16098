"""Progress of a campaign, or of all jobs (``archive status``).

Job counts, throughput, ETA and the last errors.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from ..catalog.db import session_scope
from ..catalog.models import Association, Campaign, Exposure, Job, Product
from ..catalog.queries import in_use_context
from ..config import Settings
from .campaigns import close_finished


@dataclass
class Status:
    """Progress of a campaign (or of all jobs)."""

    campaign_id: int | None
    counts: dict[str, int]  # queued, running, succeeded, failed, never_run
    throughput_per_hour: float | None
    eta_seconds: float | None
    last_errors: list[tuple[int, str, str]]  # (job id, exposure, error)
    state: str | None = None
    held: list[tuple[str, str]] | None = None  # (association, which member's upstream job failed and why)


def campaign_status(settings: Settings, campaign_id: int | None = None, window_s: float = 600.0) -> Status:
    """Return the progress of a campaign, or of all jobs.

    Queued / running / succeeded / failed job counts, plus ``never_run``: stale exposures
    of the campaign with no job yet; queued jobs never attempted are counted as queued
    (``failed`` always means a job ran and failed). Open campaigns with nothing left to
    do are closed first (state ``done``).

    Parameters
    ----------
    settings : Settings
        The archive's settings (its catalog).
    campaign_id : int, optional
        One campaign; default every job of the archive.
    window_s : float
        Throughput is over the finished jobs of the last ``window_s`` seconds;
        ETA = (queued + running + never run) / throughput.

    Returns
    -------
    Status

    Raises
    ------
    KeyError
        If there is no campaign ``campaign_id``.
    """
    now = datetime.now(timezone.utc)
    with session_scope(settings.db_url) as s:
        close_finished(s)  # a campaign whose last job just succeeded shows as done
        q = select(Job.status, func.count()).group_by(Job.status)
        if campaign_id is not None:
            campaign = s.get(Campaign, campaign_id)
            if campaign is None:
                raise KeyError(f"no campaign {campaign_id}")
            q = q.where(Job.campaign_id == campaign_id)
        counts = {k: 0 for k in ("queued", "running", "succeeded", "failed")}
        counts.update(dict(s.execute(q).all()))
        never = 0
        if campaign_id is not None:
            never = s.execute(
                select(func.count()).select_from(Product)
                .where(Product.stale_campaign_id == campaign_id, Product.is_current.is_(True),
                       Product.suffix == "rate",
                       ~select(Job.id).where(Job.exposure_id == Product.exposure_id,
                                             Job.campaign_id == campaign_id).exists())).scalar_one()
        counts["never_run"] = never
        since = now - timedelta(seconds=window_s)
        fq = select(Job.finished_at).where(Job.status == "succeeded", Job.finished_at >= since)
        if campaign_id is not None:
            fq = fq.where(Job.campaign_id == campaign_id)
        finished = [f for (f,) in s.execute(fq)]
        rate = None
        if finished:
            first = min(f if f.tzinfo else f.replace(tzinfo=timezone.utc) for f in finished)
            span = max((now - first).total_seconds(), 1.0)
            rate = len(finished) / span * 3600.0
        remaining = counts["queued"] + counts["running"] + never
        eta = remaining / rate * 3600.0 if rate else None
        eq = (select(Job.id, func.coalesce(Exposure.filename, Association.asn_name), Job.error)
              .outerjoin(Exposure, Exposure.id == Job.exposure_id)
              .outerjoin(Association, Association.id == Job.association_id)
              .where(Job.status == "failed").order_by(Job.finished_at.desc()).limit(5))
        if campaign_id is not None:
            eq = eq.where(Job.campaign_id == campaign_id)
        errors = [(j, f, (e or "")[:300]) for j, f, e in s.execute(eq)]
        state = None
        if campaign_id is not None:
            state = campaign.status
        held = _held(s, now)
    return Status(campaign_id, counts, rate, eta, errors, state, held)


def _held(s, now) -> list[tuple[str, str]]:
    """Associations whose stage-2/3 job a failed member holds back: (association, which and why)."""
    from .graph import plan_graph
    from .planner import Plan, PlanItem

    ctx = in_use_context(s)
    if ctx is None:
        return []
    probe = Plan(ctx.name, "", "")
    plan_graph(s, ctx, probe, item_cls=PlanItem, program=None, pipeline=None, params={}, phash="",
               dry_run=True, campaign_id=None, stale_only=False, retry_failed=False, broker_epoch=None, now=now,
               requeue_before=now)
    s.rollback()
    return [(i.exposure, i.detail) for i in probe.items if i.action == "held"]
