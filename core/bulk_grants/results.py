"""A bulk grant's result file: one CSV line per row of the upload, as written, with its outcome.

UTF-8 with BOM (Excel opens it), contacts and codes masked, and each problem in the console's words
(:mod:`core.bulk_grants.messages`) next to its stable code.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.bulk_grants.messages import is_zh, row_message
from core.bulk_grants.models import BulkGrantRow
from core.bulk_grants.parsing import PROBLEMS
from core.bulk_grants.services import IN_CHUNK, get_bulk_grant, open_row
from core.grants.models import GrantItem
from core.inventory.models import Code
from core.inventory.vault import masked
from core.kernel import Kernel

_HEADERS = {
    "zh-CN": [
        "行号",
        "姓名",
        "联系方式",
        "商品编码",
        "数量",
        "结果",
        "发放单号",
        "卡券（掩码）",
        "错误",
        "error_code",
    ],
    "en": [
        "row",
        "name",
        "contact",
        "sku",
        "quantity",
        "result",
        "grant ref",
        "codes (masked)",
        "error",
        "error_code",
    ],
}
_STATUS_LABELS = {
    "zh-CN": {
        "invalid": "未发放（数据有误）",
        "pending": "待发放",
        "already_granted": "已发放过",
        "granted": "已发放",
        "failed": "发放失败",
    },
    "en": {
        "invalid": "not granted (bad row)",
        "pending": "pending",
        "already_granted": "granted before",
        "granted": "granted",
        "failed": "failed",
    },
}


def _mask_written(text: str) -> str:
    """A phone or e-mail that could not be read, in the form it was written but with the middle hidden.

    ``138-0013-800`` → ``138-****-800``: every digit but the first 3 and last 4 becomes ``*`` once there
    are 8 or more (it may be a real number with a typo, and the result file promises masked contacts);
    an e-mail keeps its first character and domain. Shorter values cannot be a phone and stay as written.
    """
    if "@" in text:
        user, _, domain = text.partition("@")
        return f"{user[:1]}***@{domain}"
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    if len(digits) < 8:
        return text
    hidden = set(digits[3:-4])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(text))


def _contact_shown(row: BulkGrantRow, written: dict[str, str]) -> str:
    """The masked contact; a phone or e-mail that could not be read is shown as written, masked alike."""
    bad = [
        written.get(f, "") for f, p in (("phone", "bad_phone"), ("email", "bad_email")) if p in row.problems
    ]
    bad = [_mask_written(b) for b in bad if b]
    if bad:
        return "; ".join(bad)
    return row.contact_masked


async def results_csv(
    session: AsyncSession, kernel: Kernel, bulk_id: uuid.UUID, locale: str = "zh-CN"
) -> bytes:
    """The per-row result as CSV (UTF-8 with BOM so Excel opens it; contacts and codes masked).

    Values are shown as the file had them (a quantity of ``-2`` stays ``-2``, a date stays a date);
    ``错误``/``error`` holds the row's problems or failure in the same words as the console (Chinese unless
    ``locale`` is English); ``error_code`` the stable codes, for programs.
    """
    lang = "zh-CN" if is_zh(locale) else "en"
    bulk = await get_bulk_grant(session, bulk_id)
    rows = list(
        (
            await session.execute(
                select(BulkGrantRow)
                .where(BulkGrantRow.bulk_grant_id == bulk.id)
                .order_by(BulkGrantRow.row_number)
            )
        ).scalars()
    )
    grant_ids = [r.grant_id for r in rows if r.grant_id is not None]
    codes: dict[uuid.UUID, list[str]] = defaultdict(list)
    for start in range(0, len(grant_ids), IN_CHUNK):
        part = grant_ids[start : start + IN_CHUNK]
        found = await session.execute(
            select(GrantItem.grant_id, Code.last4)
            .join(Code, (Code.tenant_id == GrantItem.tenant_id) & (Code.id == GrantItem.code_id))
            .where(GrantItem.grant_id.in_(part))
            .order_by(GrantItem.grant_id, GrantItem.id)
        )
        for grant_id, last4 in found.all():
            codes[grant_id].append(masked(last4))
    cipher = await kernel.keys.cipher(session)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_HEADERS[lang])
    labels = _STATUS_LABELS[lang]
    separator = "；" if lang == "zh-CN" else "; "
    for r in rows:
        sealed = open_row(cipher, r)
        name = sealed[0] if sealed else ""
        written: dict[str, str] = dict(sealed[3]) if len(sealed) > 3 else {}
        error_codes = [r.error_code] if r.error_code else [p for p in PROBLEMS if p in (r.problems or [])]
        quantity = written.get("quantity") or (str(r.quantity) if r.quantity else "")
        writer.writerow(
            [
                r.row_number,
                _safe(written.get("name", name)),
                _safe(_contact_shown(r, written)),
                _safe(written.get("sku", r.sku)),
                _safe(quantity),
                labels.get(r.status, r.status),
                r.grant_ref or "",
                "; ".join(codes.get(r.grant_id, [])) if r.grant_id else "",
                separator.join(row_message(c, lang) for c in error_codes),
                ";".join(error_codes),
            ]
        )
    return "\ufeff".encode() + out.getvalue().encode("utf-8")


_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")


def _safe(text: str) -> str:
    """Neutralise spreadsheet formulas in values that came from the uploaded file (CSV injection).

    A plain number (``-2``) is left as written: it cannot be a formula.
    """
    if _NUMBER.fullmatch(text):
        return text
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
