"""The claim-link and "my codes" steps of the member pages (``/h5``), each a whole unit of work over the
request's session (the campaign steps are in :mod:`core.campaigns.member_flows`).

The pages only read forms and render; what must be saved when a step is refused is decided here:
- a wrong one-time code is counted (and may lock the link), so that refusal commits before it is raised;
- a refused transfer leaves nothing behind: it is rolled back before it is raised, and the page re-reads
  the member.

Everything else stays in the request's transaction, which the request middleware commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from core.claims.access import SessionRequired, session_cookie, session_member
from core.claims.items import ItemView, item_views, link_items
from core.claims.links import LinkState, confirm_link
from core.claims.transfer import Transfer, transfer_item
from core.errors import DomainError
from core.kernel import Kernel
from core.members.models import Member
from tenants.models import Tenant

T = TypeVar("T")


async def commit_refusal(session: AsyncSession, step: Awaitable[T]) -> T:
    """Await ``step``; when it is refused, commit what the refusal counted, then raise the refusal."""
    try:
        return await step
    except DomainError:
        await session.commit()
        raise


async def current_member(session: AsyncSession, kernel: Kernel, cookie: str | None) -> tuple[Tenant, Member]:
    """The tenant and member of the visitor's session cookie; ``session_required`` without a valid one."""
    current = await session_member(session, kernel, cookie)
    if current is None:
        raise SessionRequired(
            "Open the claim link from your SMS to see your codes",
            "请通过短信中的领取链接打开，验证手机号后即可查看您的券码",
        )
    return current


async def member_cookie(session: AsyncSession, kernel: Kernel, member_id: uuid.UUID) -> tuple[str, int]:
    """(cookie value, max-age seconds) of a new session for ``member_id`` (signed under the tenant key)."""
    return session_cookie(await kernel.keys.cipher(session), member_id)


async def holder_views(
    session: AsyncSession, kernel: Kernel, state: LinkState, cookie: str | None
) -> list[ItemView] | None:
    """The link's codes, revealed (audited), when the visitor's session belongs to the member the link is
    bound to; None when the visitor must first confirm the phone. A session of another tenant is ignored."""
    link = state.link
    current = await session_member(session, kernel, cookie, tenant_id=link.tenant_id)
    if not (state.bound and current is not None and current[1].id == link.member_id):
        return None
    items = await link_items(session, link)
    return await item_views(session, kernel, items, state.tenant, reveal=True)


async def verify_link_code(
    session: AsyncSession,
    kernel: Kernel,
    state: LinkState,
    code: str,
    *,
    ip: str | None = None,
    device_id: str | None = None,
) -> Member:
    """:func:`~core.claims.links.confirm_link` for a link opened with ``lock``; a refused code is
    committed as counted (the attempt and any lock stick) before the refusal is raised."""
    return await commit_refusal(
        session, confirm_link(session, kernel, state, code, ip=ip, device_id=device_id)
    )


async def transfer(
    session: AsyncSession,
    kernel: Kernel,
    tenant: Tenant,
    giver: Member,
    item_id: uuid.UUID,
    phone: str,
    *,
    ip: str | None = None,
    device_id: str | None = None,
) -> Transfer:
    """:func:`~core.claims.transfer.transfer_item`; a refused transfer is rolled back before the refusal is
    raised (nothing of it stays; the caller re-reads the tenant and member it holds)."""
    try:
        return await transfer_item(session, kernel, tenant, giver, item_id, phone, ip=ip, device_id=device_id)
    except DomainError:
        await session.rollback()
        raise
