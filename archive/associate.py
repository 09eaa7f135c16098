"""``archive associate``: associations from the catalog, made by the jwst generator.

A pool is built from the catalog for each program: an exposure ingested with ``--pool`` contributes its
pool row as the pool gave it (with the planning columns only a pool has, such as
ASN_CANDIDATE); any other exposure contributes the row jwst's own ``mkpool`` makes from
its stored raw file's primary header. :func:`archive.associations.generate` (the jwst package's generator,
DESIGN.md "Associations") turns the pool into Level-2 and Level-3 associations, which
are stored with their members and written as JSON into storage.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from sqlalchemy import select

from . import associations as asn_lib
from .config import Settings
from .catalog.db import session_scope
from .catalog.models import Association, AssociationMember, Exposure
from .catalog.pipeline_policy import pipelines_for

_SUFFIX = re.compile(r"_(uncal|rate|rateints|cal|calints|crf|i2d)\.fits$")


def _root(name: str) -> str:
    return _SUFFIX.sub("", name)


def header_pool_rows(paths: list[str]) -> list[dict[str, str]]:
    """Pool rows, as jwst's ``mkpool`` makes them from the primary headers of stored files
    (it reads headers only), for exposures that no pool file described."""
    if not paths:
        return []
    from jwst.associations.mkpool import mkpool

    pool = mkpool(paths)
    return [{n.upper(): str(row[n]) for n in pool.colnames} for row in pool]


def catalog_pool_rows(settings: Settings, program: str) -> tuple[list[dict[str, str]], str]:
    """The pool of one program's catalogued exposures, one row each, and its name: the pool
    file's name when every row came from one pool file (jwst copies it into each
    association's ``asn_pool``), else ``jw<program>_catalog_pool``."""
    with session_scope(settings.db_url) as s:
        exps = [e for e in s.execute(select(Exposure).where(Exposure.program == program)
                                     .order_by(Exposure.filename)).scalars()
                # guider and dark exposures have no stage 2/3: no association applies to them
                if pipelines_for(e.exp_type).stage2 is not None]
        rows = [dict(e.pool_columns) for e in exps if e.pool_columns]
        headers = [e.storage_path for e in exps if not e.pool_columns]
        names = {e.pool_name for e in exps}
    name = next(iter(names)) if len(names) == 1 and None not in names else f"jw{program}_catalog_pool"
    return rows + header_pool_rows(headers), name


@dataclass
class AssociateReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    levels: dict[str, int] = field(default_factory=dict)


def associate(settings: Settings, program: str | None = None) -> AssociateReport:
    """Generate associations for the catalog (or one program), store and write them.

    Idempotent: an association whose content is already stored is not added again.

    Raises
    ------
    ValueError
        If the catalog holds no exposure to associate.
    """
    import jwst

    with session_scope(settings.db_url) as s:
        q = select(Exposure.program).distinct().order_by(Exposure.program)
        if program:
            q = q.where(Exposure.program == program.lstrip("0").rjust(5, "0"))
        programs = [p for p in s.execute(q).scalars()]
    if not programs:
        raise ValueError("no exposures in the catalog to associate")
    asns = []
    for prog in programs:  # a pool per program, as the operations system makes them
        rows, pool_name = catalog_pool_rows(settings, prog)
        if not rows:
            continue
        asns.extend(asn_lib.generate(asn_lib.pool_from_rows(rows, pool_name=pool_name)))
    report = AssociateReport()
    settings.associations_dir.mkdir(parents=True, exist_ok=True)
    for asn in asns:
        content = json.loads(json.dumps(asn, default=str))
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
        level = asn_lib.asn_level(content)
        report.levels[f"level{level}"] = report.levels.get(f"level{level}", 0) + 1
        with session_scope(settings.db_url) as s:
            if s.execute(select(Association.id).where(Association.content_sha256 == digest)).first():
                report.existing.append(content["asn_name"])
                continue
        path = asn_lib.write_json(content, settings.associations_dir)
        with session_scope(settings.db_url) as s:
            names = {e.filename: e.id for e in s.execute(select(Exposure)).scalars()}
            by_root = {_root(n): i for n, i in names.items()}
            products = content.get("products") or [{}]
            row = Association(asn_name=content["asn_name"], asn_id=content["asn_id"], asn_type=content.get("asn_type", ""),
                              asn_rule=content.get("asn_rule", ""), level=level,
                              program=str(content.get("program", "")) or None,
                              product_name=str(products[0].get("name", "")), content=content,
                              content_sha256=digest, storage_path=str(path), jwst_version=jwst.__version__)
            s.add(row)
            s.flush()
            for product, expname, exptype in asn_lib.members(content):
                s.add(AssociationMember(association_id=row.id, product_name=product, expname=expname,
                                        exptype=exptype, exposure_id=by_root.get(_root(expname))))
        report.created.append(content["asn_name"])
    return report
