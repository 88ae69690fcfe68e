"""grants and grant items: the statuses of the state machine (core/grants/lifecycle.py) as CHECK constraints;
grants whose units were redeemed get the redemption status they now carry (partially_redeemed / redeemed)

Revision ID: 0015_domain_grant_status
Revises: 0014_faults_delivery
Create Date: 2026-12-06 06:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0015_domain_grant_status"
down_revision = "0014_faults_delivery"
branch_labels = None
depends_on = None

GRANT_STATUSES = ("created", "delivered", "delivery_failed", "partially_redeemed", "redeemed", "expired", "voided")
OLD_GRANT_STATUSES = ("created", "delivered", "delivery_failed", "voided")
ITEM_STATUSES = ("held", "redeemed", "transferred", "voided", "expired")


def _in(statuses: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


_ITEMS = "SELECT 1 FROM grant_items i WHERE i.tenant_id = grants.tenant_id AND i.grant_id = grants.id"
_USED_HELD = (
    "SELECT 1 FROM grant_items i JOIN redemptions r ON r.tenant_id = i.tenant_id AND r.code_id = i.code_id "
    "AND r.grant_item_id = i.id AND r.status = 'redeemed' "
    "WHERE i.tenant_id = grants.tenant_id AND i.grant_id = grants.id AND i.status NOT IN ('redeemed', 'transferred')"
)
_UNUSED = "status IN ('created', 'delivered', 'delivery_failed')"


def _bypass_rls(on: bool) -> None:
    """Tenant tables FORCE row-level security, the owner included: the data fix spans every tenant."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"SELECT set_config('app.bypass_rls', '{'on' if on else 'off'}', true)")


def upgrade() -> None:
    _bypass_rls(True)
    op.execute(
        f"UPDATE grants SET status = 'redeemed' WHERE {_UNUSED} "
        f"AND EXISTS ({_ITEMS} AND i.status = 'redeemed') "
        f"AND NOT EXISTS ({_ITEMS} AND i.status NOT IN ('redeemed', 'transferred'))"
    )
    op.execute(
        f"UPDATE grants SET status = 'partially_redeemed' WHERE {_UNUSED} "
        f"AND (EXISTS ({_ITEMS} AND i.status = 'redeemed') OR EXISTS ({_USED_HELD}))"
    )
    _bypass_rls(False)
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_check_constraint(op.f("ck_grants_status_known"), _in(GRANT_STATUSES))
    with op.batch_alter_table("grant_items", schema=None) as batch_op:
        batch_op.create_check_constraint(op.f("ck_grant_items_status_known"), _in(ITEM_STATUSES))


def downgrade() -> None:
    with op.batch_alter_table("grant_items", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_grant_items_status_known"), type_="check")
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_grants_status_known"), type_="check")
    _bypass_rls(True)
    op.execute(
        f"UPDATE grants SET status = CASE WHEN delivered_at IS NOT NULL THEN 'delivered' ELSE 'created' END "
        f"WHERE status NOT IN ({', '.join(repr(s) for s in OLD_GRANT_STATUSES)})"
    )
    _bypass_rls(False)
