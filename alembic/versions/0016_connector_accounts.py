"""connector accounts (every kind) and the platform route from a public callback to its tenant

Revision ID: 0016_connector_accounts
Revises: 0015_domain_grant_status
Create Date: 2026-12-06 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0016_connector_accounts"
down_revision = "0015_domain_grant_status"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connector_accounts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("connector_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.String(length=500), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secrets", sa.LargeBinary(), nullable=True),
        sa.Column("secret_names", sa.JSON(), nullable=False),
        sa.Column("oauth_tokens", sa.LargeBinary(), nullable=True),
        sa.Column("oauth_state", sa.String(length=128), nullable=True),
        sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("authorised_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_ok_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("order_cursor", sa.String(length=500), nullable=False),
        sa.Column("orders_polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('active', 'paused', 'disconnected')", name=op.f("ck_connector_accounts_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_connector_accounts_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_connector_accounts")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_connector_accounts_tenant_id_name")),
    )
    op.create_index(
        "ix_connector_accounts_connector",
        "connector_accounts",
        ["tenant_id", "connector_id", "status"],
        unique=False,
    )
    op.create_table(
        "connector_account_routes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_connector_account_routes_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["connector_accounts.tenant_id", "connector_accounts.id"],
            name=op.f("fk_connector_account_routes_tenant_id_connector_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "account_id", name=op.f("pk_connector_account_routes")),
    )
    op.create_index("ix_connector_account_routes_account", "connector_account_routes", ["account_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_connector_account_routes_account", table_name="connector_account_routes")
    op.drop_table("connector_account_routes")
    op.drop_index("ix_connector_accounts_connector", table_name="connector_accounts")
    op.drop_table("connector_accounts")
