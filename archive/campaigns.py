"""Campaigns: what a new CRDS context or new software makes stale, the what-if view before
anything runs, progress while it runs, and the comparison of each new product with the one
it supersedes.

A campaign is opened by :func:`switch_context` (``archive crds use``) or
:func:`mark_software_stale` (``archive reprocess --stale-software``). It marks the affected
current products stale (``products.stale_campaign_id``) and records, per exposure, the
changes that drive the remake and the first pipeline step they touch
(``campaign_exposures``). The planner (:func:`archive.jobs.plan`) then owes one job per
stale exposure; products the change does not touch stay current, untouched.
"""
from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .crds import cache as crdscache
from .config import Settings
from .catalog.db import session_scope
from .catalog.models import (Campaign, CampaignExposure, CrdsContext, Exposure, Job, Product, ProductComparison)
from .crds.references import ContextError, use_context
from .stale import CHUNK, compute_stale_set

log = logging.getLogger(__name__)


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


def _in_use(session: Session) -> CrdsContext | None:
    return session.execute(select(CrdsContext).where(CrdsContext.in_use.is_(True))).scalar_one_or_none()


def _mark(session: Session, campaign: Campaign, items) -> int:
    """Insert campaign_exposures rows and flag stale the current products of those
    exposures (one set-based UPDATE); returns the number of products flagged."""
    rows = [{"campaign_id": campaign.id, "exposure_id": it.exposure_id,
             "product_id": it.product_ids[0] if it.product_ids else None,
             "changes": it.changes, "first_step": it.first_step} for it in items]
    for start in range(0, len(rows), CHUNK):
        session.execute(CampaignExposure.__table__.insert(), rows[start:start + CHUNK])
    members = select(CampaignExposure.exposure_id).where(CampaignExposure.campaign_id == campaign.id)
    res = session.execute(update(Product).where(Product.is_current.is_(True), Product.stale_campaign_id.is_(None),
                                                Product.exposure_id.in_(members))
                          .values(stale_campaign_id=campaign.id).execution_options(synchronize_session=False))
    return res.rowcount


def switch_context(settings: Settings, name: str, *, dry_run: bool = False, reason: str | None = None) -> CampaignReport:
    """Make ``name`` the context in use; open a campaign for the products it makes stale.

    Only the (instrument, reftype) pairs whose rmaps differ between the old and the new
    context are examined (see :mod:`archive.stale`). With no context in use before, or no
    product affected, no campaign is opened. ``dry_run`` computes the report and changes
    nothing.

    Raises
    ------
    ContextError
        If ``name`` is not a context in the local CRDS cache.
    crdscache.BestrefsError
        If crds cannot select for an exposure.
    """
    import time

    t0 = time.monotonic()
    crdscache.configure(settings.crds_path)
    if name not in crdscache.list_contexts(settings.crds_path):
        raise ContextError(f"{name}: not in the CRDS cache {settings.crds_path} (add it with 'archive crds add')")
    with session_scope(settings.db_url) as s:
        old = _in_use(s)
        report = CampaignReport(None, old.name if old else None, name)
        if old is not None and old.name == name:
            return report
        if old is not None:
            stale = compute_stale_set(s, old.name, name)
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
    """
    from calib import __version__ as cal_ver

    from .jobs import SOFTWARE_FIRST_STEP

    with session_scope(settings.db_url) as s:
        ctx = _in_use(s)
        q = (select(Product.id, Product.exposure_id, Job.cal_version)
             .join(Job, Job.id == Product.job_id).join(Exposure, Exposure.id == Product.exposure_id)
             .where(Product.is_current.is_(True), Product.stale_campaign_id.is_(None),
                    Job.pipeline == pipeline, Job.cal_version != cal_ver))
        if program:
            q = q.where(Exposure.program == program.lstrip("0").rjust(5, "0"))
        if instrument:
            q = q.where(Exposure.instrume == instrument.upper())
        by_exp: dict[int, tuple[list[int], str]] = {}
        for pid, eid, ver in s.execute(q):
            by_exp.setdefault(eid, ([], ver))[0].append(pid)
        from .stale import StaleExposure

        items = [StaleExposure(eid, sorted(pids), [{"software": "jwst-archive", "old": ver, "new": cal_ver}],
                               SOFTWARE_FIRST_STEP)
                 for eid, (pids, ver) in sorted(by_exp.items())]
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


# --------------------------------------------------------------------------- what-if
def _job_seconds(job: Job) -> float | None:
    if job.started_at is None or job.finished_at is None:
        return None
    a, b = job.started_at, job.finished_at
    if a.tzinfo is None:
        a = a.replace(tzinfo=timezone.utc)
    if b.tzinfo is None:
        b = b.replace(tzinfo=timezone.utc)
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


def what_if(settings: Settings, *, campaign_id: int | None = None, stale_only: bool = False,
            cores_per_job: int = 1) -> WhatIf:
    """How many products of which kinds would be remade, why, and at what cost.

    Without ``campaign_id``: everything the planner owes (:func:`archive.jobs.plan` in
    dry-run). With it: the campaign's stale exposures without a succeeded job.
    """
    from .jobs import plan

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
            names = [i.exposure for i in p.items if i.action in ("new", "retry", "requeue", "pending")]
            unsupported = p.count("unsupported")
            exps = []
            for start in range(0, len(names), CHUNK):
                chunk = names[start:start + CHUNK]
                found = {e.filename: e for e in s.execute(select(Exposure).where(Exposure.filename.in_(chunk))).scalars()}
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
    return WhatIf(campaign_id, len(exps), dict(sorted(by_kind.items())), dict(sorted(by_change.items())),
                  by_step, total if known else None, basis, unsupported)


# --------------------------------------------------------------------------- status
@dataclass
class Status:
    """Progress of a campaign (or of all jobs)."""

    campaign_id: int | None
    counts: dict[str, int]  # queued, running, succeeded, failed, never_run
    throughput_per_hour: float | None
    eta_seconds: float | None
    last_errors: list[tuple[int, str, str]]  # (job id, exposure, error)
    state: str | None = None


def campaign_status(settings: Settings, campaign_id: int | None = None, window_s: float = 600.0) -> Status:
    """Queued / running / succeeded / failed job counts, plus ``never_run``: stale
    exposures of the campaign with no job yet, and queued jobs never attempted are counted
    as queued (``failed`` always means a job ran and failed). Open campaigns with nothing
    left to do are closed first (state ``done``). Throughput is over the last
    ``window_s`` seconds of finished jobs; ETA = (queued + running + never run) / throughput.
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
        eq = select(Job.id, Exposure.filename, Job.error).join(Exposure, Exposure.id == Job.exposure_id).where(
            Job.status == "failed").order_by(Job.finished_at.desc()).limit(5)
        if campaign_id is not None:
            eq = eq.where(Job.campaign_id == campaign_id)
        errors = [(j, f, (e or "")[:300]) for j, f, e in s.execute(eq)]
        state = None
        if campaign_id is not None:
            state = campaign.status
    return Status(campaign_id, counts, rate, eta, errors, state)


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


