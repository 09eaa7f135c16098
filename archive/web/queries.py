"""What the web view shows, as plain dicts: shared by the HTML pages and the JSON API.

Every function takes an open read-only :class:`sqlalchemy.orm.Session` (bound to
:func:`archive.web.db.catalog_engine`) and never writes. Lists are paged by keyset (the
id of the last row shown), so a page costs the same on the millionth row as on the first.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import and_, func, literal, select, text
from sqlalchemy.orm import Session, aliased

from ..catalog.models import (
    Association,
    AssociationMember,
    BestRef,
    Campaign,
    CampaignExposure,
    CrdsContext,
    Exposure,
    Job,
    JobInput,
    Product,
    ProductComparison,
    ProductPreview,
    ProductReference,
    ReferenceFile,
)
from ..config import Settings

PAGE = 50


class NotFound(LookupError):
    """Nothing in the catalog by that name or id."""


def _iso(dt) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.isoformat(timespec="seconds")


def stage_of(pipeline: str | None) -> int:
    """Return the stage (1, 2 or 3) of a jwst pipeline name (calwebb_image2 -> 2).

    Parameters
    ----------
    pipeline : str or None
        A pipeline name as jwst spells it (calwebb_detector1, calwebb_spec3 ...).

    Returns
    -------
    int
        3 or 2 when the name ends with that digit, else 1 (detector1, guider, dark).
    """
    name = pipeline or ""
    return 3 if name.endswith("3") else 2 if name.endswith("2") else 1


def abs_path(settings: Settings, path: str) -> Path:
    """Return a catalogued product or preview path as an absolute one (stored relative to the data root).

    Raises
    ------
    archive.catalog.paths.UnsafePath
        For a stored path that would leave the data root.
    """
    from ..catalog.paths import from_stored

    return from_stored(path, settings.data_dir)


def mjd(date: str) -> float:
    """Return the MJD of a calendar date ``YYYY-MM-DD`` (UTC midnight), for EXPSTART filters.

    Raises
    ------
    ValueError
        If ``date`` is not an ISO date.
    """
    d = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return (d - datetime(1858, 11, 17, tzinfo=timezone.utc)).total_seconds() / 86400.0


def exposures(s: Session, program: str | None = None, instrument: str | None = None, exp_type: str | None = None,
              detector: str | None = None, date_from: str | None = None, date_to: str | None = None,
              before: int | None = None, limit: int = PAGE) -> dict:
    """Return one page of exposures, newest id first, with the filters applied.

    Parameters
    ----------
    s : Session
        A read-only session.
    program, instrument, exp_type, detector : str, optional
        Equality filters (indexed columns); ``program`` is zero-padded as stored.
    date_from, date_to : str, optional
        ``YYYY-MM-DD``: EXPSTART on or after the first day, before the day after the last.
    before : int, optional
        Keyset: only exposures with a smaller id (the ``next_before`` of the previous page).
    limit : int
        Rows per page (at most 500).

    Returns
    -------
    dict
        ``rows`` (one dict per exposure) and ``next_before`` (None on the last page).
    """
    from ..catalog.queries import program_id

    limit = max(1, min(int(limit), 500))
    conds = []
    if program:
        conds.append(Exposure.program == program_id(program))
    if instrument:
        conds.append(Exposure.instrume == instrument.upper())
    if exp_type:
        conds.append(Exposure.exp_type == exp_type.upper())
    if detector:
        conds.append(Exposure.detector == detector.upper())
    if date_from:
        conds.append(Exposure.expstart >= mjd(date_from))
    if date_to:
        conds.append(Exposure.expstart < mjd(date_to) + 1.0)
    if before is not None:
        conds.append(Exposure.id < before)
    q = (select(Exposure.id, Exposure.filename, Exposure.program, Exposure.instrume, Exposure.detector,
                Exposure.exp_type, Exposure.subarray, Exposure.readpatt, Exposure.ngroups, Exposure.nints,
                Exposure.date_obs, Exposure.time_obs, Exposure.expstart)
         .where(*conds).order_by(Exposure.id.desc()).limit(limit + 1))
    rows = [dict(r._mapping) for r in s.execute(q)]
    more = len(rows) > limit
    rows = rows[:limit]
    return {"rows": rows, "next_before": rows[-1]["id"] if more else None}


def _distinct(s: Session, column) -> list[str]:
    """Distinct values of an indexed column by a skip scan (one index probe per value).

    ``SELECT DISTINCT`` reads the whole table; walking the index from each value to the
    next larger one costs one probe per distinct value, on SQLite and PostgreSQL alike.
    """
    table, name = column.table.name, column.name
    sql = text(f"WITH RECURSIVE v(x) AS (SELECT min({name}) FROM {table} UNION ALL "
               f"SELECT (SELECT min({name}) FROM {table} WHERE {name} > v.x) FROM v WHERE v.x IS NOT NULL) "
               f"SELECT x FROM v WHERE x IS NOT NULL")
    return [r[0] for r in s.execute(sql)]


def exposure_facets(s: Session) -> dict:
    """Return the distinct instruments and EXP_TYPEs (for the filter menus)."""
    return {"instruments": _distinct(s, Exposure.__table__.c.instrume),
            "exp_types": _distinct(s, Exposure.__table__.c.exp_type)}


def _product_summary(p: Product, job: Job | None = None, thumb: int | None = None) -> dict:
    return {"id": p.id, "filename": p.filename, "suffix": p.suffix, "is_current": bool(p.is_current),
            "created_at": _iso(p.created_at), "job_id": p.job_id, "size_bytes": p.size_bytes, "sha256": p.sha256,
            "stale_campaign_id": p.stale_campaign_id, "supersedes_id": p.supersedes_id,
            "pipeline": job.pipeline if job else None, "stage": stage_of(job.pipeline) if job else None,
            "thumbnail_id": thumb}


def _summaries(s: Session, prods: list[Product]) -> list[dict]:
    """Product summaries with their job's pipeline and stage and their thumbnails (two IN queries)."""
    if not prods:
        return []
    jobs = {j.id: j for j in s.execute(select(Job).where(Job.id.in_({p.job_id for p in prods}))).scalars()}
    thumbs = _thumbs(s, [p.id for p in prods])
    return [_product_summary(p, jobs.get(p.job_id), thumbs.get(p.id)) for p in prods]


