"""claim links, one-time codes, campaigns

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22 23:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _common() -> list[sa.Column]:
    return [sa.Column("tenant_id", sa.Uuid(), nullable=False), sa.Column("id", sa.Uuid(), nullable=False)]


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


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", column],
        [f"{target}.tenant_id", f"{target}.id"],
        name=op.f(f"fk_{table}_tenant_id_{column}_{target}"),
    )


def upgrade() -> None:
    op.create_table(
        "claim_links",
        *_common(),
        sa.Column("grant_id", sa.Uuid(), nullable=False),
        sa.Column("item_id", sa.Uuid(), nullable=True),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("phone_digest", sa.String(length=64), nullable=True),
        sa.Column("phone_masked", sa.String(length=20), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("client_id", sa.Uuid(), nullable=True),
        _created_at(),
        _fk("claim_links", "grant_id", "grants"),
        _fk("claim_links", "item_id", "grant_items"),
        _fk("claim_links", "member_id", "members"),
        _tenant_fk("claim_links"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_claim_links")),
    )
    with op.batch_alter_table("claim_links", schema=None) as batch_op:
        batch_op.create_index("ix_claim_links_grant", ["tenant_id", "grant_id"], unique=False)

    op.create_table(
        "otp_challenges",
        *_common(),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("phone_digest", sa.String(length=64), nullable=False),
        sa.Column("phone_secret", sa.LargeBinary(), nullable=False),
        sa.Column("code_digest", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("send_count", sa.Integer(), nullable=False),
        _created_at(),
        _tenant_fk("otp_challenges"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_otp_challenges")),
        sa.UniqueConstraint(
            "tenant_id", "purpose", "subject", name=op.f("uq_otp_challenges_tenant_id_purpose_subject")
        ),
    )

    op.create_table(
        "campaigns",
        *_common(),
        sa.Column("ref", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("per_member_limit", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        _created_at(),
        _fk("campaigns", "product_id", "products"),
        _tenant_fk("campaigns"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("tenant_id", "ref", name=op.f("uq_campaigns_tenant_id_ref")),
    )

    op.create_table(
        "campaign_claims",
        *_common(),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.Uuid(), nullable=True),
        _created_at(),
        _fk("campaign_claims", "campaign_id", "campaigns"),
        _fk("campaign_claims", "grant_id", "grants"),
        _fk("campaign_claims", "member_id", "members"),
        _tenant_fk("campaign_claims"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_campaign_claims")),
        sa.UniqueConstraint(
            "tenant_id",
            "campaign_id",
            "member_id",
            "ordinal",
            name=op.f("uq_campaign_claims_tenant_id_campaign_id_member_id_ordinal"),
        ),
    )


def downgrade() -> None:
    op.drop_table("campaign_claims")
    op.drop_table("campaigns")
    op.drop_table("otp_challenges")
    with op.batch_alter_table("claim_links", schema=None) as batch_op:
        batch_op.drop_index("ix_claim_links_grant")
    op.drop_table("claim_links")
