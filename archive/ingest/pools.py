"""Association pools: the pipe-separated tables the jwst association generator reads.

A pool has one row per exposure with the columns ``asn_make_pool`` writes (PROGRAM, OBS_NUM,
VISIT, EXP_TYPE, INSTRUME, DETECTOR, FILTER, PUPIL, SUBARRAY, ...) plus planning columns
that only the proposal system knows (ASN_CANDIDATE, ...). Reading goes through the jwst
package's own reader, :class:`jwst.associations.AssociationPool`, so that a pool means here
exactly what it means to ``asn_generate``.
"""
from __future__ import annotations

from pathlib import Path


def read_pool(path: str | Path):
    """Read an association pool file.

    Parameters
    ----------
    path : str or Path
        A pipe-separated pool file (comment lines start with ``#``).

    Returns
    -------
    jwst.associations.AssociationPool
        An astropy Table subclass; every column is a string, column names are as in the
        file (the generator matches names case-insensitively).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be parsed as a pool (the message names the file).
    """
    from jwst.associations import AssociationPool

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pool file")
    try:
        return AssociationPool.read(str(path))
    except Exception as exc:  # astropy raises many types for a malformed table
        raise ValueError(f"{path}: not a readable association pool: {exc}") from exc


def pool_rows(path: str | Path) -> list[dict[str, str]]:
    """Return the rows of a pool as dicts with UPPER-CASE column names and string values."""
    pool = read_pool(path)
    names = pool.colnames
    return [{n.upper(): str(row[n]) for n in names} for row in pool]
