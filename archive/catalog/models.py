"""The catalog: SQLAlchemy models of the archive's nouns (DESIGN.md, "Catalog").

Rows refer to each other by foreign-key columns only (no ORM relationships): workers load
what they need explicitly, close the session, compute, and open a new session to record
the result (STYLE.md, "Short database sessions in long jobs").

The schema is created and changed only by the Alembic migrations in ``migrations/``;
these classes describe it for queries and must agree with the latest migration (a test
checks that ``alembic upgrade head`` leaves nothing for autogenerate to add).
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Timezone-aware UTC now (all catalog times are UTC)."""
    return datetime.now(timezone.utc)


def as_utc(dt: datetime | None) -> datetime | None:
    """Return a catalog time as a timezone-aware UTC datetime.

    SQLite gives back naive datetimes for timezone-aware columns; every catalog time is
    UTC, so a naive one is marked as such. Aware datetimes and None pass unchanged.

    Parameters
    ----------
    dt : datetime or None
        A time read from the catalog.

    Returns
    -------
    datetime or None
        ``dt`` with ``tzinfo`` UTC when it had none.
    """
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


class Base(DeclarativeBase):
    """The declarative base of every catalog model."""


class Exposure(Base):
    """One raw exposure file (``*_uncal.fits``) and the header values used for selection."""

    __tablename__ = "exposures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str] = mapped_column(String(128), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    storage_path: Mapped[str] = mapped_column(Text)
    source_path: Mapped[str | None] = mapped_column(Text)
    ingested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    program: Mapped[str | None] = mapped_column(String(16), index=True)
    observtn: Mapped[str | None] = mapped_column(String(8))
    visit: Mapped[str | None] = mapped_column(String(8))
    visit_id: Mapped[str | None] = mapped_column(String(16))
    exposure: Mapped[str | None] = mapped_column(String(8))
    instrume: Mapped[str] = mapped_column(String(16), index=True)
    detector: Mapped[str | None] = mapped_column(String(16), index=True)
    exp_type: Mapped[str] = mapped_column(String(32), index=True)
    readpatt: Mapped[str | None] = mapped_column(String(32))
    subarray: Mapped[str | None] = mapped_column(String(32))
    ngroups: Mapped[int | None] = mapped_column(Integer)
    nints: Mapped[int | None] = mapped_column(Integer)
    nframes: Mapped[int | None] = mapped_column(Integer)
    groupgap: Mapped[int | None] = mapped_column(Integer)
    filter: Mapped[str | None] = mapped_column(String(16))
    pupil: Mapped[str | None] = mapped_column(String(16))
    expstart: Mapped[float | None] = mapped_column(Float, index=True)
    date_obs: Mapped[str | None] = mapped_column(String(32))
    time_obs: Mapped[str | None] = mapped_column(String(32))
    targname: Mapped[str | None] = mapped_column(String(64))
    stage1_pipeline: Mapped[str] = mapped_column(String(32))
    header: Mapped[dict] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    """Primary and SCI header keywords (string/number values): enough to recompute best
    references and pools without opening the file. JSONB on PostgreSQL, so selecting a few
    keywords of many exposures does not re-parse each whole header."""
    pool_columns: Mapped[dict | None] = mapped_column(JSON)
    """Planning columns only a pool supplies (ASN_CANDIDATE ...), from ``ingest --pool``."""
    pool_name: Mapped[str | None] = mapped_column(String(128))
    """File name of the pool that supplied ``pool_columns``."""
    pool_row: Mapped[int | None] = mapped_column(Integer)
    """0-based position of that row among the pool file's rows: ``archive associate``
    gives the generator each pool in this order, as ``asn_generate`` reads the file."""


class IngestRejection(Base):
    """A file that ``archive ingest`` refused, with the reason; the batch went on.

    One row per distinct rejection (the same path, content, kind and reason: ``rejection_key``,
    unique): refusing it again, in a later or a concurrent ingest, counts ``attempts`` and
    moves ``rejected_at`` to the latest time.
    """

    __tablename__ = "ingest_rejections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(String(255), index=True)
    sha256: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # rejected | conflict
    reason: Mapped[str] = mapped_column(Text)
    rejected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    rejection_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    """sha256 of path, content sha256, kind and reason (:func:`rejection_key`)."""
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


def rejection_key(path: str, sha256: str | None, kind: str, reason: str) -> str:
    """Return the identity of a rejection: the hex sha256 of its path, content, kind and reason."""
    return hashlib.sha256("\0".join((path, sha256 or "", kind, reason)).encode()).hexdigest()