def _thumbs(s: Session, product_ids: list[int], kind: str = "thumbnail") -> dict[int, int]:
    if not product_ids:
        return {}
    return {pid: vid for vid, pid in s.execute(select(ProductPreview.id, ProductPreview.product_id).where(
        ProductPreview.product_id.in_(product_ids), ProductPreview.kind == kind))}


def exposure(s: Session, filename: str) -> dict:
    """Return one exposure: header values, products by stage, jobs, associations.

    Raises
    ------
    NotFound
        If no exposure has that file name.
    """
    exp = s.execute(select(Exposure).where(Exposure.filename == filename)).scalar_one_or_none()
    if exp is None:
        raise NotFound(f"no exposure {filename!r}")
    jobs = s.execute(select(Job).where(Job.exposure_id == exp.id).order_by(Job.id)).scalars().all()
    by_id = {j.id: j for j in jobs}
    prods = s.execute(select(Product).where(Product.exposure_id == exp.id).order_by(Product.id)).scalars().all()
    for j in s.execute(select(Job).where(Job.id.in_({p.job_id for p in prods} - set(by_id)))).scalars():
        by_id[j.id] = j
    thumbs = _thumbs(s, [p.id for p in prods])
    stages: dict[int, list] = {}
    for p in prods:
        d = _product_summary(p, by_id.get(p.job_id), thumbs.get(p.id))
        stages.setdefault(d["stage"] or 1, []).append(d)
    asns = s.execute(
        select(Association.id, Association.asn_name, Association.asn_type, Association.asn_rule,
               AssociationMember.product_name, AssociationMember.exptype)
        .join(AssociationMember, AssociationMember.association_id == Association.id)
        .where(AssociationMember.exposure_id == exp.id).order_by(Association.id)).all()
    columns = {c.key: getattr(exp, c.key) for c in Exposure.__table__.columns
               if c.key not in ("header", "pool_columns")}
    columns["ingested_at"] = _iso(exp.ingested_at)
    return {
        "exposure": columns,
        "header": {k: v for k, v in (exp.header or {}).items() if not str(k).startswith("_")},
        "products_by_stage": {str(k): v for k, v in sorted(stages.items())},
        "jobs": [{"id": j.id, "pipeline": j.pipeline, "engine": j.engine, "status": j.status,
                  "attempts": j.attempts, "worker": j.worker, "error": j.error, "campaign_id": j.campaign_id,
                  "created_at": _iso(j.created_at), "started_at": _iso(j.started_at),
                  "finished_at": _iso(j.finished_at), "step_timings": j.step_timings or {},
                  "parameters": j.parameters} for j in jobs],
        "associations": [{"id": a[0], "asn_name": a[1], "asn_type": a[2], "asn_rule": a[3], "product": a[4],
                          "exptype": a[5]} for a in asns],
    }


