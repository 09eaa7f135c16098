"""CRDS contexts, reference files and best references in the catalog.

Selection itself is the ``crds`` library's (through :mod:`archive.crds.cache`, fully
offline on the local cache); this module records what it said: which contexts exist and
which is in use, each reference file with its checksum, and the best reference of every
(exposure, context, reftype).
"""
from __future__ import annotations

import ast
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..catalog.paths import UnsafePath, to_stored
from ..catalog.models import BestRef, CrdsContext, Exposure, ReferenceFile
from ..catalog.queries import in_use_context
from ..config import Settings
from ..ingest.storage import sha256_file
from . import cache as crdscache


class ContextError(RuntimeError):
    """No usable CRDS context (none configured, in use, or in the cache)."""


def cache_operational_context(crds_path: Path) -> str | None:
    """Return the operational context named in the cache's ``config/jwst/server_config`` (or None)."""
    cfg = Path(crds_path) / "config" / "jwst" / "server_config"
    if not cfg.is_file():
        return None
    try:
        return ast.literal_eval(cfg.read_text()).get("operational_context")
    except (ValueError, SyntaxError):
        return None


def ensure_context(session: Session, name: str) -> CrdsContext:
    """Return the catalog row of a context, creating it on first sight."""
    row = session.execute(select(CrdsContext).where(CrdsContext.name == name)).scalar_one_or_none()
    if row is None:
        import crds

        row = CrdsContext(name=name, crds_version=crds.__version__)
        session.add(row)
        session.flush()
    return row


def use_context(session: Session, name: str) -> CrdsContext:
    """Mark ``name`` as the context in use (and no other)."""
    row = ensure_context(session, name)
    if not row.in_use:
        session.execute(update(CrdsContext).where(CrdsContext.id != row.id).values(in_use=False))
        row.in_use = True
        row.in_use_since = datetime.now(timezone.utc)
    return row


def context_in_use(settings: Settings, session: Session) -> CrdsContext:
    """Return the context to calibrate with.

    ``CRDS_CONTEXT`` if set, else the one marked in use in the catalog, else the cache's
    operational context (which then becomes in use).

    Raises
    ------
    ContextError
        If none of these gives a context.
    """
    if settings.crds_context:
        return ensure_context(session, settings.crds_context)
    row = in_use_context(session)
    if row is not None:
        return row
    name = cache_operational_context(settings.crds_path)
    if not name:
        raise ContextError(
            f"no CRDS context: set CRDS_CONTEXT, run 'archive crds use CONTEXT', or give a cache "
            f"with config/jwst/server_config (CRDS_PATH={settings.crds_path})")
    return use_context(session, name)


def ensure_reference(session: Session, name: str, reftype: str, instrument: str | None) -> ReferenceFile:
    """Return the catalog row of a reference file; its checksum is taken when the file is in the cache.

    Its path is stored relative to the CRDS cache (``CRDS_PATH``).
    """
    row = session.execute(select(ReferenceFile).where(ReferenceFile.name == name)).scalar_one_or_none()
    if row is None:
        row = ReferenceFile(name=name, reftype=reftype, instrument=instrument)
        session.add(row)
    if row.sha256 is None:
        try:
            path = crdscache.locate(name)
        except Exception:
            path = None
        if path is not None and Path(path).is_file():
            try:  # relative to the CRDS cache, so a cache mounted elsewhere keeps working
                row.path = to_stored(path, crdscache.cache_root())
            except UnsafePath:
                row.path = str(path)
            row.sha256 = sha256_file(path)
            row.size_bytes = Path(path).stat().st_size
    session.flush()
    return row


def crds_header(exposure: Exposure) -> dict:
    """Return the header CRDS matches on: the stored primary and SCI keywords of the exposure."""
    return {k: v for k, v in (exposure.header or {}).items() if not k.startswith("_")}


def compute_bestrefs(settings: Settings, session: Session, exposure: Exposure, context: CrdsContext,
                     reftypes: list[str]) -> dict[str, str]:
    """Return the best references of an exposure under a context, stored in ``bestrefs``.

    Reftypes already stored for this exposure and context are not asked of crds again.

    Returns
    -------
    dict
        reftype -> file name, or "N/A" when the reftype does not apply.

    Raises
    ------
    archive.crds.cache.BestrefsError
        When crds cannot select for this header; the message names the file.
    """
    stored = {
        b.reftype: b.value
        for b in session.execute(
            select(BestRef).where(BestRef.exposure_id == exposure.id, BestRef.context_id == context.id)
        ).scalars()
    }
    missing = [r for r in reftypes if r not in stored]
    if missing:
        crdscache.configure(settings.crds_path)
        found = crdscache.bestrefs(crds_header(exposure), context.name, missing)
        for reftype in missing:
            value = found.get(reftype, "N/A")
            ref_id = None
            if value != "N/A":
                ref_id = ensure_reference(session, value, reftype, exposure.instrume).id
            session.add(BestRef(exposure_id=exposure.id, context_id=context.id, reftype=reftype,
                                reference_file_id=ref_id, value=value))
            stored[reftype] = value
        session.flush()
    return {r: stored[r] for r in reftypes}
