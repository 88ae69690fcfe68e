"""stores (门店) as records, clerks bound to stores, and redemptions linked to their store

Every distinct store text a tenant's redemptions carry becomes a store record (code ``S001``, ``S002`` … in
order of first use, name the text with its whitespace collapsed), and those redemptions are linked to it;
the text column stays as written.

Revision ID: 0025_stores
Revises: 0024_overview
"""

from __future__ import annotations

import uuid
from collections import defaultdict

import sqlalchemy as sa

from alembic import op

revision = "0025_stores"
down_revision = "0024_overview"
branch_labels = None
depends_on = None


def _bypass_rls(on: bool) -> None:
    """Tenant tables FORCE row-level security, the owner included: the data fix spans every tenant."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"SELECT set_config('app.bypass_rls', '{'on' if on else 'off'}', true)")


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
        "stores",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("province", sa.String(length=40), nullable=False),
        sa.Column("city", sa.String(length=40), nullable=False),
        sa.Column("district", sa.String(length=40), nullable=False),
        sa.Column("address", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=30), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _created_at(),
        _tenant_fk("stores"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_stores")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_stores_tenant_id_code")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_stores_tenant_id_name")),
    )
    op.create_table(
        "store_clerks",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        _created_at(),
        _tenant_fk("store_clerks"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"],
            name=op.f("fk_store_clerks_tenant_id_stores"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "user_id"], ["users.tenant_id", "users.id"],
            name=op.f("fk_store_clerks_tenant_id_users"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_store_clerks")),
        sa.UniqueConstraint("tenant_id", "user_id", "store_id", name=op.f("uq_store_clerks_tenant_id_user_id")),
    )  # fmt: skip
    op.create_index("ix_store_clerks_store", "store_clerks", ["tenant_id", "store_id"], unique=False)
    with op.batch_alter_table("redemptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("store_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_redemptions_tenant_id_stores"), "stores", ["tenant_id", "store_id"], ["tenant_id", "id"]
        )
        batch_op.create_index(
            "ix_redemptions_store_record", ["tenant_id", "store_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_redemptions_user", ["tenant_id", "user_id", "created_at"], unique=False)
    _stores_from_texts()


def _stores_from_texts() -> None:
    """One store per distinct (whitespace-collapsed) store text of each tenant's redemptions."""
    bind = op.get_bind()
    _bypass_rls(True)
    rows = bind.execute(
        sa.text(
            "SELECT tenant_id, store, MIN(created_at) AS first FROM redemptions WHERE store <> '' "
            "GROUP BY tenant_id, store ORDER BY tenant_id, first"
        ).columns(tenant_id=sa.Uuid(), store=sa.String(), first=sa.DateTime(timezone=True))
    ).all()
    names: dict[tuple[str, str], list[str]] = defaultdict(list)  # (tenant, name) → the texts
    order: dict[str, list[str]] = defaultdict(list)  # tenant → names in order of first use
    for tenant_id, text, _first in rows:
        name = " ".join(text.split())[:64]
        if not name:
            continue
        if (str(tenant_id), name) not in names:
            order[str(tenant_id)].append(name)
        names[(str(tenant_id), name)].append(text)
    stores = sa.table(
        "stores", sa.column("tenant_id", sa.Uuid()), sa.column("id", sa.Uuid()),
        *(sa.column(c) for c in ("code", "name", "province", "city", "district", "address", "phone", "active",
                                 "updated_at")),
    )  # fmt: skip
    link = sa.text(
        "UPDATE redemptions SET store_id = :sid WHERE tenant_id = :tid AND store = :text"
    ).bindparams(sa.bindparam("sid", type_=sa.Uuid()), sa.bindparam("tid", type_=sa.Uuid()))
    for tenant, tenant_names in order.items():
        tid = uuid.UUID(tenant)
        for n, name in enumerate(tenant_names, start=1):
            sid = uuid.uuid4()
            bind.execute(
                stores.insert().values(
                    tenant_id=tid,
                    id=sid,
                    code=f"S{n:03d}",
                    name=name,
                    province="",
                    city="",
                    district="",
                    address="",
                    phone="",
                    active=True,
                    updated_at=sa.func.current_timestamp(),
                )
            )
            for text in names[(tenant, name)]:
                bind.execute(link, {"sid": sid, "tid": tid, "text": text})
    _bypass_rls(False)


def downgrade() -> None:
    with op.batch_alter_table("redemptions", schema=None) as batch_op:
        batch_op.drop_index("ix_redemptions_user")
        batch_op.drop_index("ix_redemptions_store_record")
        batch_op.drop_constraint(op.f("fk_redemptions_tenant_id_stores"), type_="foreignkey")
        batch_op.drop_column("store_id")
    op.drop_index("ix_store_clerks_store", table_name="store_clerks")
    op.drop_table("store_clerks")
    op.drop_table("stores")