def _fits_header(path: Path) -> list[tuple[str, str, str]]:
    from astropy.io import fits

    try:
        hdr = fits.getheader(path, 0)
    except (OSError, ValueError) as exc:
        return [("ERROR", f"{path}: {exc}", "")]
    return [(c.keyword, str(c.value), c.comment) for c in hdr.cards if c.keyword not in ("", "COMMENT", "HISTORY")]


def product(s: Session, settings: Settings, product_id: int, read_header: bool = True) -> dict:
    """Return one product: previews, header, R_* references, S_* statuses, lineage, comparison.

    Parameters
    ----------
    s : Session
        A read-only session.
    settings : Settings
        Where relative catalog paths are rooted.
    product_id : int
        ``products.id``.
    read_header : bool
        Read the FITS primary header from the file (the R_*/S_* keywords come from it).

    Returns
    -------
    dict
        Keys ``product``, ``job``, ``context``, ``previews`` (kind -> preview id),
        ``header`` [(keyword, value, comment)], ``references`` [{reftype, name, header}],
        ``statuses`` [(keyword, value)], ``inputs`` (the job's own inputs: raw exposures
        and input products), ``upstream`` (every product behind it, by depth) and
        ``raw_exposures`` (the raw files at the top), ``derived`` (downward: the products of
        every job that read this one), ``association`` (of a stage-2/3 product),
        ``supersedes`` / ``superseded_by`` and ``comparison`` (per extension).

    Raises
    ------
    NotFound
        If there is no such product.
    """
    p = s.get(Product, product_id)
    if p is None:
        raise NotFound(f"no product {product_id}")
    job = s.get(Job, p.job_id)
    ctx = s.get(CrdsContext, job.context_id) if job else None
    previews = {kind: vid for vid, kind in s.execute(
        select(ProductPreview.id, ProductPreview.kind).where(ProductPreview.product_id == p.id))}
    refs = [{"reftype": pr.reftype, "name": rf.name, "sha256": rf.sha256} for pr, rf in s.execute(
        select(ProductReference, ReferenceFile)
        .join(ReferenceFile, ReferenceFile.id == ProductReference.reference_file_id)
        .where(ProductReference.product_id == p.id).order_by(ProductReference.reftype)).all()]
    header = _fits_header(abs_path(settings, p.path)) if read_header else []
    r_keys = [(k, v) for k, v, _ in header if k.startswith("R_")]
    statuses = [(k, v) for k, v, _ in header if k.startswith("S_")]
    ref_names = {r["name"] for r in refs}
    r_links = [{"keyword": k, "value": v, "name": v[len("crds://"):] if v.startswith("crds://") else None,
                "catalogued": (v[len("crds://"):] if v.startswith("crds://") else v) in ref_names}
               for k, v in r_keys]
    # upward: the job's raw inputs, and input products where the catalog records them
    inputs = []
    for ji, exp in s.execute(select(JobInput, Exposure).join(Exposure, Exposure.id == JobInput.exposure_id)
                             .where(JobInput.job_id == p.job_id).order_by(JobInput.id)).all():
        item = {"exposure": exp.filename, "exposure_id": exp.id, "sha256": ji.sha256}
        in_pid = getattr(ji, "product_id", None)
        if in_pid is not None:
            ip = s.get(Product, in_pid)
            item["product"] = {"id": ip.id, "filename": ip.filename} if ip else None
        inputs.append(item)
    upstream, raw = _upstream(s, p.id)
    # downward: the products of every job that read this product
    readers = select(JobInput.job_id).where(JobInput.product_id == p.id)
    q = (select(Product, Job).join(Job, Job.id == Product.job_id).where(Product.job_id.in_(readers))
         .order_by(Product.id))
    below = s.execute(q).all()
    thumbs = _thumbs(s, [d.id for d, _ in below])
    derived = [_product_summary(d, j, thumbs.get(d.id)) for d, j in below]
    sup = s.get(Product, p.supersedes_id) if p.supersedes_id else None
    later = s.execute(select(Product).where(Product.supersedes_id == p.id)).scalars().first()
    comps = [{"extension": c.extension, "n_pixels": c.n_pixels, "frac_changed": c.frac_changed,
              "median_dev_over_err": c.median_dev_over_err, "p99_dev_over_err": c.p99_dev_over_err,
              "dq_gained": c.dq_gained, "dq_lost": c.dq_lost}
             for c in s.execute(select(ProductComparison).where(ProductComparison.product_id == p.id)
                                .order_by(ProductComparison.id)).scalars()]
    exp = s.get(Exposure, p.exposure_id) if p.exposure_id else None
    asn = s.get(Association, p.association_id) if p.association_id else None
    return {
        "product": {**_product_summary(p, job), "path": p.path, "exposure": exp.filename if exp else None},
        "association": {"id": asn.id, "asn_name": asn.asn_name, "asn_type": asn.asn_type} if asn else None,
        "job": {"id": job.id, "pipeline": job.pipeline, "engine": job.engine, "status": job.status,
                "cal_version": job.cal_version, "software_versions": job.software_versions,
                "parameters": job.parameters, "worker": job.worker, "started_at": _iso(job.started_at),
                "finished_at": _iso(job.finished_at), "step_timings": job.step_timings or {}} if job else None,
        "context": ctx.name if ctx else None,
        "previews": previews,
        "header": header,
        "references": refs,
        "r_keywords": r_links,
        "statuses": statuses,
        "inputs": inputs,
        "upstream": upstream,
        "raw_exposures": raw,
        "derived": derived,
        "supersedes": {"id": sup.id, "filename": sup.filename, "created_at": _iso(sup.created_at)} if sup else None,
        "superseded_by": {"id": later.id, "filename": later.filename} if later else None,
        "comparison": comps,
    }


