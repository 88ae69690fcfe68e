"""the outbox relay and the webhook sweep find their rows by tenant

The outbox's ``(status, available_at)`` index held every row ever delivered; the relay now claims tenant by
tenant through two partial indexes of the unfinished rows, led by ``tenant_id`` (due: ``pending``; in flight:
``enqueued``/``running``, for redelivery). The webhook sweep's index leads with ``tenant_id`` too.

Revision ID: 0021_outbox_tenant_index
Revises: 0020_audit_seals
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0021_outbox_tenant_index"
down_revision = "0020_audit_seals"
branch_labels = None
depends_on = None

DUE = "status = 'pending'"
IN_FLIGHT = "status IN ('enqueued', 'running')"


def upgrade() -> None:
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.create_index("ix_outbox_due", "outbox", ["tenant_id", "available_at"],
                    postgresql_where=sa.text(DUE), sqlite_where=sa.text(DUE))
    op.create_index("ix_outbox_in_flight", "outbox", ["tenant_id", "enqueued_at"],
                    postgresql_where=sa.text(IN_FLIGHT), sqlite_where=sa.text(IN_FLIGHT))
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["tenant_id", "status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.drop_index("ix_outbox_in_flight", table_name="outbox")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.create_index("ix_outbox_pending", "outbox", ["status", "available_at"])
