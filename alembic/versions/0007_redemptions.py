"""redemptions, code accounts, stored-value ledger, redemption settings

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _created_at() -> sa.Column:
    return sa.Column(
        "created_at",
        sa.DateTime(timezone=True),
        server_default=sa.text("(CURRENT_TIMESTAMP)"),
        nullable=False,
    )


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], name=op.f(f"fk_{table}_tenant_id_tenants"), ondelete="RESTRICT"
    )


def _code_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "code_id"],
        ["codes.tenant_id", "codes.id"],
        name=op.f(f"fk_{table}_tenant_id_code_id_codes"),
    )


def upgrade() -> None:
    op.create_table(
        "redemptions",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("code_last4", sa.String(length=4), nullable=False),
        sa.Column("grant_item_id", sa.Uuid(), nullable=True),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("terminal", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=120), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=True),
        sa.Column("use_number", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("client_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("rolled_back_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rollback_reason", sa.String(length=500), nullable=True),
        _created_at(),
        _code_fk("redemptions"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "grant_item_id"],
            ["grant_items.tenant_id", "grant_items.id"],
            name=op.f("fk_redemptions_tenant_id_grant_item_id_grant_items"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name=op.f("fk_redemptions_tenant_id_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "product_id"],
            ["products.tenant_id", "products.id"],
            name=op.f("fk_redemptions_tenant_id_product_id_products"),
        ),
        _tenant_fk("redemptions"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_redemptions")),
    )
    with op.batch_alter_table("redemptions", schema=None) as batch_op:
        batch_op.create_index("ix_redemptions_code", ["tenant_id", "code_id", "status"], unique=False)
        batch_op.create_index("ix_redemptions_store", ["tenant_id", "store", "id"], unique=False)
        batch_op.create_index("ix_redemptions_last4", ["tenant_id", "code_last4", "id"], unique=False)
        batch_op.create_index("ix_redemptions_created", ["tenant_id", "created_at"], unique=False)

    op.create_table(
        "code_accounts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code_id", sa.Uuid(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=True),
        sa.Column("initial_balance", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "balance IS NULL OR balance >= 0", name=op.f("ck_code_accounts_balance_not_negative")
        ),
        sa.CheckConstraint("uses >= 0", name=op.f("ck_code_accounts_uses_not_negative")),
        _code_fk("code_accounts"),
        _tenant_fk("code_accounts"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_code_accounts")),
        sa.UniqueConstraint("tenant_id", "code_id", name=op.f("uq_code_accounts_tenant_id_code_id")),
    )

    op.create_table(
        "stored_value_entries",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code_id", sa.Uuid(), nullable=False),
        sa.Column("redemption_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "balance_after >= 0", name=op.f("ck_stored_value_entries_balance_after_not_negative")
        ),
        _code_fk("stored_value_entries"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "redemption_id"],
            ["redemptions.tenant_id", "redemptions.id"],
            name=op.f("fk_stored_value_entries_tenant_id_redemption_id_redemptions"),
        ),
        _tenant_fk("stored_value_entries"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_stored_value_entries")),
    )
    with op.batch_alter_table("stored_value_entries", schema=None) as batch_op:
        batch_op.create_index("ix_stored_value_entries_code", ["tenant_id", "code_id", "id"], unique=False)

    op.create_table(
        "redemption_settings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("rollback_window_minutes", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _created_at(),
        _tenant_fk("redemption_settings"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_redemption_settings")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_redemption_settings_tenant_id")),
    )


def downgrade() -> None:
    op.drop_table("redemption_settings")
    with op.batch_alter_table("stored_value_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_stored_value_entries_code")
    op.drop_table("stored_value_entries")
    op.drop_table("code_accounts")
    with op.batch_alter_table("redemptions", schema=None) as batch_op:
        batch_op.drop_index("ix_redemptions_created")
        batch_op.drop_index("ix_redemptions_last4")
        batch_op.drop_index("ix_redemptions_store")
        batch_op.drop_index("ix_redemptions_code")
    op.drop_table("redemptions")
