"""grant delivery attempts (send state per grant) and jobs.progressed_at

Revision ID: 0014_faults_delivery
Revises: 0013_imports_code_rules
Create Date: 2026-12-06 06:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0014_faults_delivery"
down_revision = "0013_imports_code_rules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grant_deliveries",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("grant_id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_grant_deliveries_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "grant_id"],
            ["grants.tenant_id", "grants.id"],
            name=op.f("fk_grant_deliveries_tenant_id_grant_id_grants"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_grant_deliveries")),
        sa.UniqueConstraint("tenant_id", "grant_id", name=op.f("uq_grant_deliveries_tenant_id_grant_id")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progressed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("progressed_at")
    op.drop_table("grant_deliveries")