class Association(Base):
    """A Level-2 or Level-3 association made by the jwst generator, in its JSON form."""

    __tablename__ = "associations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asn_name: Mapped[str] = mapped_column(String(128), index=True)
    """jwst's name for the association file (e.g. jw99009-o001_image2_00001_asn)."""
    asn_id: Mapped[str] = mapped_column(String(64))
    asn_type: Mapped[str] = mapped_column(String(32))
    asn_rule: Mapped[str] = mapped_column(String(96))
    level: Mapped[int] = mapped_column(Integer)
    program: Mapped[str | None] = mapped_column(String(16), index=True)
    product_name: Mapped[str] = mapped_column(String(255))
    content: Mapped[dict] = mapped_column(JSON)
    content_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    storage_path: Mapped[str | None] = mapped_column(Text)
    jwst_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AssociationMember(Base):
    """A member of an association: an exposure (by expname) of one of its products."""

    __tablename__ = "association_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    association_id: Mapped[int] = mapped_column(ForeignKey("associations.id", ondelete="CASCADE"), index=True)
    product_name: Mapped[str] = mapped_column(String(255))
    expname: Mapped[str] = mapped_column(String(255))
    exptype: Mapped[str] = mapped_column(String(32))
    exposure_id: Mapped[int | None] = mapped_column(ForeignKey("exposures.id"), index=True)


class CrdsContext(Base):
    """A CRDS context (.pmap) seen by the archive; at most one is in use."""

    __tablename__ = "crds_contexts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    in_use: Mapped[bool] = mapped_column(Boolean, default=False)
    in_use_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    crds_version: Mapped[str | None] = mapped_column(String(32))


class ReferenceFile(Base):
    """A CRDS reference file (by name) with its checksum and local path."""

    __tablename__ = "reference_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    reftype: Mapped[str] = mapped_column(String(32), index=True)
    instrument: Mapped[str | None] = mapped_column(String(16))
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    path: Mapped[str | None] = mapped_column(Text)


