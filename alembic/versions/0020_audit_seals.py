"""audit events sealed in blocks: events carry their transaction's position, one seal row per block

Revision ID: 0020_audit_seals
Revises: 0019_settlement
Create Date: 2026-12-08 10:00:00.000000

Events are no longer updated when sealed: ``seq``, ``prev_hash`` and ``hash`` go, and ``txid`` (the
position of the event's transaction) comes; ``audit_seals`` holds one row per sealed block and
``audit_heads`` goes. Existing events get position 0, so the first sealer of each tenant seals all of them,
in id order, as block 1 of a new chain starting at the genesis hash (the old per-event links are dropped:
run ``kaquan audit verify`` before upgrading to check them one last time). Both tables become append-only:
the database refuses an UPDATE or DELETE of their rows.
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0020_audit_seals"
down_revision = "0019_settlement"
branch_labels = None
depends_on = None

_POSITION_DEFAULT = "(pg_current_xact_id()::text::bigint)"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "audit_seals",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("from_pos", sa.BigInteger(), nullable=False),
        sa.Column("to_pos", sa.BigInteger(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("events_digest", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("block > 0", name=op.f("ck_audit_seals_block_positive")),
        sa.CheckConstraint("from_pos < to_pos", name=op.f("ck_audit_seals_range_not_empty")),
        sa.CheckConstraint("event_count > 0", name=op.f("ck_audit_seals_has_events")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_audit_seals_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_audit_seals")),
        sa.UniqueConstraint("tenant_id", "block", name=op.f("uq_audit_seals_tenant_id_block")),
    )
    op.create_index("ix_audit_seals_to_pos", "audit_seals", ["tenant_id", "to_pos"], unique=False)
    op.drop_index("ix_audit_events_unsealed", table_name="audit_events")
    if postgres:  # dropping columns and adding one with a constant default rewrite no rows
        op.drop_constraint("uq_audit_events_tenant_id_seq", "audit_events", type_="unique")
        for column in ("seq", "prev_hash", "hash"):
            op.drop_column("audit_events", column)
        op.add_column("audit_events", sa.Column("txid", sa.BigInteger(), server_default="0", nullable=False))
        op.alter_column("audit_events", "txid", server_default=sa.text(_POSITION_DEFAULT))
    else:
        with op.batch_alter_table("audit_events") as batch:
            batch.drop_constraint("uq_audit_events_tenant_id_seq", type_="unique")
            for column in ("seq", "prev_hash", "hash"):
                batch.drop_column(column)
            batch.add_column(sa.Column("txid", sa.BigInteger(), server_default="0", nullable=False))
        with op.batch_alter_table("audit_events") as batch:  # no default: the app always names the position
            batch.alter_column("txid", existing_type=sa.BigInteger(), existing_nullable=False, server_default=None)
    op.create_index("ix_audit_events_position", "audit_events", ["tenant_id", "txid"], unique=False)
    op.drop_table("audit_heads")
    for table in ("audit_events", "audit_seals"):
        _append_only(table)


def _append_only(table: str) -> None:
    """The database refuses an UPDATE or DELETE of the table's rows (as for the split ledger)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{table} is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege'; "
            "END $$"
        )
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
            )


def _drop_append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")
    else:
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")


def downgrade() -> None:
    """Back to events linked one by one: every event is unsealed again and the old sealer links it."""
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in ("audit_events", "audit_seals"):
        _drop_append_only(table)
    op.create_table(
        "audit_heads",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_audit_heads_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_audit_heads")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_audit_heads_tenant_id")),
    )
    op.drop_index("ix_audit_events_position", table_name="audit_events")
    old = [sa.Column("seq", sa.BigInteger(), nullable=True), sa.Column("prev_hash", sa.String(64), nullable=True),
           sa.Column("hash", sa.String(64), nullable=True)]
    if postgres:
        op.drop_column("audit_events", "txid")
        for column in old:
            op.add_column("audit_events", column)
        op.create_unique_constraint("uq_audit_events_tenant_id_seq", "audit_events", ["tenant_id", "seq"])
    else:
        with op.batch_alter_table("audit_events") as batch:
            batch.drop_column("txid")
            for column in old:
                batch.add_column(column)
            batch.create_unique_constraint("uq_audit_events_tenant_id_seq", ["tenant_id", "seq"])
    op.create_index("ix_audit_events_unsealed", "audit_events", ["tenant_id", "id"],
                    postgresql_where=sa.text("seq IS NULL"), sqlite_where=sa.text("seq IS NULL"))
    op.drop_index("ix_audit_seals_to_pos", table_name="audit_seals")
    op.drop_table("audit_seals")
