"""bulk grants and expiry-reminder settings

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22 22:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0011"
down_revision = "0010"
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


def upgrade() -> None:
    op.create_table(
        "bulk_grants",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("campaign_ref", sa.String(length=120), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=True),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("file_format", sa.String(length=20), nullable=False),
        sa.Column("encoding", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("valid_rows", sa.Integer(), nullable=False),
        sa.Column("already_granted", sa.Integer(), nullable=False),
        sa.Column("granted", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("client_id", sa.Uuid(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        _created_at(),
        _tenant_fk("bulk_grants"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_bulk_grants")),
    )
    with op.batch_alter_table("bulk_grants", schema=None) as batch_op:
        batch_op.create_index("ix_bulk_grants_status", ["tenant_id", "status", "id"], unique=False)

    op.create_table(
        "bulk_grant_rows",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("bulk_grant_id", sa.Uuid(), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("row_key", sa.String(length=64), nullable=True),
        sa.Column("contact_masked", sa.String(length=254), nullable=False),
        sa.Column("contact_secret", sa.LargeBinary(), nullable=True),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("error_code", sa.String(length=60), nullable=True),
        sa.Column("grant_id", sa.Uuid(), nullable=True),
        sa.Column("grant_ref", sa.String(length=20), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["tenant_id", "bulk_grant_id"],
            ["bulk_grants.tenant_id", "bulk_grants.id"],
            name=op.f("fk_bulk_grant_rows_tenant_id_bulk_grant_id_bulk_grants"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "product_id"],
            ["products.tenant_id", "products.id"],
            name=op.f("fk_bulk_grant_rows_tenant_id_product_id_products"),
        ),
        _tenant_fk("bulk_grant_rows"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_bulk_grant_rows")),
        sa.UniqueConstraint(
            "tenant_id",
            "bulk_grant_id",
            "row_number",
            name=op.f("uq_bulk_grant_rows_tenant_id_bulk_grant_id_row_number"),
        ),
    )
    with op.batch_alter_table("bulk_grant_rows", schema=None) as batch_op:
        batch_op.create_index(
            "ix_bulk_grant_rows_status", ["tenant_id", "bulk_grant_id", "status"], unique=False
        )

    op.create_table(
        "bulk_grant_keys",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("row_key", sa.String(length=64), nullable=False),
        sa.Column("bulk_grant_id", sa.Uuid(), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.Uuid(), nullable=True),
        sa.Column("grant_ref", sa.String(length=20), nullable=True),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["tenant_id", "bulk_grant_id"],
            ["bulk_grants.tenant_id", "bulk_grants.id"],
            name=op.f("fk_bulk_grant_keys_tenant_id_bulk_grant_id_bulk_grants"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "grant_id"],
            ["grants.tenant_id", "grants.id"],
            name=op.f("fk_bulk_grant_keys_tenant_id_grant_id_grants"),
        ),
        _tenant_fk("bulk_grant_keys"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_bulk_grant_keys")),
        sa.UniqueConstraint("tenant_id", "row_key", name=op.f("uq_bulk_grant_keys_tenant_id_row_key")),
    )

    op.create_table(
        "reminder_settings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("days_before", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _created_at(),
        _tenant_fk("reminder_settings"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_reminder_settings")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_reminder_settings_tenant_id")),
    )


def downgrade() -> None:
    op.drop_table("reminder_settings")
    op.drop_table("bulk_grant_keys")
    with op.batch_alter_table("bulk_grant_rows", schema=None) as batch_op:
        batch_op.drop_index("ix_bulk_grant_rows_status")
    op.drop_table("bulk_grant_rows")
    with op.batch_alter_table("bulk_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_bulk_grants_status")
    op.drop_table("bulk_grants")
