"""``archive associate``: associations from the catalog, made by the jwst generator.

For each program, the pool built from the catalog (:mod:`archive.associations.catalog_pool`:
every catalogued exposure, in pool order) goes through the jwst package's own generator
(:mod:`archive.associations.generator`, DESIGN.md "Associations") with the options
``asn_generate`` runs with (for an SDP-named pool, ``--version-id <stamp>`` as operations
give it); the Level-2 and Level-3 associations it makes are stored with their members and
written as JSON into storage.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from sqlalchemy import select

from ..catalog.db import session_scope
from ..catalog.paths import to_stored
from ..catalog.models import Association, AssociationMember, Exposure
from ..catalog.queries import program_id
from ..config import Settings
from . import generator
from .catalog_pool import catalog_pool_rows

def _root(name: str) -> str:
    """Return the exposure root a member's file name names: ``<root>_<suffix>.fits`` -> ``<root>``.

    jwst names every product ``<root>_<suffix>.<ext>`` (rate, cal, x1d, ...), so the root is
    what precedes the last underscore.
    """
    return name.split(".", 1)[0].rsplit("_", 1)[0]


@dataclass
class AssociateReport:
    """What ``archive associate`` did.

    Associations created and already stored, counts by level, and the exposures left out of
    their program's pool (file name, reason: see :func:`catalog_pool.header_pool_rows`).
    """

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    levels: dict[str, int] = field(default_factory=dict)
    left_out: list[tuple[str, str]] = field(default_factory=list)


def associate(settings: Settings, program: str | None = None) -> AssociateReport:
    """Generate associations for the catalog (or one program), store and write them.

    Idempotent: an association whose content is already stored is not added again.

    Parameters
    ----------
    settings : Settings
        The archive's settings (catalog, associations directory).
    program : str, optional
        Only this program (``"1019"`` or ``"01019"``); default every program, one pool each.

    Returns
    -------
    AssociateReport

    Raises
    ------
    ValueError
        If the catalog holds no exposure to associate.
    """
    import jwst

    with session_scope(settings.db_url) as s:
        q = select(Exposure.program).distinct().order_by(Exposure.program)
        if program:
            q = q.where(Exposure.program == program_id(program))
        programs = [p for p in s.execute(q).scalars()]
    if not programs:
        raise ValueError("no exposures in the catalog to associate")
    asns = []
    left_out: list[tuple[str, str]] = []
    for prog in programs:  # a pool per program, as the operations system makes them
        rows, pool_name = catalog_pool_rows(settings, prog, left_out)
        if not rows:
            continue
        asns.extend(generator.generate(generator.pool_from_rows(rows, pool_name=pool_name),
                                       version_id=generator.sdp_version_id(pool_name)))
    report = AssociateReport(left_out=left_out)
    settings.associations_dir.mkdir(parents=True, exist_ok=True)
    for asn in asns:
        content = json.loads(json.dumps(asn, default=str))
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
        level = generator.asn_level(content)
        report.levels[f"level{level}"] = report.levels.get(f"level{level}", 0) + 1
        with session_scope(settings.db_url) as s:
            if s.execute(select(Association.id).where(Association.content_sha256 == digest)).first():
                report.existing.append(content["asn_name"])
                continue
        path = generator.write_json(content, settings.associations_dir)
        with session_scope(settings.db_url) as s:
            names = {e.filename: e.id for e in s.execute(select(Exposure)).scalars()}
            by_root = {_root(n): i for n, i in names.items()}
            products = content.get("products") or [{}]
            row = Association(asn_name=content["asn_name"], asn_id=content["asn_id"],
                              asn_type=content.get("asn_type", ""), asn_rule=content.get("asn_rule", ""), level=level,
                              program=str(content.get("program", "")) or None,
                              product_name=str(products[0].get("name", "")), content=content,
                              content_sha256=digest, storage_path=to_stored(path, settings.data_dir),
                              jwst_version=jwst.__version__)
            s.add(row)
            s.flush()
            for product, expname, exptype in generator.members(content):
                s.add(AssociationMember(association_id=row.id, product_name=product, expname=expname,
                                        exptype=exptype, exposure_id=by_root.get(_root(expname))))
        report.created.append(content["asn_name"])
    return report
