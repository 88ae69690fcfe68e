"""Exporting members to XLSX (数据导出), filtered like the member list.

Who and how much: the console lets owners and admins export (permission ``data.export``), each export is
an audit event (``members.exported``: the filter, the row count, whether phones were in full). Phones are
masked (``138****5678``) unless the caller may see them whole (permission ``members.phones``, the owner
only) and asks for it. An export holds at most :data:`EXPORT_CAP` rows: a larger list is refused with
``422 export_too_large`` before anything is written (narrow the filter), so a request never runs away.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.db.context import require_tenant
from core.errors import DomainError
from core.kernel import Kernel
from core.members.models import Member
from core.members.services import PHONE_AAD, members_select
from core.xlsx import workbook
from tenants.models import Tenant

EXPORT_CAP = 50_000
_HEAD = (
    "External id / 会员编号",
    "Name / 姓名",
    "Phone / 手机号",
    "E-mail / 邮箱",
    "Tags / 标签",
    "Source / 来源",
    "Status / 状态",
    "Created / 创建时间",
)


class ExportTooLarge(DomainError):
    status, code = 422, "export_too_large"


async def rows_within_cap(session: AsyncSession, stmt: Select) -> int:
    """The number of rows ``stmt`` selects; ``422 export_too_large`` past :data:`EXPORT_CAP`."""
    count = int(
        (await session.execute(select(func.count()).select_from(stmt.order_by(None).subquery()))).scalar_one()
    )
    if count > EXPORT_CAP:
        raise ExportTooLarge(
            f"{count} rows match; an export holds at most {EXPORT_CAP}. Narrow the filter and export again.",
            f"符合条件的有 {count} 行，单次导出最多 {EXPORT_CAP} 行，请缩小筛选范围后分批导出。",
        )
    return count


async def tenant_clock(session: AsyncSession) -> tuple[str, ZoneInfo]:
    """(tenant name, its time zone) for file contents shown in the tenant's time."""
    tenant = await session.get(Tenant, require_tenant())
    try:
        zone = ZoneInfo(tenant.timezone if tenant is not None else "Asia/Shanghai")
    except ZoneInfoNotFoundError:
        zone = ZoneInfo("Asia/Shanghai")
    return (tenant.name if tenant is not None else ""), zone


def local_text(value: dt.datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


async def export_members(
    session: AsyncSession, kernel: Kernel, *, q: str | None = None, full_phones: bool = False
) -> tuple[str, bytes, int]:
    """(file name, XLSX bytes, row count) of the members matching ``q`` (the member list's search), newest
    first; audited as ``members.exported``."""
    stmt = await members_select(session, kernel, q=q)
    count = await rows_within_cap(session, stmt)
    _name, zone = await tenant_clock(session)
    cipher = await kernel.keys.cipher(session) if full_phones else None
    rows = []
    for m in (await session.execute(stmt.order_by(Member.id.desc()))).scalars():
        phone = m.phone_masked or ""
        if cipher is not None and m.phone_secret is not None and m.phone_digest is not None:
            phone = cipher.decrypt(m.phone_secret, aad=PHONE_AAD + m.phone_digest.encode()).decode("ascii")
        rows.append(
            (
                m.external_id or "",
                m.name or "",
                phone,
                m.email or "",
                ", ".join(m.tags or []),
                m.source,
                m.status,
                local_text(m.created_at, zone),
            )
        )
    body = await workbook("Members", _HEAD, rows)
    record(
        session,
        "members.exported",
        "export",
        "members",
        {"rows": count, "q": q or "", "full_phones": full_phones},
    )
    stamp = dt.datetime.now(zone).strftime("%Y%m%d-%H%M")
    return f"members-{stamp}.xlsx", body, count
