"""Each ingest rejection recorded once, with a count of attempts.

Two concurrent `archive ingest` runs of one directory (or a re-run) each recorded the same
bad file's rejection, so the catalog differed from one ingest's (issue 11). A rejection is
now identified by ``rejection_key`` (sha256 of path, content sha256, kind and reason;
unique); refusing it again counts ``attempts`` and moves ``rejected_at`` to the latest.
Existing duplicates are merged into their first row (attempts = how many there were,
rejected_at = the latest).

Downgrade drops the two columns; merged duplicates are not split again (their count is
lost with ``attempts``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""
import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _key(path, sha256, kind, reason) -> str:
    # the same digest as archive.catalog.models.rejection_key (a migration keeps its own copy:
    # it must keep meaning what it meant when it ran, whatever the model code becomes)
    return hashlib.sha256("\0".join((path or "", sha256 or "", kind or "", reason or "")).encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("ingest_rejections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rejection_key", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="1", nullable=False))
    conn = op.get_bind()
    t = sa.table("ingest_rejections", sa.column("id", sa.Integer), sa.column("path", sa.Text),
                 sa.column("sha256", sa.String), sa.column("kind", sa.String), sa.column("reason", sa.Text),
                 sa.column("rejected_at", sa.DateTime(timezone=True)), sa.column("rejection_key", sa.String),
                 sa.column("attempts", sa.Integer))
    first: dict[str, tuple[int, int, object]] = {}
    drop: list[int] = []
    for rid, path, sha, kind, reason, at in conn.execute(
            sa.select(t.c.id, t.c.path, t.c.sha256, t.c.kind, t.c.reason, t.c.rejected_at).order_by(t.c.id)):
        k = _key(path, sha, kind, reason)
        if k in first:
            keep, n, latest = first[k]
            first[k] = (keep, n + 1, max(latest, at) if latest is not None and at is not None else (at or latest))
            drop.append(rid)
        else:
            first[k] = (rid, 1, at)
    for k, (rid, n, latest) in first.items():
        conn.execute(t.update().where(t.c.id == rid).values(rejection_key=k, attempts=n, rejected_at=latest))
    for i in range(0, len(drop), 500):
        conn.execute(t.delete().where(t.c.id.in_(drop[i:i + 500])))
    with op.batch_alter_table("ingest_rejections", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_ingest_rejections_rejection_key", ["rejection_key"])


def downgrade() -> None:
    with op.batch_alter_table("ingest_rejections", schema=None) as batch_op:
        batch_op.drop_constraint("uq_ingest_rejections_rejection_key", type_="unique")
        batch_op.drop_column("attempts")
        batch_op.drop_column("rejection_key")
