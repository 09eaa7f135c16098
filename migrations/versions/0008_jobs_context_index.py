"""An index on jobs.context_id.

The web view's contexts page and `archive status` count jobs per context; without an index
that is a scan of every job (the contexts page took 369 ms p95 on SQLite with 100,000
exposures, benchmarks/web_pages.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_context_id"), ["context_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_context_id"))
