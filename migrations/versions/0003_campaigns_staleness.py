"""Reprocessing campaigns: stale products, per-exposure changes, enqueue bookkeeping and
product comparisons.

- campaigns: kind (context | software | manual), from_context_id, cal_version, status,
  closed_at, summary.
- products.stale_campaign_id: set when a campaign makes the product stale (NULL: fresh).
- jobs.retryable: whether a failed job's fault was transient (retried) or permanent.
- jobs.enqueued_at, jobs.broker_epoch: when the job was last handed to the broker and the
  broker's identity then (Redis run_id), so the planner can re-send work a restarted
  broker lost without flooding a healthy queue with duplicates.
- campaign_exposures: for each exposure a campaign remakes, which reftypes changed (old and
  new file) and the first pipeline step that reads one.
- product_comparisons: a new product against the one it supersedes, per extension.
- exposures.header becomes JSONB on PostgreSQL (extracting a few keywords from many
  headers no longer re-parses each one); SQLite keeps JSON text.

Columns added to existing tables carry no foreign-key constraint, because SQLite cannot
add one without rebuilding the table (which the provenance views depend on); the new
tables have theirs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE exposures ALTER COLUMN header TYPE jsonb USING header::jsonb")
    op.add_column("campaigns", sa.Column("kind", sa.String(16), nullable=False, server_default="manual"))
    op.add_column("campaigns", sa.Column("from_context_id", sa.Integer(), nullable=True))
    op.add_column("campaigns", sa.Column("cal_version", sa.String(32), nullable=True))
    op.add_column("campaigns", sa.Column("status", sa.String(16), nullable=False, server_default="open"))
    op.add_column("campaigns", sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("campaigns", sa.Column("summary", sa.JSON(), nullable=True))

    op.add_column("products", sa.Column("stale_campaign_id", sa.Integer(), nullable=True))
    op.create_index("ix_products_stale_campaign_id", "products", ["stale_campaign_id"])

    op.add_column("jobs", sa.Column("retryable", sa.Boolean(), nullable=True))
    op.add_column("jobs", sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("broker_epoch", sa.String(64), nullable=True))
    op.create_index("ix_jobs_campaign_id", "jobs", ["campaign_id"])

    op.create_table(
        "campaign_exposures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("exposure_id", sa.Integer(), sa.ForeignKey("exposures.id", ondelete="CASCADE"), nullable=False),
        sa.Column("product_id", sa.Integer(), sa.ForeignKey("products.id"), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("first_step", sa.String(32), nullable=True),
        sa.UniqueConstraint("campaign_id", "exposure_id"),
    )
    op.create_index("ix_campaign_exposures_campaign_id", "campaign_exposures", ["campaign_id"])
    op.create_index("ix_campaign_exposures_exposure_id", "campaign_exposures", ["exposure_id"])

    op.create_table(
        "product_comparisons",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("product_id", sa.Integer(), sa.ForeignKey("products.id", ondelete="CASCADE"), nullable=False),
        sa.Column("previous_product_id", sa.Integer(), sa.ForeignKey("products.id"), nullable=False),
        sa.Column("extension", sa.String(16), nullable=False),
        sa.Column("n_pixels", sa.BigInteger(), nullable=False),
        sa.Column("frac_changed", sa.Float(), nullable=False),
        sa.Column("median_dev_over_err", sa.Float(), nullable=True),
        sa.Column("p99_dev_over_err", sa.Float(), nullable=True),
        sa.Column("dq_gained", sa.JSON(), nullable=True),
        sa.Column("dq_lost", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("product_id", "extension"),
    )
    op.create_index("ix_product_comparisons_product_id", "product_comparisons", ["product_id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE exposures ALTER COLUMN header TYPE json USING header::json")
    op.drop_index("ix_product_comparisons_product_id", "product_comparisons")
    op.drop_table("product_comparisons")
    op.drop_index("ix_campaign_exposures_exposure_id", "campaign_exposures")
    op.drop_index("ix_campaign_exposures_campaign_id", "campaign_exposures")
    op.drop_table("campaign_exposures")
    op.drop_index("ix_jobs_campaign_id", "jobs")
    with op.batch_alter_table("jobs") as b:
        b.drop_column("broker_epoch")
        b.drop_column("enqueued_at")
        b.drop_column("retryable")
    op.drop_index("ix_products_stale_campaign_id", "products")
    with op.batch_alter_table("products") as b:
        b.drop_column("stale_campaign_id")
    with op.batch_alter_table("campaigns") as b:
        for col in ("summary", "closed_at", "status", "cal_version", "from_context_id", "kind"):
            b.drop_column(col)