_UPSTREAM = text("""
WITH RECURSIVE up(product_id, exposure_id, depth) AS (
    SELECT ji.product_id, ji.exposure_id, 1
    FROM products p JOIN job_inputs ji ON ji.job_id = p.job_id WHERE p.id = :p
    UNION
    SELECT ji.product_id, ji.exposure_id, up.depth + 1
    FROM up JOIN products q ON q.id = up.product_id JOIN job_inputs ji ON ji.job_id = q.job_id
)
SELECT product_id, exposure_id, min(depth) FROM up GROUP BY product_id, exposure_id
""")


def _upstream(s: Session, product_id: int) -> tuple[list[dict], list[dict]]:
    """Everything behind a product, at any depth: (input products by depth, raw exposures).

    A recursive query anchored on this one product (the ``product_lineage`` view computes
    every product's lineage before filtering, which a page cannot afford on a big catalog).
    """
    rows = s.execute(_UPSTREAM, {"p": product_id}).all()
    depth = {}
    for pid, _eid, d in rows:
        if pid is not None:
            depth[pid] = min(d, depth.get(pid, d))
    products = []
    if depth:
        for q, j in s.execute(select(Product, Job).join(Job, Job.id == Product.job_id)
                              .where(Product.id.in_(list(depth)))).all():
            products.append({"depth": depth[q.id], **_product_summary(q, j)})
    products.sort(key=lambda d: (d["depth"], d["filename"]))
    raw_ids = {eid for _pid, eid, _d in rows if eid is not None}
    raw = [{"id": i, "filename": f, "sha256": h} for i, f, h in s.execute(
        select(Exposure.id, Exposure.filename, Exposure.sha256).where(Exposure.id.in_(list(raw_ids)))
        .order_by(Exposure.filename))] if raw_ids else []
    return products, raw


