"""channel orders, lines, codes, refunds and the inbox of channel messages

Revision ID: 0018_channel_orders
Revises: 0017_channel_listings
Create Date: 2026-12-06 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0018_channel_orders"
down_revision = "0017_channel_listings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_messages",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=30), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'failed')", name=op.f("ck_channel_messages_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["connector_accounts.tenant_id", "connector_accounts.id"],
            name=op.f("fk_channel_messages_tenant_id_account_id_connector_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_channel_messages_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_channel_messages")),
        sa.UniqueConstraint(
            "tenant_id",
            "account_id",
            "message_id",
            name=op.f("uq_channel_messages_tenant_id_account_id_message_id"),
        ),
    )
    op.create_index(
        "ix_channel_messages_status", "channel_messages", ["tenant_id", "status", "id"], unique=False
    )
    op.create_table(
        "channel_orders",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("channel_order_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deliver_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total_fen", sa.Integer(), nullable=False),
        sa.Column("buyer_id", sa.String(length=100), nullable=False),
        sa.Column("buyer_phone_masked", sa.String(length=20), nullable=False),
        sa.Column("buyer_phone_digest", sa.String(length=64), nullable=True),
        sa.Column("buyer_ip", sa.String(length=64), nullable=False),
        sa.Column("referrer", sa.String(length=100), nullable=False),
        sa.Column("kol", sa.String(length=100), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("refusal", sa.String(length=60), nullable=False),
        sa.Column("fulfilled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('received', 'fulfilled', 'failed', 'refused', 'partially_refunded', 'refunded', 'cancelled')",
            name=op.f("ck_channel_orders_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["connector_accounts.tenant_id", "connector_accounts.id"],
            name=op.f("fk_channel_orders_tenant_id_account_id_connector_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_channel_orders_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_channel_orders")),
        sa.UniqueConstraint(
            "tenant_id",
            "account_id",
            "channel_order_id",
            name=op.f("uq_channel_orders_tenant_id_account_id_channel_order_id"),
        ),
    )
    op.create_index(
        "ix_channel_orders_account", "channel_orders", ["tenant_id", "account_id", "placed_at"], unique=False
    )
    op.create_index(
        "ix_channel_orders_due", "channel_orders", ["tenant_id", "status", "next_attempt_at"], unique=False
    )
    op.create_index("ix_channel_orders_status", "channel_orders", ["tenant_id", "status", "id"], unique=False)
    op.create_table(
        "channel_order_lines",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("channel_line_id", sa.String(length=100), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("listing_id", sa.Uuid(), nullable=True),
        sa.Column("product_id", sa.Uuid(), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_fen", sa.Integer(), nullable=False),
        sa.Column("gross_fen", sa.Integer(), nullable=False),
        sa.Column("cost_fen", sa.Integer(), nullable=False),
        sa.Column("split_rule", sa.JSON(), nullable=False),
        sa.Column("refunded_quantity", sa.Integer(), nullable=False),
        sa.Column("refunded_fen", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivery_ref", sa.String(length=100), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_channel_order_lines_quantity_positive")),
        sa.CheckConstraint(
            "refunded_quantity >= 0 AND refunded_quantity <= quantity",
            name=op.f("ck_channel_order_lines_refunded_in_range"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["connector_accounts.tenant_id", "connector_accounts.id"],
            name=op.f("fk_channel_order_lines_tenant_id_account_id_connector_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "listing_id"],
            ["listings.tenant_id", "listings.id"],
            name=op.f("fk_channel_order_lines_tenant_id_listing_id_listings"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "order_id"],
            ["channel_orders.tenant_id", "channel_orders.id"],
            name=op.f("fk_channel_order_lines_tenant_id_order_id_channel_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "product_id"],
            ["products.tenant_id", "products.id"],
            name=op.f("fk_channel_order_lines_tenant_id_product_id_products"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_channel_order_lines_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_channel_order_lines")),
        sa.UniqueConstraint(
            "tenant_id",
            "order_id",
            "channel_line_id",
            name=op.f("uq_channel_order_lines_tenant_id_order_id_channel_line_id"),
        ),
    )
    op.create_index(
        "ix_channel_order_lines_listing",
        "channel_order_lines",
        ["tenant_id", "listing_id", "id"],
        unique=False,
    )
    op.create_table(
        "channel_order_codes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("line_id", sa.Uuid(), nullable=False),
        sa.Column("code_id", sa.Uuid(), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("unit_cost_fen", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("revealed", sa.Boolean(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redeemed_via", sa.String(length=10), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('issued', 'delivered', 'redeemed', 'returned', 'voided')",
            name=op.f("ck_channel_order_codes_state_known"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "batch_id"],
            ["batches.tenant_id", "batches.id"],
            name=op.f("fk_channel_order_codes_tenant_id_batch_id_batches"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "code_id"],
            ["codes.tenant_id", "codes.id"],
            name=op.f("fk_channel_order_codes_tenant_id_code_id_codes"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "line_id"],
            ["channel_order_lines.tenant_id", "channel_order_lines.id"],
            name=op.f("fk_channel_order_codes_tenant_id_line_id_channel_order_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_channel_order_codes_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_channel_order_codes")),
    )
    op.create_index(
        "ix_channel_order_codes_code", "channel_order_codes", ["tenant_id", "code_id"], unique=False
    )
    op.create_index(
        "ix_channel_order_codes_line", "channel_order_codes", ["tenant_id", "line_id"], unique=False
    )
    op.create_table(
        "channel_refunds",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("line_id", sa.Uuid(), nullable=False),
        sa.Column("refund_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("returned", sa.Integer(), nullable=False),
        sa.Column("voided", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["connector_accounts.tenant_id", "connector_accounts.id"],
            name=op.f("fk_channel_refunds_tenant_id_account_id_connector_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "line_id"],
            ["channel_order_lines.tenant_id", "channel_order_lines.id"],
            name=op.f("fk_channel_refunds_tenant_id_line_id_channel_order_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_channel_refunds_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_channel_refunds")),
        sa.UniqueConstraint(
            "tenant_id",
            "account_id",
            "refund_id",
            name=op.f("uq_channel_refunds_tenant_id_account_id_refund_id"),
        ),
    )
    op.create_index("ix_channel_refunds_line", "channel_refunds", ["tenant_id", "line_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_channel_refunds_line", table_name="channel_refunds")
    op.drop_table("channel_refunds")
    op.drop_index("ix_channel_order_codes_line", table_name="channel_order_codes")
    op.drop_index("ix_channel_order_codes_code", table_name="channel_order_codes")
    op.drop_table("channel_order_codes")
    op.drop_index("ix_channel_order_lines_listing", table_name="channel_order_lines")
    op.drop_table("channel_order_lines")
    op.drop_index("ix_channel_orders_status", table_name="channel_orders")
    op.drop_index("ix_channel_orders_due", table_name="channel_orders")
    op.drop_index("ix_channel_orders_account", table_name="channel_orders")
    op.drop_table("channel_orders")
    op.drop_index("ix_channel_messages_status", table_name="channel_messages")
    op.drop_table("channel_messages")
