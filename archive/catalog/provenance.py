"""Provenance: the lineage of a product or exposure.

Read-only SQL on the catalog goes through :mod:`archive.catalog.readonly`;
:func:`readonly_query` is a thin alias kept for its callers.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, text

from ..config import Settings
from .db import session_scope
from .paths import UnsafePath, from_stored, to_stored
from .readonly import run_readonly
from .models import (
    Association,
    AssociationMember,
    Campaign,
    CampaignExposure,
    CrdsContext,
    Exposure,
    Job,
    JobInput,
    Product,
    ProductComparison,
    ProductReference,
    ReferenceFile,
)


class NotFound(LookupError):
    """No product or exposure matches the name given."""


def _abs(stored: str | None, root) -> str | None:
    path = from_stored(stored, root)
    return str(path) if path is not None else None


def _iso(dt) -> str | None:
    return dt.isoformat() if dt is not None else None


def _product_lineage(s, product: Product, settings: Settings) -> dict:
    job = s.get(Job, product.job_id)
    ctx = s.get(CrdsContext, job.context_id)
    inputs = []
    for ji in s.execute(select(JobInput).where(JobInput.job_id == job.id)).scalars():
        exp = s.get(Exposure, ji.exposure_id)
        item = {"exposure": exp.filename, "sha256": ji.sha256,
                "storage_path": _abs(exp.storage_path, settings.data_dir),
                "exp_type": exp.exp_type, "detector": exp.detector, "program": exp.program}
        if ji.product_id is not None:   # a stage-2/3 job read a product of the previous stage
            src = s.get(Product, ji.product_id)
            item.update(product=src.filename, product_path=_abs(src.path, settings.data_dir),
                        product_is_current=bool(src.is_current))
        inputs.append(item)
    refs = []
    for pr, rf in s.execute(
        select(ProductReference, ReferenceFile)
        .join(ReferenceFile, ReferenceFile.id == ProductReference.reference_file_id)
        .where(ProductReference.product_id == product.id).order_by(ProductReference.reftype)
    ).all():
        refs.append({"reftype": pr.reftype, "name": rf.name, "sha256": rf.sha256,
                     "path": _abs(rf.path, settings.crds_path)})
    superseded = s.get(Product, product.supersedes_id) if product.supersedes_id else None
    comparisons = [
        {"extension": c.extension, "n_pixels": c.n_pixels, "frac_changed": c.frac_changed,
         "median_dev_over_err": c.median_dev_over_err, "p99_dev_over_err": c.p99_dev_over_err,
         "dq_gained": c.dq_gained, "dq_lost": c.dq_lost}
        for c in s.execute(select(ProductComparison).where(ProductComparison.product_id == product.id)
                           .order_by(ProductComparison.id)).scalars()]
    stale = None
    if product.stale_campaign_id is not None:
        camp = s.get(Campaign, product.stale_campaign_id)
        ce = s.execute(select(CampaignExposure).where(CampaignExposure.campaign_id == product.stale_campaign_id,
                                                      CampaignExposure.exposure_id == product.exposure_id)
                       ).scalar_one_or_none()
        stale = {"campaign": product.stale_campaign_id, "reason": camp.reason if camp else None,
                 "changes": ce.changes if ce else None, "first_step": ce.first_step if ce else None}
    return {
        "product": product.filename,
        "path": _abs(product.path, settings.data_dir),
        "suffix": product.suffix,
        "sha256": product.sha256,
        "is_current": bool(product.is_current),
        "created_at": _iso(product.created_at),
        "supersedes": _abs(superseded.path, settings.data_dir) if superseded else None,
        "stale": stale,
        "comparison_with_superseded": comparisons,
        "inputs": inputs,
        "job": {
            "id": job.id, "pipeline": job.pipeline, "engine": job.engine, "status": job.status,
            "attempts": job.attempts, "worker": job.worker, "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at), "parameters": job.parameters, "param_hash": job.param_hash,
            "step_timings": job.step_timings,
        },
        "cal_version": job.cal_version,
        "software_versions": job.software_versions,
        "crds_context": ctx.name,
        "crds_version": ctx.crds_version,
        "references": refs,
        "upstream": _upstream(s, product) if product.association_id is not None else None,
    }


def _upstream(s, product: Product) -> dict:
    """Everything behind a stage-2/3 product (the ``product_lineage`` view, a recursive CTE).

    Every raw exposure (name, sha256) and every product of an earlier stage with the
    references it was made with, by depth (1: the job's own inputs).
    """
    rows = s.execute(text("SELECT input_product_id, exposure_id, depth FROM product_lineage "
                          "WHERE product_id = :p ORDER BY depth, input_product_id"), {"p": product.id}).all()
    raw = sorted({eid for pid, eid, _ in rows if pid is None})
    products = []
    for pid, _eid, depth in rows:
        if pid is None:
            continue
        p = s.get(Product, pid)
        j = s.get(Job, p.job_id)
        refs = s.execute(select(ProductReference.reftype, ReferenceFile.name, ReferenceFile.sha256)
                         .join(ReferenceFile, ReferenceFile.id == ProductReference.reference_file_id)
                         .where(ProductReference.product_id == pid).order_by(ProductReference.reftype)).all()
        products.append({"depth": depth, "product": p.filename, "sha256": p.sha256, "pipeline": j.pipeline,
                         "engine": j.engine, "job": j.id,
                         "references": [{"reftype": r, "name": n, "sha256": h} for r, n, h in refs]})
    exposures = [{"exposure": e.filename, "sha256": e.sha256}
                 for e in s.execute(select(Exposure).where(Exposure.id.in_(raw)).order_by(Exposure.filename)).scalars()]
    return {"raw_exposures": exposures, "products": products}


def lineage(settings: Settings, name: str) -> dict:
    """Return the lineage of a product (file name or path) or of an exposure (file name).

    Parameters
    ----------
    settings : Settings
        The archive's settings (its catalog).
    name : str
        A product's file name (every version of it) or path (that one), or an exposure's
        file name.

    Returns
    -------
    dict
        For a product: its inputs with checksums, job (pipeline, parameters, times,
        worker), software versions, CRDS context and every reference with checksum. For
        an exposure: its catalog entry, associations, and the lineage of each product.

    Raises
    ------
    NotFound
        If nothing in the catalog has that name.
    """
    base = Path(name).name
    with session_scope(settings.db_url) as s:
        # a path names one product; a file name names every version of it (oldest first)
        stored = {name, str(Path(name).resolve())}
        for candidate in list(stored):
            try:
                stored.add(to_stored(candidate, settings.data_dir))
            except UnsafePath:
                pass
        products = s.execute(select(Product).where(Product.path.in_(sorted(stored)))).scalars().all() \
            or s.execute(select(Product).where(Product.filename == base).order_by(Product.id)).scalars().all()
        if products:
            out = [_product_lineage(s, p, settings) for p in products]
            return {"kind": "product", "products": out}
        exp = s.execute(select(Exposure).where(Exposure.filename == base)).scalar_one_or_none()
        if exp is None:
            raise NotFound(f"{name}: no product or exposure of that name in the catalog")
        asns = s.execute(
            select(Association.asn_id, Association.asn_rule, AssociationMember.product_name)
            .join(AssociationMember, AssociationMember.association_id == Association.id)
            .where(AssociationMember.exposure_id == exp.id)
        ).all()
        prods = s.execute(select(Product).where(Product.exposure_id == exp.id).order_by(Product.id)).scalars().all()
        jobs = s.execute(select(Job).where(Job.exposure_id == exp.id).order_by(Job.id)).scalars().all()
        return {
            "kind": "exposure",
            "exposure": {
                "filename": exp.filename, "sha256": exp.sha256, "size_bytes": exp.size_bytes,
                "storage_path": _abs(exp.storage_path, settings.data_dir),
                "ingested_at": _iso(exp.ingested_at), "program": exp.program,
                "instrume": exp.instrume, "detector": exp.detector, "exp_type": exp.exp_type,
                "readpatt": exp.readpatt, "subarray": exp.subarray, "ngroups": exp.ngroups, "nints": exp.nints,
                "stage1_pipeline": exp.stage1_pipeline,
            },
            "associations": [{"asn_id": a, "asn_rule": r, "product": p} for a, r, p in asns],
            "jobs": [{"id": j.id, "pipeline": j.pipeline, "status": j.status, "error": j.error,
                      "attempts": j.attempts} for j in jobs],
            "products": [_product_lineage(s, p, settings) for p in prods],
        }


def readonly_query(settings: Settings, sql: str, params: dict | None = None) -> tuple[list[str], list[tuple]]:
    """Run one statement on the read-only path and return (column names, rows).

    A thin alias of :func:`archive.catalog.readonly.run_readonly` (row cap 10,000,
    statement and lock timeouts from the settings).

    Raises
    ------
    StatementRefused, StatementTimeout, UnsafeRole
        See :mod:`archive.catalog.readonly`.
    """
    result = run_readonly(settings, sql, params)
    return result.columns, result.rows
