"""The association pool of a program, built from the catalog.

Every catalogued exposure of the program goes into the pool: association rules are
STScI's operational policy, so which exposures associate (target acquisitions, lamp and
flat exposures, new modes ...) is left to the jwst generator, never pre-filtered here. An
exposure ingested with ``--pool`` contributes its pool row as the pool gave it (with the
planning columns only a pool has, such as ASN_CANDIDATE), at the row's position in that
pool; any other exposure contributes the row jwst's own ``mkpool`` makes from its stored
raw file's primary header, after the pool rows, in time order. The generator's output
depends on row order (member order within products), so the order is the pool file's.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from ..catalog.db import session_scope
from ..catalog.paths import from_stored
from ..catalog.models import Exposure
from ..config import Settings


def header_pool_rows(paths: list[str], left_out: list[tuple[str, str]] | None = None) -> list[dict[str, str]]:
    """Return pool rows as jwst's ``mkpool`` makes them from stored files' primary headers.

    For exposures that no pool file described; ``mkpool`` reads headers only. A file
    ``mkpool`` cannot make a row of (a header without a keyword it needs, e.g. the TARGNAME
    FGS guiding files lack) is left out of the pool: it is named in ``left_out`` with the
    reason, and the other files go on.

    Parameters
    ----------
    paths : list of str
        Stored raw exposures.
    left_out : list, optional
        Receives ``(file name, reason)`` for each file left out.

    Returns
    -------
    list of dict
        One row per file, UPPER-CASE column names, string values, in the order of ``paths``.
    """
    if not paths:
        return []
    from jwst.associations.mkpool import mkpool

    def rows_of(batch):
        pool = mkpool(batch)
        return [{n.upper(): str(row[n]) for n in pool.colnames} for row in pool]

    try:
        return rows_of(paths)
    except Exception:  # noqa: BLE001 - mkpool raises KeyError/ValueError/OSError: find the file(s)
        pass
    rows: list[dict[str, str]] = []
    for path in paths:
        try:
            rows.extend(rows_of([path]))
        except Exception as exc:  # noqa: BLE001 - reported, never silently dropped
            if left_out is not None:
                left_out.append((Path(path).name, f"jwst mkpool cannot make its pool row: {exc!r}"))
    return rows


def catalog_pool_rows(settings: Settings, program: str,
                      left_out: list[tuple[str, str]] | None = None) -> tuple[list[dict[str, str]], str]:
    """Return the pool of one program's catalogued exposures, and the pool's name.

    Parameters
    ----------
    settings : Settings
        The archive's settings (its catalog).
    program : str
        The program as the catalog stores it (``"01019"``).
    left_out : list, optional
        Receives ``(file name, reason)`` for an exposure without a pool row that ``mkpool``
        cannot describe (see :func:`header_pool_rows`).

    Returns
    -------
    rows : list of dict
        One row per catalogued exposure of the program: pool rows in the order of their
        pool file (by pool file name, then position), then the rows ``mkpool`` makes for
        exposures no pool described (by EXPSTART, then file name).
    name : str
        The pool file's name when every row came from one pool file (jwst copies it
        into each association's ``asn_pool``), else ``jw<program>_catalog_pool``.
    """
    with session_scope(settings.db_url) as s:
        exps = list(s.execute(select(Exposure).where(Exposure.program == program)
                              .order_by(Exposure.filename)).scalars())
        pooled = sorted((e for e in exps if e.pool_columns),
                        key=lambda e: (e.pool_name or "", e.pool_row if e.pool_row is not None else -1, e.filename))
        rows = [dict(e.pool_columns) for e in pooled]
        unpooled = sorted((e for e in exps if not e.pool_columns), key=lambda e: (e.expstart or 0.0, e.filename))
        headers = [str(from_stored(e.storage_path, settings.data_dir)) for e in unpooled]
        names = {e.pool_name for e in exps}
    name = next(iter(names)) if len(names) == 1 and None not in names else f"jw{program}_catalog_pool"
    return rows + header_pool_rows(headers, left_out), name
