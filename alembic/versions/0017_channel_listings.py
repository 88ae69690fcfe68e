"""listings of products on channel accounts, and their price history

Revision ID: 0017_channel_listings
Revises: 0016_connector_accounts
Create Date: 2026-12-06 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0017_channel_listings"
down_revision = "0016_connector_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "listings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("price_rule", sa.JSON(), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("quota_kind", sa.String(length=10), nullable=False),
        sa.Column("quota_value", sa.Integer(), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.Column("sold", sa.Integer(), nullable=False),
        sa.Column("low_watermark_bp", sa.Integer(), nullable=False),
        sa.Column("split_rule", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("pushed_version", sa.Integer(), nullable=False),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("push_error", sa.String(length=500), nullable=False),
        sa.Column("push_attempts", sa.Integer(), nullable=False),
        sa.Column("channel_available", sa.Integer(), nullable=True),
        sa.Column("drift_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("low_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint("quota_kind IN ('fixed', 'share')", name=op.f("ck_listings_quota_kind_known")),
        sa.CheckConstraint("status IN ('active', 'paused')", name=op.f("ck_listings_status_known")),
        sa.CheckConstraint("price_fen >= 0", name=op.f("ck_listings_price_not_negative")),
        sa.CheckConstraint("quota >= 0", name=op.f("ck_listings_quota_not_negative")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["connector_accounts.tenant_id", "connector_accounts.id"],
            name=op.f("fk_listings_tenant_id_account_id_connector_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "product_id"],
            ["products.tenant_id", "products.id"],
            name=op.f("fk_listings_tenant_id_product_id_products"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_listings_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_listings")),
        sa.UniqueConstraint(
            "tenant_id", "account_id", "sku", name=op.f("uq_listings_tenant_id_account_id_sku")
        ),
    )
    op.create_index("ix_listings_product", "listings", ["tenant_id", "product_id", "status"], unique=False)
    op.create_index(
        "ix_listings_sync", "listings", ["tenant_id", "account_id", "id"], unique=False
    )
    op.create_table(
        "listing_price_changes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column("old_price_fen", sa.Integer(), nullable=True),
        sa.Column("new_price_fen", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "listing_id"],
            ["listings.tenant_id", "listings.id"],
            name=op.f("fk_listing_price_changes_tenant_id_listing_id_listings"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_listing_price_changes_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_listing_price_changes")),
    )
    op.create_index(
        "ix_listing_price_changes_listing",
        "listing_price_changes",
        ["tenant_id", "listing_id", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_listing_price_changes_listing", table_name="listing_price_changes")
    op.drop_table("listing_price_changes")
    op.drop_index("ix_listings_sync", table_name="listings")
    op.drop_index("ix_listings_product", table_name="listings")
    op.drop_table("listings")
