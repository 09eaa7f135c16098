"""Campaigns: what a new CRDS context or new software makes stale.

A campaign is opened by :func:`switch_context` (``archive crds use``) or
:func:`mark_software_stale` (``archive reprocess --stale-software``). It marks the affected
current products stale (``products.stale_campaign_id``) and records, per exposure, the
changes that drive the remake and the first pipeline step they touch
(``campaign_exposures``). The planner (:func:`archive.reprocessing.planner.plan`) then
owes one job per stale exposure; products the change does not touch stay current,
untouched. A campaign is closed (:func:`close_finished`) once nothing it owes is left.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from calib import __version__ as cal_ver

from ..catalog.db import session_scope
from ..catalog.models import Campaign, CampaignExposure, Exposure, Job, Product
from ..catalog.queries import in_use_context, program_id
from ..config import Settings
from ..crds import cache as crdscache
from ..crds.references import ContextError, use_context
from .stale import CHUNK, StaleExposure, compute_graph_stale, compute_stale_set, downstream_products


def software_first_step(pipeline: str, instrument: str) -> str:
    """Where a remake for new software starts: the pipeline's first step for the instrument.

    From calib's declarations (``calib.pipelines.step_order``), e.g. group_scale for
    calwebb_detector1.
    """
    from calib.pipelines import step_order

    return step_order(pipeline, {"INSTRUME": instrument})[0][0]


@dataclass
class CampaignReport:
    """What opening a campaign did."""

    campaign_id: int | None
    from_context: str | None
    to_context: str
    changed_reftypes: dict[str, list[str]] = field(default_factory=dict)
    stale_exposures: int = 0
    stale_products: int = 0
    candidates: int = 0
    by_change: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _mark(session: Session, campaign: Campaign, items) -> int:
    """Record a campaign's exposures and flag their current products stale.

    Inserts the ``campaign_exposures`` rows, then flags the products in one set-based
    UPDATE; returns the number of products flagged.
    """
    rows = [{"campaign_id": campaign.id, "exposure_id": it.exposure_id,
             "product_id": it.product_ids[0] if it.product_ids else None,
             "changes": it.changes, "first_step": it.first_step} for it in items]
    for start in range(0, len(rows), CHUNK):
        session.execute(CampaignExposure.__table__.insert(), rows[start:start + CHUNK])
    members = select(CampaignExposure.exposure_id).where(CampaignExposure.campaign_id == campaign.id)
    stage1 = [it.exposure_id for it in items if it.stage == 1]
    n = 0
    if stage1:   # stage-1 changes: the exposures' stage-1 products (rate, rateints ...)
        res = session.execute(update(Product).where(Product.is_current.is_(True), Product.stale_campaign_id.is_(None),
                                                    Product.association_id.is_(None),
                                                    Product.exposure_id.in_(stage1 if len(stage1) < CHUNK else members))
                              .values(stale_campaign_id=campaign.id).execution_options(synchronize_session=False))
        n += res.rowcount
    listed = sorted({pid for it in items for pid in it.product_ids})
    flagged = sorted(set(listed) | set(session.execute(select(Product.id).where(
        Product.stale_campaign_id == campaign.id)).scalars()))
    # and everything made from them, at any depth (the lineage view): cal -> i2d, crf, cat ...
    for ids in (listed, downstream_products(session, flagged)):
        for start in range(0, len(ids), CHUNK):
            res = session.execute(update(Product).where(Product.id.in_(ids[start:start + CHUNK]),
                                                        Product.is_current.is_(True),
                                                        Product.stale_campaign_id.is_(None))
                                  .values(stale_campaign_id=campaign.id).execution_options(synchronize_session=False))
            n += res.rowcount
    return n


def switch_context(settings: Settings, name: str, *, dry_run: bool = False,
                   reason: str | None = None) -> CampaignReport:
    """Make ``name`` the context in use; open a campaign for the products it makes stale.

    Only the (instrument, reftype) pairs whose rmaps differ between the old and the new
    context are examined (see :mod:`archive.reprocessing.stale`). With no context in use
    before, or no product affected, no campaign is opened.

    Parameters
    ----------
    settings : Settings
        The archive's settings (catalog, CRDS cache).
    name : str
        A context (``.pmap``) in the local CRDS cache.
    dry_run : bool
        Compute the report and change nothing.
    reason : str, optional
        The campaign's reason; default ``CRDS context <old> -> <new>``.

    Returns
    -------
    CampaignReport

    Raises
    ------
    ContextError
        If ``name`` is not a context in the local CRDS cache.
    archive.crds.cache.BestrefsError
        If crds cannot select for an exposure.
    """
    t0 = time.monotonic()
    crdscache.configure(settings.crds_path)
    if name not in crdscache.list_contexts(settings.crds_path):
        raise ContextError(f"{name}: not in the CRDS cache {settings.crds_path} (add it with 'archive crds add')")
    with session_scope(settings.db_url) as s:
        old = in_use_context(s)
        report = CampaignReport(None, old.name if old else None, name)
        if old is not None and old.name == name:
            return report
        if old is not None:
            stale = compute_stale_set(s, old.name, name)
            stale.exposures += compute_graph_stale(s, old.name, name, {e.exposure_id for e in stale.exposures})
            report.changed_reftypes = stale.changed_reftypes
            report.stale_exposures = len(stale.exposures)
            report.stale_products = sum(len(e.product_ids) for e in stale.exposures)
            report.candidates = stale.candidates
            report.by_change = stale.by_change()
        if dry_run:
            s.rollback()
            report.seconds = time.monotonic() - t0
            return report
        new = use_context(s, name)
        if old is not None and report.stale_exposures:
            campaign = Campaign(kind="context", reason=reason or f"CRDS context {old.name} -> {name}",
                                selection={"changed_reftypes": report.changed_reftypes},
                                context_id=new.id, from_context_id=old.id, status="open",
                                summary={"stale_exposures": report.stale_exposures,
                                         "stale_products": report.stale_products, "by_change": report.by_change})
            s.add(campaign)
            s.flush()
            _mark(s, campaign, stale.exposures)
            report.campaign_id = campaign.id
    report.seconds = time.monotonic() - t0
    return report


def mark_software_stale(settings: Settings, *, program: str | None = None, instrument: str | None = None,
                        pipeline: str = "calwebb_detector1", dry_run: bool = False) -> CampaignReport:
    """Open a campaign remaking current products made by another version of this software.

    New software never makes products stale by itself: the operator asks for it
    (``archive reprocess --stale-software``).

    Parameters
    ----------
    settings : Settings
        The archive's settings (its catalog).
    program, instrument : str, optional
        Only products of this program / instrument.
    pipeline : str
        Only products of this pipeline.
    dry_run : bool
        Compute the report and change nothing.

    Returns
    -------
    CampaignReport
        ``campaign_id`` None when nothing was made stale (or in a dry run).
    """
    with session_scope(settings.db_url) as s:
        ctx = in_use_context(s)
        q = (select(Product.id, Product.exposure_id, Job.cal_version, Exposure.instrume)
             .join(Job, Job.id == Product.job_id).join(Exposure, Exposure.id == Product.exposure_id)
             .where(Product.is_current.is_(True), Product.stale_campaign_id.is_(None),
                    Job.pipeline == pipeline, Job.cal_version != cal_ver))
        if program:
            q = q.where(Exposure.program == program_id(program))
        if instrument:
            q = q.where(Exposure.instrume == instrument.upper())
        by_exp: dict[int, tuple[list[int], str, str]] = {}
        for pid, eid, ver, instr in s.execute(q):
            by_exp.setdefault(eid, ([], ver, instr))[0].append(pid)
        first = {instr: software_first_step(pipeline, instr) for _, _, instr in by_exp.values()}
        items = [StaleExposure(eid, sorted(pids), [{"software": "jwst-archive", "old": ver, "new": cal_ver}],
                               first[instr])
                 for eid, (pids, ver, instr) in sorted(by_exp.items())]
        by_change: dict[str, int] = {}
        for it in items:
            key = f"jwst-archive {it.changes[0]['old']} -> {cal_ver}"
            by_change[key] = by_change.get(key, 0) + 1
        report = CampaignReport(None, ctx.name if ctx else None, ctx.name if ctx else "",
                                stale_exposures=len(items), stale_products=sum(len(i.product_ids) for i in items),
                                candidates=len(items), by_change=by_change)
        if dry_run or not items:
            s.rollback()
            return report
        campaign = Campaign(kind="software", reason=f"software jwst-archive {cal_ver}", cal_version=cal_ver,
                            selection={"program": program, "instrument": instrument, "pipeline": pipeline},
                            context_id=ctx.id if ctx else None, status="open",
                            summary={"stale_exposures": len(items), "stale_products": report.stale_products,
                                     "by_change": by_change})
        s.add(campaign)
        s.flush()
        _mark(s, campaign, items)
        report.campaign_id = campaign.id
    return report


def close_finished(session: Session) -> list[int]:
    """Close open campaigns with no stale current product and no unfinished job left."""
    closed = []
    for c in session.execute(select(Campaign).where(Campaign.status == "open")).scalars():
        stale = session.execute(select(func.count()).select_from(Product).where(
            Product.stale_campaign_id == c.id, Product.is_current.is_(True))).scalar_one()
        unfinished = session.execute(select(func.count()).select_from(Job).where(
            Job.campaign_id == c.id, Job.status != "succeeded")).scalar_one()
        if stale == 0 and unfinished == 0:
            c.status = "done"
            c.closed_at = datetime.now(timezone.utc)
            closed.append(c.id)
    return closed