def preview_file(s: Session, settings: Settings, preview_id: int) -> Path:
    """Return the PNG file of a catalogued preview.

    Raises
    ------
    NotFound
        If there is no such preview row, or its file is gone.
    """
    row = s.get(ProductPreview, preview_id)
    if row is None:
        raise NotFound(f"no preview {preview_id}")
    path = abs_path(settings, row.path)
    if not path.is_file():
        raise NotFound(f"preview {preview_id}: {path} is missing")
    return path


def associations(s: Session, program: str | None = None, before: int | None = None, limit: int = PAGE) -> dict:
    """Return one page of associations (newest first), with member and product counts."""
    from ..catalog.queries import program_id

    conds = []
    if program:
        conds.append(Association.program == program_id(program))
    if before is not None:
        conds.append(Association.id < before)
    n_members = (select(func.count()).where(AssociationMember.association_id == Association.id)
                 .correlate(Association).scalar_subquery())
    q = (select(Association.id, Association.asn_name, Association.asn_type, Association.asn_rule, Association.level,
                Association.program, Association.product_name, n_members.label("n_members"))
         .where(*conds).order_by(Association.id.desc()).limit(limit + 1))
    rows = [dict(r._mapping) for r in s.execute(q)]
    more = len(rows) > limit
    rows = rows[:limit]
    return {"rows": rows, "next_before": rows[-1]["id"] if more else None}


def association(s: Session, asn_id: int) -> dict:
    """Return one association: its members (with their exposures) and the jobs run on it.

    Raises
    ------
    NotFound
        If there is no such association.
    """
    a = s.get(Association, asn_id)
    if a is None:
        raise NotFound(f"no association {asn_id}")
    members = [{"product": m.product_name, "expname": m.expname, "exptype": m.exptype,
                "exposure": e.filename if e else None} for m, e in s.execute(
        select(AssociationMember, Exposure).outerjoin(Exposure, Exposure.id == AssociationMember.exposure_id)
        .where(AssociationMember.association_id == a.id).order_by(AssociationMember.id)).all()]
    jobs = s.execute(select(Job).where(Job.association_id == a.id).order_by(Job.id)).scalars().all()
    prods = s.execute(select(Product).where(Product.job_id.in_([j.id for j in jobs])).order_by(Product.id)
                      ).scalars().all() if jobs else []
    return {"association": {"id": a.id, "asn_name": a.asn_name, "asn_id": a.asn_id, "asn_type": a.asn_type,
                            "asn_rule": a.asn_rule, "level": a.level, "program": a.program,
                            "product_name": a.product_name, "jwst_version": a.jwst_version,
                            "created_at": _iso(a.created_at)},
            "members": members,
            "jobs": [{"id": j.id, "pipeline": j.pipeline, "status": j.status, "error": j.error} for j in jobs],
            "products": _summaries(s, prods),
            "content": a.content}


def contexts(s: Session) -> list[dict]:
    """Return every CRDS context seen (newest first): when, in use, how many jobs ran under it.

    The products each context made are on its own page (:func:`context`).
    """
    n_jobs = dict(s.execute(select(Job.context_id, func.count()).group_by(Job.context_id)).all())
    q = select(CrdsContext).order_by(CrdsContext.id.desc())
    return [{"id": c.id, "name": c.name, "first_seen": _iso(c.first_seen), "in_use": bool(c.in_use),
             "in_use_since": _iso(c.in_use_since), "crds_version": c.crds_version, "n_jobs": n_jobs.get(c.id, 0)}
            for c in s.execute(q).scalars()]