class BestRef(Base):
    """(exposure, context, reftype) -> reference file, or N/A when the reftype does not apply."""

    __tablename__ = "bestrefs"
    __table_args__ = (UniqueConstraint("exposure_id", "context_id", "reftype"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exposure_id: Mapped[int] = mapped_column(ForeignKey("exposures.id", ondelete="CASCADE"), index=True)
    context_id: Mapped[int] = mapped_column(ForeignKey("crds_contexts.id"), index=True)
    reftype: Mapped[str] = mapped_column(String(32))
    reference_file_id: Mapped[int | None] = mapped_column(ForeignKey("reference_files.id"))
    value: Mapped[str] = mapped_column(String(128))  # the file name, or "N/A"


class Campaign(Base):
    """A bulk reprocessing request: why, what it made stale, and its state.

    Why: a new context, new software, an operator. Its state is open until every job it
    owes has succeeded.
    """

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    reason: Mapped[str] = mapped_column(Text)
    selection: Mapped[dict] = mapped_column(JSON)
    context_id: Mapped[int | None] = mapped_column(ForeignKey("crds_contexts.id"))
    """The context the campaign's jobs run under (the new one, for a context change)."""
    n_jobs: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(16), default="manual", server_default="manual")
    """context | software | manual"""
    from_context_id: Mapped[int | None] = mapped_column(Integer)
    """The context in use before a context change (no FK constraint: see migration 0003)."""
    cal_version: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    summary: Mapped[dict | None] = mapped_column(JSON)
    """Counts: {"stale": n, "by_change": {"nircam dark a.fits -> b.fits": n}, ...}."""


class CampaignExposure(Base):
    """An exposure a campaign remakes: which reftypes changed and where to start again.

    The pipeline starts again at the first step that reads a changed reference.
    """

    __tablename__ = "campaign_exposures"
    __table_args__ = (UniqueConstraint("campaign_id", "exposure_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    exposure_id: Mapped[int] = mapped_column(ForeignKey("exposures.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"))
    """The product made stale."""
    changes: Mapped[list] = mapped_column(JSON)
    """[{"reftype": "dark", "old": "a.fits", "new": "b.fits"}, ...] or, for new software,
    [{"software": "jwst-archive", "old": "0.1.0", "new": "0.2.0"}]."""
    first_step: Mapped[str | None] = mapped_column(String(32))


class Job(Base):
    """One pipeline run: inputs, context, software versions, parameters, status, times.

    ``status`` is one of queued, running, succeeded, failed. A job is leased by a worker
    (``lease_expires_at``); a lease that expires makes the job owed again.
    """

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status"), Index("ix_jobs_exposure_pipeline", "exposure_id", "pipeline"),
                      Index("ix_jobs_campaign_id", "campaign_id"), Index("ix_jobs_association_id", "association_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(32))
    engine: Mapped[str] = mapped_column(String(16), default="calib")
    exposure_id: Mapped[int | None] = mapped_column(ForeignKey("exposures.id"))
    association_id: Mapped[int | None] = mapped_column(ForeignKey("associations.id"))
    context_id: Mapped[int] = mapped_column(ForeignKey("crds_contexts.id"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    cal_version: Mapped[str] = mapped_column(String(32))
    software_versions: Mapped[dict] = mapped_column(JSON)
    parameters: Mapped[dict] = mapped_column(JSON)
    param_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    output_dir: Mapped[str | None] = mapped_column(Text)
    step_timings: Mapped[dict | None] = mapped_column(JSON)
    retryable: Mapped[bool | None] = mapped_column(Boolean)
    """For a failed job: True after a transient fault (the task layer retries), False after
    bad input or a bad reference (a duplicate message does nothing; the planner revives it
    only when asked)."""
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    broker_epoch: Mapped[str | None] = mapped_column(String(64))
    """The broker's identity when the job was last sent (Redis run_id): a different one now
    means the broker restarted and lost the message."""


class JobInput(Base):
    """An input file of a job, with the checksum it had when the job ran."""

    __tablename__ = "job_inputs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    exposure_id: Mapped[int] = mapped_column(ForeignKey("exposures.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"), index=True)
    """The catalogued product a stage-2/3 job read (a member's rate, cal ...); NULL: the raw
    exposure itself (stage 1)."""


class Product(Base):
    """A file a job wrote. Written once, never changed; ``is_current`` marks the live one."""

    __tablename__ = "products"
    __table_args__ = (Index("ix_products_exposure_suffix_current", "exposure_id", "suffix", "is_current"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    exposure_id: Mapped[int | None] = mapped_column(ForeignKey("exposures.id"))
    association_id: Mapped[int | None] = mapped_column(ForeignKey("associations.id"), index=True)
    """The association whose stage-2/3 job made it (NULL: stage 1). A stage-3 product of the
    whole association (i2d, cat, segm) has no exposure."""
    filename: Mapped[str] = mapped_column(String(255), index=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    suffix: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"))
    stale_campaign_id: Mapped[int | None] = mapped_column(Integer, index=True)
    """The campaign that made this product stale (NULL: not stale). No FK: see migration 0003."""


class ProductComparison(Base):
    """A new product against the one it supersedes, for one extension (SCI, ERR, DQ ...).

    ``frac_changed``: fraction of pixels whose value differs; ``median_dev_over_err`` and
    ``p99_dev_over_err``: median and 99th percentile of |new - old| / ERR_new over pixels
    with finite values and ERR > 0 (SCI only); ``dq_gained`` / ``dq_lost``: per DQ flag
    name, the number of pixels that gained or lost it (DQ only).
    """

    __tablename__ = "product_comparisons"
    __table_args__ = (UniqueConstraint("product_id", "extension"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    previous_product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    extension: Mapped[str] = mapped_column(String(16))
    n_pixels: Mapped[int] = mapped_column(BigInteger)
    frac_changed: Mapped[float] = mapped_column(Float)
    median_dev_over_err: Mapped[float | None] = mapped_column(Float)
    p99_dev_over_err: Mapped[float | None] = mapped_column(Float)
    dq_gained: Mapped[dict | None] = mapped_column(JSON)
    dq_lost: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProductReference(Base):
    """One R_<REFTYPE> keyword of a product: the reference file it was made with."""

    __tablename__ = "product_references"
    __table_args__ = (UniqueConstraint("product_id", "reftype"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    reftype: Mapped[str] = mapped_column(String(32))
    reference_file_id: Mapped[int] = mapped_column(ForeignKey("reference_files.id"), index=True)


class ProductPreview(Base):
    """A PNG drawn from a product (``preview`` or ``thumbnail``), written beside it.

    Made with the product by the worker (and by ``archive previews`` for older products);
    a remade product is a new product with previews of its own.
    """

    __tablename__ = "product_previews"
    __table_args__ = (UniqueConstraint("product_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # preview | thumbnail
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
