"""products: card number / PIN rules; codes: hints that reveal at most a third of a code

Revision ID: 0013_imports_code_rules
Revises: 0012_campaign_status
Create Date: 2026-12-06 06:00:00.000000

``codes.last4`` used to keep the last four characters whatever the length. The plaintext is encrypted,
but its length is not secret from the ciphertext: ``secret`` is nonce (12) + msgpack ``[number, pin]`` +
tag (16), and a number without a PIN packs as ``0x92 · str header · number · 0xc0``. So the number's length
is known for codes without a PIN, and their hint is cut to what the mask rule allows (nothing below 8
characters, else at most a third, at most 4). For codes with a PIN the number's length cannot be told
apart from the PIN's, so their hint is blanked (they show ``••••••••``). Redemptions copy the hint
(``code_last4``) and follow their code.
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0013_imports_code_rules"
down_revision = "0012_campaign_status"
branch_labels = None
depends_on = None

_RULES = (
    ("code_min_length", sa.Integer(), "4"),
    ("code_max_length", sa.Integer(), "64"),
    ("code_charset", sa.String(20), "printable"),
    ("pin_min_length", sa.Integer(), "4"),
    ("pin_max_length", sa.Integer(), "64"),
    ("pin_charset", sa.String(20), "printable"),
)


def _hint_sql(length_fn: str) -> str:
    plain = f"({length_fn}(secret) - 28)"  # msgpack plaintext bytes
    number = f"(CASE WHEN {plain} - 3 <= 31 THEN {plain} - 3 ELSE {plain} - 4 END)"  # fixstr / str8 header
    keep = f"(CASE WHEN has_pin OR {number} < 8 THEN 0 WHEN {number} / 3 >= 4 THEN 4 ELSE {number} / 3 END)"
    return (
        f"UPDATE codes SET last4 = CASE WHEN {keep} = 0 THEN '' "
        f"ELSE substr(last4, length(last4) - {keep} + 1) END"
    )


def upgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        for name, type_, default in _RULES:
            batch_op.add_column(sa.Column(name, type_, nullable=False, server_default=default))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("SELECT set_config('app.bypass_rls', 'on', true)")
        op.execute(_hint_sql("octet_length"))
    else:
        op.execute(_hint_sql("length"))
    op.execute(
        "UPDATE redemptions SET code_last4 = (SELECT c.last4 FROM codes c "
        "WHERE c.tenant_id = redemptions.tenant_id AND c.id = redemptions.code_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        for name, _type, _default in reversed(_RULES):
            batch_op.drop_column(name)
