"""risk control: rules, blocklists, counters, failures, lockouts, flags, refusals

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLES = (
    "risk_rules",
    "risk_refusals",
    "risk_policies",
    "risk_lockouts",
    "risk_flags",
    "risk_failures",
    "risk_device_members",
    "risk_counters",
    "risk_blocklist",
)


def upgrade() -> None:
    op.create_table(
        "risk_blocklist",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("display", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_risk_blocklist_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_risk_blocklist")),
        sa.UniqueConstraint(
            "tenant_id", "kind", "value", name=op.f("uq_risk_blocklist_tenant_id_kind_value")
        ),
    )
    with op.batch_alter_table("risk_blocklist", schema=None) as batch_op:
        batch_op.create_index("ix_risk_blocklist_created", ["tenant_id", "created_at"], unique=False)

    op.create_table(
        "risk_counters",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_risk_counters_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_risk_counters")),
        sa.UniqueConstraint("tenant_id", "key", name=op.f("uq_risk_counters_tenant_id_key")),
    )
    with op.batch_alter_table("risk_counters", schema=None) as batch_op:
        batch_op.create_index("ix_risk_counters_expires", ["tenant_id", "expires_at"], unique=False)

    op.create_table(
        "risk_device_members",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("device_key", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_risk_device_members_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_risk_device_members")),
        sa.UniqueConstraint(
            "tenant_id",
            "day",
            "device_key",
            "member_id",
            name=op.f("uq_risk_device_members_tenant_id_day_device_key_member_id"),
        ),
    )
    op.create_table(
        "risk_failures",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("dimension", sa.String(length=20), nullable=False),
        sa.Column("subject_key", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_risk_failures_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_risk_failures")),
    )
    with op.batch_alter_table("risk_failures", schema=None) as batch_op:
        batch_op.create_index(
            "ix_risk_failures_subject", ["tenant_id", "dimension", "subject_key", "occurred_at"], unique=False
        )

    op.create_table(
        "risk_flags",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("subject_key", sa.String(length=64), nullable=False),
        sa.Column("subject_masked", sa.String(length=64), nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_risk_flags_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_risk_flags")),
        sa.UniqueConstraint(
            "tenant_id",
            "kind",
            "day",
            "subject_key",
            name=op.f("uq_risk_flags_tenant_id_kind_day_subject_key"),
        ),
    )
    with op.batch_alter_table("risk_flags", schema=None) as batch_op:
        batch_op.create_index("ix_risk_flags_created", ["tenant_id", "created_at"], unique=False)

    op.create_table(
        "risk_lockouts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("dimension", sa.String(length=20), nullable=False),
        sa.Column("subject_key", sa.String(length=64), nullable=False),
        sa.Column("subject_masked", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=120), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_risk_lockouts_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_risk_lockouts")),
    )
    with op.batch_alter_table("risk_lockouts", schema=None) as batch_op:
        batch_op.create_index("ix_risk_lockouts_created", ["tenant_id", "created_at"], unique=False)
        batch_op.create_index(
            "ix_risk_lockouts_subject",
            ["tenant_id", "dimension", "subject_key", "locked_until"],
            unique=False,
        )

    op.create_table(
        "risk_policies",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("failure_limit", sa.Integer(), nullable=False),
        sa.Column("failure_window_minutes", sa.Integer(), nullable=False),
        sa.Column("lockout_minutes", sa.Integer(), nullable=False),
        sa.Column("device_member_limit", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_risk_policies_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_risk_policies")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_risk_policies_tenant_id")),
    )
    op.create_table(
        "risk_refusals",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("dimension", sa.String(length=20), nullable=True),
        sa.Column("subject_masked", sa.String(length=64), nullable=True),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("client_id", sa.Uuid(), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("max_units", sa.Integer(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_risk_refusals_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_risk_refusals")),
    )
    with op.batch_alter_table("risk_refusals", schema=None) as batch_op:
        batch_op.create_index("ix_risk_refusals_created", ["tenant_id", "occurred_at"], unique=False)

    op.create_table(
        "risk_rules",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("dimension", sa.String(length=20), nullable=False),
        sa.Column("per_window", sa.String(length=10), nullable=False),
        sa.Column("max_units", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_risk_rules_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_risk_rules")),
        sa.UniqueConstraint(
            "tenant_id",
            "action",
            "dimension",
            "per_window",
            name=op.f("uq_risk_rules_tenant_id_action_dimension_per_window"),
        ),
    )


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
