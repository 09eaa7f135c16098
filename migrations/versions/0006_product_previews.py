"""PNG previews of products, and an index for browsing exposures by date.

- product_previews: one row per PNG drawn from a product (kind ``preview`` or
  ``thumbnail``): path, sha256, size, pixel width and height. Written by the worker with
  the product, and by ``archive previews`` for products made before.
- ix_exposures_expstart: the web view filters exposures by a date range (EXPSTART).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "product_previews",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("product_id", sa.Integer(), sa.ForeignKey("products.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("product_id", "kind"),
    )
    op.create_index("ix_product_previews_product_id", "product_previews", ["product_id"])
    op.create_index("ix_exposures_expstart", "exposures", ["expstart"])


def downgrade() -> None:
    op.drop_index("ix_exposures_expstart", table_name="exposures")
    op.drop_index("ix_product_previews_product_id", table_name="product_previews")
    op.drop_table("product_previews")
