"""Provenance views: products with their job, context and versions; one row per product
and reference file.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PRODUCT_PROVENANCE = """
CREATE VIEW product_provenance AS
SELECT p.id            AS product_id,
       p.filename      AS product,
       p.suffix        AS suffix,
       p.path          AS path,
       p.sha256        AS product_sha256,
       p.is_current    AS is_current,
       p.created_at    AS created_at,
       p.supersedes_id AS supersedes_id,
       e.id            AS exposure_id,
       e.filename      AS exposure,
       e.sha256        AS exposure_sha256,
       e.program       AS program,
       e.instrume      AS instrume,
       e.detector      AS detector,
       e.exp_type      AS exp_type,
       j.id            AS job_id,
       j.pipeline      AS pipeline,
       j.engine        AS engine,
       j.cal_version   AS cal_version,
       j.param_hash    AS param_hash,
       j.worker        AS worker,
       j.started_at    AS started_at,
       j.finished_at   AS finished_at,
       c.name          AS context
FROM products p
JOIN jobs j ON j.id = p.job_id
JOIN crds_contexts c ON c.id = j.context_id
LEFT JOIN exposures e ON e.id = p.exposure_id
"""

PRODUCT_REFERENCE_PROVENANCE = """
CREATE VIEW product_reference_provenance AS
SELECT pp.product_id, pp.product, pp.suffix, pp.is_current, pp.exposure, pp.job_id,
       pp.pipeline, pp.cal_version, pp.context,
       pr.reftype      AS reftype,
       r.name          AS reference,
       r.sha256        AS reference_sha256
FROM product_provenance pp
JOIN product_references pr ON pr.product_id = pp.product_id
JOIN reference_files r ON r.id = pr.reference_file_id
"""


def upgrade() -> None:
    op.execute(PRODUCT_PROVENANCE)
    op.execute(PRODUCT_REFERENCE_PROVENANCE)


def downgrade() -> None:
    op.execute("DROP VIEW product_reference_provenance")
    op.execute("DROP VIEW product_provenance")
