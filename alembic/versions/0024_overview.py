"""the console overview: opened links and campaign visits (the funnel), operator time zone, plan names in Chinese

- ``claim_links.opened_at``: when the page behind a personal claim link was first viewed;
- ``campaign_visits``: one row per visitor of a campaign's public page (a keyed digest, unique per campaign);
- ``grants`` get an index on ``(tenant_id, created_at)`` for the overview's per-day counts;
- ``operators.timezone`` (default Asia/Shanghai): the operator console shows times in it;
- ``plans.name_zh``: the plan's display name in Chinese (``name`` is the English one); the built-in plans get
  入门版 and 成长版.

Revision ID: 0024_overview
Revises: 0023_campaign_short_links
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0024_overview"
down_revision = "0023_campaign_short_links"
branch_labels = None
depends_on = None

BUILT_IN_NAMES = {"starter": "入门版", "growth": "成长版"}


def upgrade() -> None:
    with op.batch_alter_table("claim_links") as batch:
        batch.add_column(sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "campaign_visits",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("visitor", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"),
                  nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "campaign_id"], ["campaigns.tenant_id", "campaigns.id"],
                                name=op.f("fk_campaign_visits_tenant_id_campaign_id_campaigns")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_campaign_visits_tenant_id_tenants"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_campaign_visits")),
        sa.UniqueConstraint("tenant_id", "campaign_id", "visitor",
                            name=op.f("uq_campaign_visits_tenant_id_campaign_id_visitor")),
    )
    op.create_index("ix_grants_created", "grants", ["tenant_id", "created_at"])
    with op.batch_alter_table("operators") as batch:
        batch.add_column(sa.Column("timezone", sa.String(length=64), nullable=False,
                                   server_default="Asia/Shanghai"))
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("name_zh", sa.String(length=120), nullable=True))
    plans = sa.table("plans", sa.column("code", sa.String), sa.column("name_zh", sa.String))
    for code, name in BUILT_IN_NAMES.items():
        op.execute(plans.update().where(plans.c.code == code).values(name_zh=name))


def downgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("name_zh")
    with op.batch_alter_table("operators") as batch:
        batch.drop_column("timezone")
    op.drop_index("ix_grants_created", table_name="grants")
    op.drop_table("campaign_visits")
    with op.batch_alter_table("claim_links") as batch:
        batch.drop_column("opened_at")
