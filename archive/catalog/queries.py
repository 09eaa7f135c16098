"""Queries that several parts of the archive share."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import CrdsContext


def program_id(program: str) -> str:
    """Return a JWST program number in the form the catalog stores it.

    Parameters
    ----------
    program : str
        A program number as an operator types it, e.g. ``"1019"`` or ``"01019"``.

    Returns
    -------
    str
        The five-digit, zero-padded PROGRAM value of ``exposures.program`` (``"01019"``).
    """
    return program.lstrip("0").rjust(5, "0")


def in_use_context(session: Session) -> CrdsContext | None:
    """Return the CRDS context marked in use in the catalog.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        An open catalog session.

    Returns
    -------
    CrdsContext or None
        The row with ``in_use`` set (at most one is), or None when no context is in use.
    """
    return session.execute(select(CrdsContext).where(CrdsContext.in_use.is_(True))).scalar_one_or_none()
