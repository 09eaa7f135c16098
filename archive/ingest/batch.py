"""The ingest batch: raw exposures (``*_uncal.fits``) into storage and the catalog.

Each file's headers are checked (:mod:`archive.ingest.headers`), its checksum taken and
the file copied atomically into storage (:mod:`archive.ingest.storage`), then catalogued.
Ingest is idempotent: the same file again changes nothing; a different file under a
name already catalogued is a conflict and is never overwritten. A bad file is recorded
in ``ingest_rejections`` with its reason, and the rest of the batch goes on.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..catalog.db import session_scope
from ..catalog.models import Exposure, IngestRejection, rejection_key, utcnow
from ..catalog.paths import name_component, program_component, to_stored, under_root
from ..catalog.pipeline_policy import stage1_pipeline
from ..config import Settings
from .headers import RejectedFile, header_columns, open_regular, read_raw_header
from .pools import pool_rows
from .storage import atomic_copy, sha256_file

log = logging.getLogger(__name__)


@dataclass
class IngestOutcome:
    """What happened to one file: ingested, unchanged, rejected or conflict."""

    path: str
    filename: str
    status: str
    reason: str = ""
    exposure_id: int | None = None
    sha256: str | None = None
    stage1_pipeline: str | None = None


@dataclass
class IngestReport:
    """The outcome of every file of an ingest batch, in order."""

    outcomes: list[IngestOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        """Return how many files ended with ``status`` (ingested, unchanged, rejected, conflict)."""
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def ok(self) -> bool:
        """True when nothing was rejected and nothing conflicted."""
        return not any(o.status in ("rejected", "conflict") for o in self.outcomes)


def iter_paths(paths: Iterable[str | os.PathLike], recursive: bool = False) -> list[Path]:
    """Expand arguments to files: directories give their ``*.fits`` entries (``**`` if recursive).

    Every entry named ``*.fits`` is listed, whatever it is (a FIFO, a device, a link):
    :func:`ingest_file` rejects what is not a regular file, with the reason.
    """
    return [p for p, _root in _paths_with_roots(paths, recursive)]


def _paths_with_roots(paths: Iterable[str | os.PathLike], recursive: bool) -> list[tuple[Path, Path | None]]:
    out: list[tuple[Path, Path | None]] = []
    for p in map(Path, paths):
        if p.is_dir():
            pattern = "**/*.fits" if recursive else "*.fits"
            out.extend((q, p) for q in sorted(p.glob(pattern)) if not q.is_dir())
        else:
            out.append((p, None))
    return out


def _outside(path: Path, root: Path | None) -> str | None:
    """Return why a file found in directory ``root`` is refused (a link out of it), or None."""
    if root is None or not path.is_symlink():
        return None
    target = path.resolve()
    if not target.is_relative_to(root.resolve()):
        return f"symbolic link to {target}, outside the directory ingested ({root}); not followed"
    return None


def _record_rejection(settings: Settings, outcome: IngestOutcome, kind: str) -> None:
    """Record a rejection once: the same one again (a re-run, a concurrent ingest) counts an attempt."""
    values = {"path": outcome.path, "filename": outcome.filename[:255], "sha256": outcome.sha256, "kind": kind,
              "reason": outcome.reason, "rejected_at": utcnow(), "attempts": 1,
              "rejection_key": rejection_key(str(outcome.path), outcome.sha256, kind, str(outcome.reason))}
    with session_scope(settings.db_url) as s:
        dialect = s.get_bind().dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(IngestRejection).values(**values)
        s.execute(stmt.on_conflict_do_update(
            index_elements=[IngestRejection.rejection_key],
            set_={"attempts": IngestRejection.attempts + 1, "rejected_at": stmt.excluded.rejected_at}))


def ingest_file(settings: Settings, path: Path, pool: dict[str, tuple[int, dict]] | None = None,
                pool_name: str | None = None, root: Path | None = None) -> IngestOutcome:
    """Validate, checksum, store and catalogue one file.

    Never raises for a bad file: the outcome says what happened (and a rejection is
    recorded in the catalog).

    Parameters
    ----------
    settings : Settings
        The archive's settings (catalog, storage).
    path : Path
        The raw exposure.
    pool : dict, optional
        ``FILENAME -> (position, row)`` of a pool file; the file's row, if any, is stored
        with the exposure (``pool_columns``) together with its 0-based position among the
        pool's rows (``pool_row``: the order ``archive associate`` gives the generator).
    pool_name : str, optional
        File name of that pool.
    root : Path, optional
        The directory the file was found in: a symbolic link leading out of it is refused.

    Returns
    -------
    IngestOutcome

    Notes
    -----
    Any failure of one file, expected or not, becomes a rejection row with its reason
    (an unexpected one is logged with its traceback); a file this call put into storage
    is removed again unless its catalog row was written.
    """
    outcome = IngestOutcome(path=str(path), filename=path.name, status="rejected")
    stored: list[Path] = []
    try:
        return _ingest_file(settings, path, outcome, stored, pool, pool_name, root)
    except Exception as exc:  # one file never stops the batch
        log.error("ingest of %s failed", path, exc_info=True)
        for f in stored:
            f.unlink(missing_ok=True)
        outcome.status = "rejected"
        outcome.reason = f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        _record_rejection(settings, outcome, "rejected")
        return outcome


def _ingest_file(settings: Settings, path: Path, outcome: IngestOutcome, stored: list[Path],
                 pool: dict[str, tuple[int, dict]] | None, pool_name: str | None,
                 root: Path | None) -> IngestOutcome:
    limit = Exposure.__table__.c["filename"].type.length
    outside = _outside(path, root) or (
        f"file name is {len(path.name)} characters long; the catalog holds at most {limit}"
        if len(path.name) > limit else None)
    if outside:
        outcome.reason = outside
        _record_rejection(settings, outcome, "rejected")
        return outcome
    try:
        keywords = read_raw_header(path)
        columns = header_columns(keywords)
        with open_regular(path) as fh:
            outcome.sha256 = sha256_file(fh)
    except RejectedFile as exc:
        outcome.reason = str(exc)
        _record_rejection(settings, outcome, "rejected")
        return outcome

    with session_scope(settings.db_url) as s:
        existing = s.execute(select(Exposure).where(Exposure.filename == path.name)).scalar_one_or_none()
        if existing is not None:
            outcome.exposure_id = existing.id
            outcome.stage1_pipeline = existing.stage1_pipeline
            if existing.sha256 == outcome.sha256:
                outcome.status = "unchanged"
                if pool and path.name in pool:
                    position, row = pool[path.name]
                    if (existing.pool_columns, existing.pool_name, existing.pool_row) != (row, pool_name, position):
                        existing.pool_columns, existing.pool_name, existing.pool_row = row, pool_name, position
                return outcome
    if existing is not None:
        outcome.status = "conflict"
        outcome.reason = (f"a different file named {path.name} is catalogued already "
                          f"(sha256 {existing.sha256[:12]}..., this one {outcome.sha256[:12]}...); not overwritten")
        _record_rejection(settings, outcome, "conflict")
        return outcome

    try:
        dest = settings.raw_dir / program_component(columns["program"]) / name_component(path.name, "file name")
        under_root(dest.parent, settings.raw_dir)  # after resolving links: never outside raw storage
        if not dest.exists():
            try:
                atomic_copy(path, dest, expected_sha256=outcome.sha256)
                stored.append(dest)
            except FileExistsError:
                pass  # another ingest of the same file stored it meanwhile: compared below
        if dest not in stored and sha256_file(dest) != outcome.sha256:
            # left by an earlier ingest that stopped before its catalog row was written
            outcome.status = "conflict"
            outcome.reason = f"{dest} exists in storage with other content; not overwritten"
            _record_rejection(settings, outcome, "conflict")
            return outcome
    except (OSError, ValueError) as exc:
        outcome.reason = f"could not store: {exc}"
        _record_rejection(settings, outcome, "rejected")
        return outcome

    stage1 = stage1_pipeline(columns["exp_type"])
    position, row = (pool or {}).get(path.name, (None, None))
    try:
        with session_scope(settings.db_url) as s:
            exp = Exposure(filename=path.name, sha256=outcome.sha256, size_bytes=path.stat().st_size,
                           storage_path=to_stored(dest, settings.data_dir), source_path=str(path.resolve()),
                           stage1_pipeline=stage1, header=keywords, pool_columns=row,
                           pool_name=pool_name if row else None, pool_row=position if row else None,
                           **columns)
            s.add(exp)
            s.flush()
            outcome.exposure_id = exp.id
    except IntegrityError:
        # another ingest of the same name won the race: report as that run would
        with session_scope(settings.db_url) as s:
            other = s.execute(select(Exposure).where(Exposure.filename == path.name)).scalar_one_or_none()
        if other is None:
            raise
        if other.sha256 != outcome.sha256:
            for f in stored:  # ours, under another program's directory: not catalogued
                f.unlink(missing_ok=True)
        stored.clear()  # else the stored file is the other run's catalogued one now
        outcome.exposure_id = other.id
        if other.sha256 == outcome.sha256:
            outcome.status, outcome.stage1_pipeline = "unchanged", other.stage1_pipeline
        else:
            outcome.status = "conflict"
            outcome.reason = (f"a different file named {path.name} was catalogued meanwhile "
                              f"(sha256 {other.sha256[:12]}..., this one {outcome.sha256[:12]}...); not overwritten")
            _record_rejection(settings, outcome, "conflict")
        return outcome
    stored.clear()
    outcome.status = "ingested"
    outcome.stage1_pipeline = stage1
    return outcome


def ingest(settings: Settings, paths: Iterable[str | os.PathLike], recursive: bool = False,
           pool_path: str | os.PathLike | None = None,
           progress: Callable[[IngestOutcome], None] | None = None) -> IngestReport:
    """Ingest files and directories.

    See the module docstring, and :mod:`archive.ingest.headers` for what a raw exposure
    must be.

    Parameters
    ----------
    settings : Settings
        The archive's settings (catalog, storage).
    paths : iterable of path-like
        Files and directories (their ``*.fits`` files; see :func:`iter_paths`).
    recursive : bool
        Look into subdirectories too.
    pool_path : optional
        An association pool whose rows (matched by FILENAME) supply planning columns
        the headers lack (ASN_CANDIDATE ...); they are stored with the exposure, with the
        row's position in the pool.
    progress : callable, optional
        Called with each file's :class:`IngestOutcome` as it is done.

    Returns
    -------
    IngestReport

    Raises
    ------
    FileNotFoundError, ValueError
        Only for an unreadable ``pool_path`` or one whose file name the catalog cannot hold
        (checked before any file is ingested); bad exposure files never raise.
    """
    pool = pool_name = None
    if pool_path is not None:
        pool = {}
        for position, row in enumerate(pool_rows(pool_path)):
            pool.setdefault(row.get("FILENAME"), (position, row))
        pool_name = Path(pool_path).name
        limit = Exposure.__table__.c["pool_name"].type.length
        if len(pool_name) > limit:   # checked before any file: the batch would record it with every row
            raise ValueError(f"{pool_path}: pool file name is {len(pool_name)} characters long; the catalog "
                             f"holds at most {limit}")
    report = IngestReport()
    for path, root in _paths_with_roots(paths, recursive):
        outcome = ingest_file(settings, path, pool, pool_name, root)
        report.outcomes.append(outcome)
        if progress:
            progress(outcome)
    return report