# --------------------------------------------------------------------------- comparison
def compare_files(new_path: str | Path, old_path: str | Path) -> list[dict]:
    """Per-extension comparison of two products of the same exposure.

    Returns one dict per extension present in both (SCI, ERR, VAR_POISSON, VAR_RNOISE,
    DQ): n_pixels, frac_changed (value differs, NaN == NaN), and for SCI the median and
    99th percentile of |new - old| / ERR_new (pixels with finite values and ERR_new > 0);
    for DQ, per flag name, pixels that gained or lost it.

    Raises
    ------
    ValueError
        If the extensions have different shapes.
    """
    import numpy as np
    from astropy.io import fits

    from calib.dqflags import pixel as dq_flags  # name -> bit value (stdatamodels)

    out = []
    with fits.open(new_path, memmap=False) as new, fits.open(old_path, memmap=False) as old:
        names = [h.name for h in new[1:] if h.name in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE")]
        err = new["ERR"].data if "ERR" in new else None
        for ext in names:
            if ext not in old:
                continue
            a, b = new[ext].data, old[ext].data
            if a is None or b is None:
                continue
            if a.shape != b.shape:
                raise ValueError(f"{new_path} {ext}: shape {a.shape} differs from {old_path}'s {b.shape}")
            if ext == "DQ":
                a64, b64 = a.astype(np.uint64), b.astype(np.uint64)
                gained, lost = {}, {}
                for name, bit in dq_flags.items():
                    if not bit:
                        continue
                    has_new, has_old = (a64 & np.uint64(bit)) != 0, (b64 & np.uint64(bit)) != 0
                    g = int(np.count_nonzero(has_new & ~has_old))
                    lo = int(np.count_nonzero(has_old & ~has_new))
                    if g:
                        gained[name] = g
                    if lo:
                        lost[name] = lo
                out.append({"extension": ext, "n_pixels": int(a.size), "frac_changed": float(np.mean(a != b)),
                            "median_dev_over_err": None, "p99_dev_over_err": None,
                            "dq_gained": gained, "dq_lost": lost})
                continue
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            row = {"extension": ext, "n_pixels": int(a.size), "frac_changed": float(1.0 - np.mean(same)),
                   "median_dev_over_err": None, "p99_dev_over_err": None, "dq_gained": None, "dq_lost": None}
            if ext == "SCI" and err is not None and err.shape == a.shape:
                ok = np.isfinite(a) & np.isfinite(b) & np.isfinite(err) & (err > 0)
                if ok.any():
                    r = np.abs(a[ok].astype(np.float64) - b[ok]) / err[ok]
                    row["median_dev_over_err"] = float(np.median(r))
                    row["p99_dev_over_err"] = float(np.percentile(r, 99))
            out.append(row)
    return out


def compare_with_superseded(settings: Settings, job_id: int) -> int:
    """Store comparisons of each product of ``job_id`` with the product it supersedes.

    Returns the number of rows written (0 when nothing was superseded or it was done).
    """
    with session_scope(settings.db_url) as s:
        pairs = [(p.id, p.path, p.supersedes_id) for p in
                 s.execute(select(Product).where(Product.job_id == job_id, Product.supersedes_id.is_not(None))).scalars()]
        olds = {pid: s.get(Product, sup).path for pid, _, sup in pairs}
        done = {pid for (pid,) in s.execute(select(ProductComparison.product_id).where(
            ProductComparison.product_id.in_([p for p, _, _ in pairs])))}
    rows = []
    for pid, path, sup in pairs:
        if pid in done:
            continue
        for r in compare_files(path, olds[pid]):
            rows.append({"product_id": pid, "previous_product_id": sup, "created_at": datetime.now(timezone.utc), **r})
    if rows:
        with session_scope(settings.db_url) as s:
            s.execute(ProductComparison.__table__.insert(), rows)
    return len(rows)
