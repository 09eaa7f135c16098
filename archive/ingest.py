"""Ingest of raw exposures (``*_uncal.fits``) into storage and the catalog.

Only headers are read (astropy's lazy HDU loading; no pixel I/O). A file is accepted when
it is a JWST raw exposure: TELESCOP = JWST, a Level-1b data model (DATAMODL
Level1bModel, or an ``_uncal`` name for older files without DATAMODL), the keywords the
catalog needs, a 4-D SCI extension whose shape agrees with NINTS, NGROUPS, SUBSIZE1 and
SUBSIZE2, and a file long enough to hold every HDU its headers announce.

Ingest is idempotent: the same file again changes nothing; a different file under a
name already catalogued is a conflict and is never overwritten. A bad file is recorded
in ``ingest_rejections`` with its reason, and the rest of the batch goes on.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from astropy.io import fits
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .config import Settings
from .catalog.db import session_scope
from .catalog.models import Exposure, IngestRejection
from .catalog.pipeline_policy import pipelines_for
from .storage import atomic_copy, sha256_file

REQUIRED_KEYWORDS = (
    "TELESCOP", "INSTRUME", "DETECTOR", "EXP_TYPE", "NGROUPS", "NINTS", "SUBARRAY",
    "SUBSIZE1", "SUBSIZE2", "DATE-OBS", "PROGRAM",
)

# Header columns of the exposures table: column -> FITS keyword
HEADER_COLUMNS = {
    "program": "PROGRAM", "observtn": "OBSERVTN", "visit": "VISIT", "visit_id": "VISIT_ID",
    "exposure": "EXPOSURE", "instrume": "INSTRUME", "detector": "DETECTOR",
    "exp_type": "EXP_TYPE", "readpatt": "READPATT", "subarray": "SUBARRAY",
    "ngroups": "NGROUPS", "nints": "NINTS", "nframes": "NFRAMES", "groupgap": "GROUPGAP",
    "filter": "FILTER", "pupil": "PUPIL", "expstart": "EXPSTART", "date_obs": "DATE-OBS",
    "time_obs": "TIME-OBS", "targname": "TARGNAME",
}
INT_COLUMNS = {"ngroups", "nints", "nframes", "groupgap"}


class RejectedFile(ValueError):
    """A file that is not an acceptable JWST raw exposure; the message gives the reason."""


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
    outcomes: list[IngestOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def ok(self) -> bool:
        """True when nothing was rejected and nothing conflicted."""
        return not any(o.status in ("rejected", "conflict") for o in self.outcomes)


def _plain(value):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def read_raw_header(path: str | os.PathLike) -> dict:
    """Validate a raw exposure from its headers and return its keywords.

    Returns
    -------
    dict
        Primary-header keywords, then SCI-header keywords not already present; values are
        str, int, float or bool. ``_SCI_SHAPE`` holds the SCI shape (NINTS, NGROUPS, ny, nx).

    Raises
    ------
    RejectedFile
        With the reason: not FITS, truncated, wrong telescope, not a Level-1b exposure,
        missing keywords, or a SCI shape that disagrees with the header.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RejectedFile(f"cannot read: {exc.strerror}") from exc
    try:
        with warnings.catch_warnings(), fits.open(path, lazy_load_hdus=True, memmap=False) as hdul:
            warnings.simplefilter("ignore")  # astropy's truncation warning: we report it ourselves
            n_hdus = len(hdul)  # reads every header, no data
            if n_hdus == 0:
                raise RejectedFile("not a FITS file: no HDU")
            last = hdul.fileinfo(n_hdus - 1)
            needed = last["datLoc"] + last["datSpan"]
            primary = hdul[0].header
            sci = None
            for hdu in hdul[1:]:
                if hdu.header.get("EXTNAME", "").upper() == "SCI":
                    sci = hdu.header
                    break
    except RejectedFile:
        raise
    except (OSError, ValueError, IndexError, KeyError, TypeError) as exc:
        raise RejectedFile(f"not a readable FITS file: {exc}") from exc
    if size < needed:
        raise RejectedFile(f"truncated: {size} bytes on disk, its headers announce {needed}")

    telescope = str(primary.get("TELESCOP", "")).strip()
    if telescope != "JWST":
        raise RejectedFile(f"TELESCOP is {telescope!r}, not 'JWST'")
    datamodel = str(primary.get("DATAMODL", "")).strip()
    if datamodel and datamodel != "Level1bModel":
        raise RejectedFile(f"DATAMODL is {datamodel!r}: not a raw (Level1bModel) exposure")
    if not datamodel and not path.name.endswith("_uncal.fits"):
        raise RejectedFile("no DATAMODL and not an _uncal file: not a raw exposure")
    missing = [k for k in REQUIRED_KEYWORDS if primary.get(k) in (None, "")]
    if missing:
        raise RejectedFile(f"missing required keywords: {', '.join(missing)}")
    if sci is None:
        raise RejectedFile("no SCI extension")
    if sci.get("NAXIS") != 4:
        raise RejectedFile(f"SCI has NAXIS={sci.get('NAXIS')}, a raw ramp has 4 axes")
    shape = tuple(int(sci[f"NAXIS{i}"]) for i in (4, 3, 2, 1))
    expected = (int(primary["NINTS"]), int(primary["NGROUPS"]),
                int(primary["SUBSIZE2"]), int(primary["SUBSIZE1"]))
    if shape != expected:
        raise RejectedFile(
            f"SCI shape {shape} disagrees with (NINTS, NGROUPS, SUBSIZE2, SUBSIZE1) = {expected}"
        )

    keywords: dict = {}
    for header in (primary, sci):
        for card in header.cards:
            key = card.keyword
            if not key or key in ("COMMENT", "HISTORY") or key in keywords:
                continue
            keywords[key] = _plain(card.value)
    keywords["_SCI_SHAPE"] = list(shape)
    return keywords


