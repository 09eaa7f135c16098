"""The position of an exposure's row in its association pool.

- exposures.pool_row: 0-based index of the row among the data rows of the pool file named
  by exposures.pool_name (set by ``archive ingest --pool``; NULL for exposures that no pool
  described). The association generator's output depends on the order of the pool's rows
  (member order, candidate order), so ``archive associate`` rebuilds each pool in this
  order, as ``asn_generate`` reads the file.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("exposures", sa.Column("pool_row", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("exposures", "pool_row")