def context(s: Session, name: str, limit: int = 200) -> dict:
    """Return one context and (up to ``limit``) products made under it.

    Raises
    ------
    NotFound
        If the catalog has no context of that name.
    """
    c = s.execute(select(CrdsContext).where(CrdsContext.name == name)).scalar_one_or_none()
    if c is None:
        raise NotFound(f"no CRDS context {name!r}")
    prods = s.execute(select(Product).join(Job, Job.id == Product.job_id).where(Job.context_id == c.id)
                      .order_by(Product.id.desc()).limit(limit)).scalars().all()
    return {"context": {"id": c.id, "name": c.name, "first_seen": _iso(c.first_seen), "in_use": bool(c.in_use),
                        "in_use_since": _iso(c.in_use_since), "crds_version": c.crds_version},
            "products": _summaries(s, prods)}


def context_diff(s: Session, old: str, new: str) -> dict:
    """Return the best references that differ between two contexts, by reftype.

    Compares the catalog's ``bestrefs`` rows of exposures known under both contexts, and
    adds what the switch from ``old`` to ``new`` recorded, if the catalog made it: the
    reftypes whose rmaps differ (by instrument) and the reference changes it found.

    Returns
    -------
    dict
        ``old``, ``new``, ``reftypes``: reftype -> list of {old, new, n_exposures}
        (only changed selections; "N/A" when the reftype does not apply), and ``switch``:
        {campaign_id, changed_reftypes {instrument: [reftype]}, by_change {change: n
        exposures}} or None.

    Raises
    ------
    NotFound
        If either context is unknown.
    """
    ids = {}
    for name in (old, new):
        c = s.execute(select(CrdsContext.id).where(CrdsContext.name == name)).scalar_one_or_none()
        if c is None:
            raise NotFound(f"no CRDS context {name!r}")
        ids[name] = c
    a, b = aliased(BestRef), aliased(BestRef)
    q = (select(a.reftype, a.value, b.value, func.count())
         .join(b, and_(b.exposure_id == a.exposure_id, b.reftype == a.reftype, b.context_id == ids[new]))
         .where(a.context_id == ids[old], a.value != b.value)
         .group_by(a.reftype, a.value, b.value).order_by(a.reftype, a.value))
    out: dict[str, list] = {}
    for reftype, vo, vn, n in s.execute(q):
        out.setdefault(reftype, []).append({"old": vo, "new": vn, "n_exposures": n})
    # what the switch from old to new recorded: the rmaps' changed reftypes and the changes seen
    switch = s.execute(select(Campaign).where(Campaign.kind == "context", Campaign.from_context_id == ids[old],
                                              Campaign.context_id == ids[new]).order_by(Campaign.id)).scalars().first()
    return {"old": old, "new": new, "reftypes": out,
            "switch": {"campaign_id": switch.id,
                       "changed_reftypes": (switch.selection or {}).get("changed_reftypes", {}),
                       "by_change": (switch.summary or {}).get("by_change", {})} if switch else None}


def references(s: Session, reftype: str | None = None, after: str | None = None, limit: int = 200) -> dict:
    """Return one page of reference files by name, with how many products used each."""
    n = (select(func.count()).where(ProductReference.reference_file_id == ReferenceFile.id)
         .correlate(ReferenceFile).scalar_subquery())
    conds = []
    if reftype:
        conds.append(ReferenceFile.reftype == reftype.lower())
    if after:
        conds.append(ReferenceFile.name > after)
    q = (select(ReferenceFile.id, ReferenceFile.name, ReferenceFile.reftype, ReferenceFile.instrument,
                ReferenceFile.sha256, n.label("n_products"))
         .where(*conds).order_by(ReferenceFile.name).limit(limit + 1))
    rows = [dict(r._mapping) for r in s.execute(q)]
    more = len(rows) > limit
    rows = rows[:limit]
    return {"rows": rows, "next_after": rows[-1]["name"] if more else None}