def header_columns(keywords: dict) -> dict:
    """The exposures-table header columns from a keyword dict (strings upper-cased)."""
    values = {}
    for column, key in HEADER_COLUMNS.items():
        value = keywords.get(key)
        if column in INT_COLUMNS and value is not None:
            value = int(value)
        elif column == "expstart" and value is not None:
            value = float(value)
        elif isinstance(value, str):
            value = value.strip()
            if column not in ("targname", "date_obs", "time_obs"):
                value = value.upper()
        values[column] = value
    return values


def iter_paths(paths: Iterable[str | os.PathLike], recursive: bool = False) -> list[Path]:
    """Expand arguments to files: directories give their ``*.fits`` files (``**`` if recursive)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            pattern = "**/*.fits" if recursive else "*.fits"
            out.extend(sorted(q for q in p.glob(pattern) if q.is_file()))
        else:
            out.append(p)
    return out


def _record_rejection(settings: Settings, outcome: IngestOutcome, kind: str) -> None:
    with session_scope(settings.db_url) as s:
        s.add(IngestRejection(path=outcome.path, filename=outcome.filename, sha256=outcome.sha256,
                              kind=kind, reason=outcome.reason))


def ingest_file(settings: Settings, path: Path, pool: dict[str, dict] | None = None,
                pool_name: str | None = None) -> IngestOutcome:
    """Validate, checksum, store and catalogue one file. Never raises for a bad file:
    the outcome says what happened (and a rejection is recorded in the catalog)."""
    outcome = IngestOutcome(path=str(path), filename=path.name, status="rejected")
    try:
        keywords = read_raw_header(path)
    except RejectedFile as exc:
        outcome.reason = str(exc)
        _record_rejection(settings, outcome, "rejected")
        return outcome
    outcome.sha256 = sha256_file(path)

    with session_scope(settings.db_url) as s:
        existing = s.execute(select(Exposure).where(Exposure.filename == path.name)).scalar_one_or_none()
        if existing is not None:
            outcome.exposure_id = existing.id
            outcome.stage1_pipeline = existing.stage1_pipeline
            if existing.sha256 == outcome.sha256:
                outcome.status = "unchanged"
                if pool and path.name in pool and existing.pool_columns != pool[path.name]:
                    existing.pool_columns = pool[path.name]
                    existing.pool_name = pool_name
                return outcome
    if existing is not None:
        outcome.status = "conflict"
        outcome.reason = (f"a different file named {path.name} is catalogued already "
                          f"(sha256 {existing.sha256[:12]}..., this one {outcome.sha256[:12]}...); not overwritten")
        _record_rejection(settings, outcome, "conflict")
        return outcome

    columns = header_columns(keywords)
    program = columns.get("program") or "unknown"
    dest = settings.raw_dir / program / path.name
    try:
        if dest.exists():
            # left by an earlier ingest that stopped before its catalog row was written
            if sha256_file(dest) != outcome.sha256:
                outcome.status = "conflict"
                outcome.reason = f"{dest} exists in storage with other content; not overwritten"
                _record_rejection(settings, outcome, "conflict")
                return outcome
        else:
            atomic_copy(path, dest, expected_sha256=outcome.sha256)
    except (OSError, ValueError) as exc:
        outcome.reason = f"could not store: {exc}"
        _record_rejection(settings, outcome, "rejected")
        return outcome

    stage1 = pipelines_for(columns["exp_type"]).stage1
    try:
        with session_scope(settings.db_url) as s:
            exp = Exposure(filename=path.name, sha256=outcome.sha256, size_bytes=path.stat().st_size,
                           storage_path=str(dest), source_path=str(path.resolve()),
                           stage1_pipeline=stage1, header=keywords,
                           pool_columns=(pool or {}).get(path.name),
                           pool_name=pool_name if (pool or {}).get(path.name) else None, **columns)
            s.add(exp)
            s.flush()
            outcome.exposure_id = exp.id
    except IntegrityError:
        # another ingest of the same name won the race: report as that run would
        with session_scope(settings.db_url) as s:
            other = s.execute(select(Exposure).where(Exposure.filename == path.name)).scalar_one()
            outcome.exposure_id = other.id
            outcome.status = "unchanged" if other.sha256 == outcome.sha256 else "conflict"
        return outcome
    outcome.status = "ingested"
    outcome.stage1_pipeline = stage1
    return outcome


def ingest(settings: Settings, paths: Iterable[str | os.PathLike], recursive: bool = False,
           pool_path: str | os.PathLike | None = None,
           progress: Callable[[IngestOutcome], None] | None = None) -> IngestReport:
    """Ingest files and directories; see the module docstring for the rules.

    Parameters
    ----------
    pool_path : optional
        An association pool whose rows (matched by FILENAME) supply planning columns
        the headers lack (ASN_CANDIDATE ...); they are stored with the exposure.

    Raises
    ------
    FileNotFoundError, ValueError
        Only for an unreadable ``pool_path``; bad exposure files never raise.
    """
    pool = pool_name = None
    if pool_path is not None:
        from .pools import pool_rows

        pool = {row["FILENAME"]: row for row in pool_rows(pool_path)}
        pool_name = Path(pool_path).name
    report = IngestReport()
    for path in iter_paths(paths, recursive):
        outcome = ingest_file(settings, path, pool, pool_name)
        report.outcomes.append(outcome)
        if progress:
            progress(outcome)
    return report
