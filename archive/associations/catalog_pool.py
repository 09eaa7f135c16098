"""The association pool of a program, built from the catalog.

An exposure ingested with ``--pool`` contributes its pool row as the pool gave it (with
the planning columns only a pool has, such as ASN_CANDIDATE); any other exposure
contributes the row jwst's own ``mkpool`` makes from its stored raw file's primary
header. Guider and dark exposures have no stage 2 or 3, so no association applies to them
and they are left out.
"""
from __future__ import annotations

from sqlalchemy import select

from ..catalog.db import session_scope
from ..catalog.models import Exposure
from ..catalog.pipeline_policy import pipelines_for
from ..config import Settings


def header_pool_rows(paths: list[str]) -> list[dict[str, str]]:
    """Return pool rows as jwst's ``mkpool`` makes them from stored files' primary headers.

    For exposures that no pool file described; ``mkpool`` reads headers only.

    Parameters
    ----------
    paths : list of str
        Stored raw exposures.

    Returns
    -------
    list of dict
        One row per file, UPPER-CASE column names, string values.
    """
    if not paths:
        return []
    from jwst.associations.mkpool import mkpool

    pool = mkpool(paths)
    return [{n.upper(): str(row[n]) for n in pool.colnames} for row in pool]


def catalog_pool_rows(settings: Settings, program: str) -> tuple[list[dict[str, str]], str]:
    """Return the pool of one program's catalogued exposures, and the pool's name.

    Parameters
    ----------
    settings : Settings
        The archive's settings (its catalog).
    program : str
        The program as the catalog stores it (``"01019"``).

    Returns
    -------
    rows : list of dict
        One row per exposure that has a stage 2 (see the module docstring).
    name : str
        The pool file's name when every row came from one pool file (jwst copies it
        into each association's ``asn_pool``), else ``jw<program>_catalog_pool``.
    """
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
