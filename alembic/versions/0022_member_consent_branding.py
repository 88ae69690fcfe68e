"""privacy consents of members, and the tenant's branding (H5 name and logo, SMS signature and texts)

``member_consents``: one row per consent given before a phone number was collected (claim, campaign,
login, transfer), with the policy version, the source page, the phone (digest and mask) and its time.
``tenant_branding``: one row per tenant. Both are tenant tables: composite keys, row-level security
(applied after every upgrade by ``core.db.rls.secure_postgres``).

Revision ID: 0022_member_consent_branding
Revises: 0021_outbox_tenant_index
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0022_member_consent_branding"
down_revision = "0021_outbox_tenant_index"
branch_labels = None
depends_on = None


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "member_consents",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("phone_digest", sa.String(length=64), nullable=False),
        sa.Column("phone_masked", sa.String(length=20), nullable=False),
        sa.Column("policy_version", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name=op.f("fk_member_consents_tenant_id_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_member_consents_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_member_consents")),
    )
    op.create_index(
        "ix_member_consents_phone", "member_consents", ["tenant_id", "phone_digest", "consented_at"], unique=False
    )
    op.create_table(
        "tenant_branding",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("display_name", sa.String(length=40), nullable=False),
        sa.Column("logo", sa.LargeBinary(), nullable=True),
        sa.Column("logo_type", sa.String(length=20), nullable=True),
        sa.Column("logo_digest", sa.String(length=64), nullable=True),
        sa.Column("sms_signature", sa.String(length=20), nullable=False),
        sa.Column("sms_templates", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tenant_branding_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_tenant_branding")),
        sa.UniqueConstraint("tenant_id", name="uq_tenant_branding_tenant_id"),
    )


def downgrade() -> None:
    op.drop_table("tenant_branding")
    op.drop_index("ix_member_consents_phone", table_name="member_consents")
    op.drop_table("member_consents")
