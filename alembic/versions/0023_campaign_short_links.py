"""campaign short links: ``/c/<code>`` (a platform-unique code reserved in short_codes, kept on the campaign)

Existing campaigns get a code at upgrade time (6 random Crockford base32 characters).

Revision ID: 0023_campaign_short_links
Revises: 0022_member_consent_branding
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from alembic import op

revision = "0023_campaign_short_links"
down_revision = "0022_member_consent_branding"
branch_labels = None
depends_on = None

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32, as core.campaigns.shortlinks
_campaigns = sa.table(
    "campaigns",
    sa.column("tenant_id", sa.Uuid()),
    sa.column("id", sa.Uuid()),
    sa.column("short_code", sa.String),
)
_short_codes = sa.table("short_codes", sa.column("code", sa.String))


def _bypass_rls(on: bool) -> None:
    """Tenant tables FORCE row-level security, the owner included: the backfill spans every tenant."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"SELECT set_config('app.bypass_rls', '{'on' if on else 'off'}', true)")


def _backfill() -> None:
    bind = op.get_bind()
    _bypass_rls(True)
    taken: set[str] = set()
    rows = bind.execute(sa.select(_campaigns.c.tenant_id, _campaigns.c.id)).all()
    for tenant_id, campaign_id in rows:
        code = ""
        while not code or code in taken:
            code = "".join(secrets.choice(_ALPHABET) for _ in range(6))
        taken.add(code)
        bind.execute(sa.insert(_short_codes).values(code=code))
        bind.execute(
            sa.update(_campaigns)
            .where(_campaigns.c.tenant_id == tenant_id, _campaigns.c.id == campaign_id)
            .values(short_code=code)
        )
    _bypass_rls(False)


def upgrade() -> None:
    op.create_table(
        "short_codes",
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_short_codes")),
    )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("short_code", sa.String(length=8), nullable=True))
        batch_op.create_unique_constraint(
            op.f("uq_campaigns_tenant_id_short_code"), ["tenant_id", "short_code"]
        )
        batch_op.create_index("ix_campaigns_short_code", ["short_code"], unique=False)
    _backfill()


def downgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index("ix_campaigns_short_code")
        batch_op.drop_constraint(op.f("uq_campaigns_tenant_id_short_code"), type_="unique")
        batch_op.drop_column("short_code")
    op.drop_table("short_codes")
