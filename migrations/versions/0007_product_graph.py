"""The product graph: stage-2/3 jobs from associations and their inputs.

- products.association_id: the association whose job made the product (stage 2: the
  Level-2 association, stage 3: the Level-3 one; NULL for stage 1). A stage-3 product of
  the whole association (i2d, cat, segm) has no exposure; a per-member one (crf) and a
  stage-2 product (cal, i2d) keep their exposure.
- job_inputs.product_id: the catalogued product a stage-2/3 job read (a member's rate or
  cal), with its sha256 in job_inputs.sha256; NULL for a raw exposure (stage 1). A
  downstream product whose input product is no longer current is owed a remake.
- view product_lineage (a recursive CTE, SQLite and PostgreSQL): one row per product and
  everything behind it, at any depth: input_product_id (a product of an earlier stage;
  NULL where the job read a raw exposure) and exposure_id (the member exposure), depth 1
  for the job's own inputs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


PRODUCT_LINEAGE = """
CREATE VIEW product_lineage AS
WITH RECURSIVE lineage(product_id, input_product_id, exposure_id, depth) AS (
    SELECT p.id, ji.product_id, ji.exposure_id, 1
    FROM products p JOIN job_inputs ji ON ji.job_id = p.job_id
    UNION ALL
    SELECT l.product_id, ji.product_id, ji.exposure_id, l.depth + 1
    FROM lineage l
    JOIN products q ON q.id = l.input_product_id
    JOIN job_inputs ji ON ji.job_id = q.job_id
)
SELECT product_id, input_product_id, exposure_id, depth FROM lineage
"""


def _add_fk_column(table: str, column: str, target: str, name: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # plain ADD COLUMN ... REFERENCES (no table rebuild: the provenance views refer to it)
        op.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER REFERENCES {target}(id)")
    else:
        op.add_column(table, sa.Column(column, sa.Integer(), nullable=True))
        op.create_foreign_key(name, table, target, [column], ["id"])


def upgrade() -> None:
    _add_fk_column("products", "association_id", "associations", "fk_products_association_id")
    op.create_index("ix_products_association_id", "products", ["association_id"])
    _add_fk_column("job_inputs", "product_id", "products", "fk_job_inputs_product_id")
    op.create_index("ix_job_inputs_product_id", "job_inputs", ["product_id"])
    op.create_index("ix_jobs_association_id", "jobs", ["association_id"])
    op.execute(PRODUCT_LINEAGE)


def downgrade() -> None:
    op.execute("DROP VIEW product_lineage")
    op.drop_index("ix_jobs_association_id", "jobs")
    op.drop_index("ix_job_inputs_product_id", "job_inputs")
    op.drop_index("ix_products_association_id", "products")
    # SQLite rebuilds the tables (copy, drop, rename); the provenance views of 0002 name
    # products, and a rename checks every view unless the legacy rule is on: the views are
    # valid again once the rebuilt table has the old name
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("PRAGMA legacy_alter_table = ON")
    with op.batch_alter_table("job_inputs") as b:
        b.drop_column("product_id")
    with op.batch_alter_table("products") as b:
        b.drop_column("association_id")
    if sqlite:
        op.execute("PRAGMA legacy_alter_table = OFF")