def reference(s: Session, name: str, before: int | None = None, limit: int = 200) -> dict:
    """Return one reference file and (a page of) the products made with it, newest first.

    ``before`` is the keyset of the next page: the ``next_before`` of the previous one (a
    ``product_references`` id, recorded with each product).

    Raises
    ------
    NotFound
        If the catalog has no reference file of that name.
    """
    rf = s.execute(select(ReferenceFile).where(ReferenceFile.name == name)).scalar_one_or_none()
    if rf is None:
        raise NotFound(f"no reference file {name!r}")
    # newest first by the product_references row (recorded with its product): the reftype's
    # index, walked backwards, gives the page without sorting every product of the reference
    conds = [ProductReference.reference_file_id == rf.id]
    if before is not None:
        conds.append(ProductReference.id < before)
    rows = s.execute(select(Product, ProductReference.id)
                     .join(ProductReference, ProductReference.product_id == Product.id)
                     .where(*conds).order_by(ProductReference.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    prods = [p for p, _ in rows]
    return {"reference": {"id": rf.id, "name": rf.name, "reftype": rf.reftype, "instrument": rf.instrument,
                          "sha256": rf.sha256, "size_bytes": rf.size_bytes, "path": rf.path},
            "products": _summaries(s, prods),
            "next_before": rows[-1][1] if more else None}


def campaigns(s: Session) -> list[dict]:
    """Every campaign, newest first, with its job counts by status."""
    rows = s.execute(select(Campaign).order_by(Campaign.id.desc()).limit(500)).scalars().all()
    counts: dict[int, dict] = {}
    if rows:
        for cid, st, n in s.execute(select(Job.campaign_id, Job.status, func.count())
                                    .where(Job.campaign_id.in_([c.id for c in rows]))
                                    .group_by(Job.campaign_id, Job.status)):
            counts.setdefault(cid, {})[st] = n
    return [{"id": c.id, "created_at": _iso(c.created_at), "reason": c.reason, "kind": c.kind, "status": c.status,
             "n_jobs": c.n_jobs, "counts": counts.get(c.id, {})} for c in rows]


def campaign(s: Session, campaign_id: int, window_s: float = 600.0) -> dict:
    """Return a campaign's progress: counts per stage and status, throughput, ETA, failures.

    Parameters
    ----------
    s : Session
        A read-only session.
    campaign_id : int
        ``campaigns.id``.
    window_s : float
        Throughput is over the jobs that finished in the last ``window_s`` seconds
        (jobs per hour); ETA = jobs left / throughput.

    Raises
    ------
    NotFound
        If there is no such campaign.
    """
    c = s.get(Campaign, campaign_id)
    if c is None:
        raise NotFound(f"no campaign {campaign_id}")
    by_stage: dict[str, dict[str, int]] = {}
    totals = {"queued": 0, "running": 0, "succeeded": 0, "failed": 0}
    for pipeline, st, n in s.execute(select(Job.pipeline, Job.status, func.count()).where(Job.campaign_id == c.id)
                                     .group_by(Job.pipeline, Job.status)):
        key = f"stage {stage_of(pipeline)}: {pipeline}"
        by_stage.setdefault(key, {}).setdefault(st, 0)
        by_stage[key][st] += n
        totals[st] = totals.get(st, 0) + n
    never_run = s.execute(select(func.count()).select_from(CampaignExposure).where(
        CampaignExposure.campaign_id == c.id,
        ~select(Job.id).where(Job.campaign_id == c.id, Job.exposure_id == CampaignExposure.exposure_id).exists())
    ).scalar_one()
    now = datetime.now(timezone.utc)
    recent = s.execute(select(func.count()).select_from(Job).where(
        Job.campaign_id == c.id, Job.status == "succeeded",
        Job.finished_at >= now - timedelta(seconds=window_s))).scalar_one()
    throughput = recent * 3600.0 / window_s if recent else None
    left = totals["queued"] + totals["running"] + never_run
    eta = left * 3600.0 / throughput if throughput and left else (0.0 if not left else None)
    failures = [{"job_id": j, "exposure": e, "pipeline": pl, "error": err} for j, e, pl, err in s.execute(
        select(Job.id, Exposure.filename, Job.pipeline, Job.error).outerjoin(Exposure, Exposure.id == Job.exposure_id)
        .where(Job.campaign_id == c.id, Job.status == "failed").order_by(Job.id.desc()).limit(50))]
    done = totals["succeeded"]
    total = sum(totals.values()) + never_run
    return {"campaign": {"id": c.id, "created_at": _iso(c.created_at), "reason": c.reason, "kind": c.kind,
                         "status": c.status, "closed_at": _iso(c.closed_at), "n_jobs": c.n_jobs,
                         "summary": c.summary},
            "counts": {**totals, "never_run": never_run}, "by_stage": by_stage, "total": total, "done": done,
            "percent": round(100.0 * done / total, 1) if total else 100.0,
            "throughput_per_hour": throughput, "eta_seconds": eta, "failures": failures,
            "as_of": _iso(now)}


#: the home page counts rows exactly up to this many, and estimates beyond it
COUNT_BOUND = 10_000


def count_rows(s: Session, model, *conds, bound: int = COUNT_BOUND) -> tuple[int, str | None]:
    """Count a table's rows (matching ``conds``) exactly when few, else estimate them cheaply.

    Counting a 100,000-row table exactly reads all of it; a count that stops at ``bound``
    rows reads at most that many (by index where ``conds`` has one). Beyond the bound the
    number is an estimate: on PostgreSQL the planner's row estimate (``EXPLAIN``, from
    ``pg_class.reltuples`` and the column statistics ``ANALYZE``/autovacuum keep), on SQLite
    the largest id for a whole table (ids are never reused), and otherwise the bound itself
    as a lower limit. Everything goes through the caller's read-only session.

    Parameters
    ----------
    s : Session
        A read-only session.
    model : type
        A mapped class with an integer ``id`` primary key.
    *conds : sqlalchemy expressions
        WHERE conditions (none: the whole table).
    bound : int
        Largest number counted exactly.

    Returns
    -------
    (int, str or None)
        The number, and how it is known: None (exact), ``"about"`` (an estimate) or
        ``"more than"`` (``bound`` is a lower limit; SQLite with conditions).
    """
    table = model.__table__
    inner = select(literal(1)).select_from(table).where(*conds).limit(bound + 1).subquery()
    n = s.execute(select(func.count()).select_from(inner)).scalar_one()
    if n <= bound:
        return n, None
    dialect = s.get_bind().dialect
    if dialect.name == "postgresql":
        q = select(literal(1)).select_from(table).where(*conds)
        sql = str(q.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        plan = s.execute(text(f"EXPLAIN (FORMAT JSON) {sql}")).scalar_one()
        if isinstance(plan, str):
            import json

            plan = json.loads(plan)
        return max(int(plan[0]["Plan"]["Plan Rows"]), n), "about"
    if not conds:
        return max(int(s.execute(select(func.max(table.c.id))).scalar_one() or 0), n), "about"
    return bound, "more than"


def home(s: Session) -> dict:
    """Return counts of the catalog's nouns, the context in use, the open campaigns.

    Counts beyond :data:`COUNT_BOUND` rows are estimates (:func:`count_rows`); the key
    ``estimated`` maps each such count's name to ``"about"`` or ``"more than"``.
    """
    counts = {
        "exposures": count_rows(s, Exposure),
        "associations": count_rows(s, Association),
        "products": count_rows(s, Product),
        "current_products": count_rows(s, Product, Product.is_current.is_(True)),
        "jobs": count_rows(s, Job),
        "failed_jobs": count_rows(s, Job, Job.status == "failed"),
        "queued_or_running": count_rows(s, Job, Job.status.in_(("queued", "running"))),
        "contexts": count_rows(s, CrdsContext),
        "references": count_rows(s, ReferenceFile),
    }
    in_use = s.execute(select(CrdsContext.name).where(CrdsContext.in_use.is_(True))).scalar_one_or_none()
    open_campaigns = [{"id": i, "reason": r} for i, r in s.execute(
        select(Campaign.id, Campaign.reason).where(Campaign.status == "open").order_by(Campaign.id.desc()))]
    return {**{k: n for k, (n, _) in counts.items()},
            "estimated": {k: how for k, (_, how) in counts.items() if how},
            "context_in_use": in_use, "open_campaigns": open_campaigns}
