"""Members: phone normalisation and protection, lookup, creation, updates and CSV import.

A phone is kept three ways and never in plaintext: an HMAC digest under the tenant's key (lookup and
uniqueness), a masked form (display, ``138****5678``) and an AES-GCM ciphertext under the tenant's data
key (so a grant, a reminder or a one-time code can be sent to it).
"""

from __future__ import annotations

import contextlib
import functools
import re
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
from sqlalchemy import Select, func, insert, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from core.audit.services import record
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.ids import new_id
from core.db.paging import Page, keyset_page, keyset_select
from core.errors import Conflict, FieldError, NotFound, ValidationFailed
from core.inventory.importing.parsing import import_error, open_upload
from core.kernel import Kernel
from core.members.models import MEMBER_SOURCES, MEMBER_STATUSES, Member
from core.members.schemas import (
    MAX_TAGS,
    ImportProblem,
    MemberCreate,
    MemberImportReport,
    MemberOut,
    MemberPage,
    MemberUpdate,
)
from core.normalize import typed

_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}")
_SEPARATORS = re.compile(r"[\s\-()（）]")
PHONE_AAD = b"member-phone:"
MAX_PAGE = 200
_UNSET = msgspec.UNSET


def _phone_error(message_en: str = "Not a mainland China mobile number") -> ValidationFailed:
    return ValidationFailed(
        "Invalid phone number",
        "手机号格式不正确",
        code="invalid_phone",
        errors=[FieldError(field="phone", message=message_en, code="invalid_phone")],
    )


def normalize_phone(raw: str) -> str:
    """``+8613812345678`` from a mainland mobile number (``+86``/``86``/``0086`` prefix, spaces, dashes ok)."""
    s = _SEPARATORS.sub("", typed(raw or ""))  # full-width digits, U+3000 and dashes as in every typed value
    for prefix in ("+86", "0086", "86"):
        if s.startswith(prefix) and len(s) == len(prefix) + 11:
            s = s[len(prefix) :]
            break
    if not _MOBILE.fullmatch(s):
        raise _phone_error()
    return "+86" + s


def mask_phone(phone_e164: str) -> str:
    """``138****5678``."""
    national = phone_e164.removeprefix("+86")
    return f"{national[:3]}****{national[-4:]}"


def normalize_email(raw: str, field: str = "email") -> str:
    s = (raw or "").strip()
    if len(s) > 254 or not _EMAIL.fullmatch(s):
        raise ValidationFailed(
            "Invalid e-mail address",
            "邮箱格式不正确",
            code="invalid_email",
            errors=[FieldError(field=field, message="Not an e-mail address", code="invalid_email")],
        )
    local, _, domain = s.rpartition("@")
    return f"{local}@{domain.lower()}"


def _clean_text(value: str | None, field: str, limit: int) -> str | None:
    if value is None:
        return None
    s = value.strip()
    if len(s) > limit:
        raise ValidationFailed(
            f"{field} is too long",
            f"{field} 过长",
            errors=[FieldError(field=field, message=f"at most {limit} characters", code="too_long")],
        )
    return s or None


def _clean_tags(tags: list[str]) -> list[str]:
    out: list[str] = []
    for t in tags:
        s = str(t).strip()
        if s and s not in out:
            if len(s) > 40:
                raise ValidationFailed(
                    "A tag is too long",
                    "标签过长",
                    errors=[
                        FieldError(field="tags", message="at most 40 characters per tag", code="too_long")
                    ],
                )
            out.append(s)
    if len(out) > MAX_TAGS:
        raise ValidationFailed(
            "Too many tags",
            "标签过多",
            errors=[FieldError(field="tags", message=f"at most {MAX_TAGS} tags", code="too_many")],
        )
    return out


def digest_with(cipher: TenantCipher, phone_e164: str) -> str:
    return cipher.digest(b"phone:" + phone_e164.encode("ascii"))


async def phone_digest(session: AsyncSession, kernel: Kernel, phone_e164: str) -> str:
    """The tenant-keyed HMAC digest of a normalised phone (lookup key of members by phone)."""
    return digest_with(await kernel.keys.cipher(session), phone_e164)


def seal_phone(cipher: TenantCipher, phone_e164: str) -> tuple[str, str, bytes]:
    """(digest, masked, ciphertext) of a normalised phone."""
    digest = digest_with(cipher, phone_e164)
    secret = cipher.encrypt(phone_e164.encode("ascii"), aad=PHONE_AAD + digest.encode())
    return digest, mask_phone(phone_e164), secret


async def member_phone(session: AsyncSession, kernel: Kernel, member: Member) -> str | None:
    """The member's phone in plaintext (for delivery only; never log or store it)."""
    if member.phone_secret is None or member.phone_digest is None:
        return None
    cipher = await kernel.keys.cipher(session)
    return cipher.decrypt(member.phone_secret, aad=PHONE_AAD + member.phone_digest.encode()).decode("ascii")


def member_out(m: Member) -> MemberOut:
    return MemberOut(
        id=m.id,
        external_id=m.external_id,
        phone_masked=m.phone_masked,
        email=m.email,
        name=m.name,
        tags=list(m.tags or []),
        source=m.source,
        status=m.status,
        created_at=m.created_at,
    )


def _not_found() -> NotFound:
    return NotFound("Member not found", "会员不存在", code="member_not_found")


async def get_member(session: AsyncSession, member_id: uuid.UUID) -> Member:
    m = (await session.execute(select(Member).where(Member.id == member_id))).scalar_one_or_none()
    if m is None:
        raise _not_found()
    return m


async def by_external_id(session: AsyncSession, external_id: str) -> Member | None:
    return (
        await session.execute(select(Member).where(Member.external_id == external_id))
    ).scalar_one_or_none()


async def by_phone_digest(session: AsyncSession, digest: str) -> Member | None:
    return (await session.execute(select(Member).where(Member.phone_digest == digest))).scalar_one_or_none()


async def by_email(session: AsyncSession, email: str) -> Member | None:
    return (
        await session.execute(select(Member).where(Member.email == email).order_by(Member.id).limit(1))
    ).scalar_one_or_none()


def _duplicate(what: str) -> Conflict:
    zh = {"external_id": "会员编号已存在", "phone": "该手机号已属于其他会员"}[what]
    return Conflict(
        f"A member with this {what} already exists",
        zh,
        code="member_exists",
        errors=[FieldError(field=what, message="already used", code="duplicate")],
    )


async def create_member(
    session: AsyncSession, kernel: Kernel, data: MemberCreate, *, source: str = "api"
) -> Member:
    """Create a member; 409 ``member_exists`` when the external id or the phone is taken."""
    if source not in MEMBER_SOURCES:
        raise ValueError(f"unknown member source {source!r}")
    external_id = _clean_text(data.external_id, "external_id", 120)
    name = _clean_text(data.name, "name", 120)
    email = normalize_email(data.email) if data.email and data.email.strip() else None
    phone = normalize_phone(data.phone) if data.phone and data.phone.strip() else None
    tags = _clean_tags(data.tags)
    if not (external_id or phone or email):
        raise ValidationFailed(
            "A member needs an external id, a phone or an e-mail",
            "会员至少需要会员编号、手机号或邮箱之一",
            code="member_identity_required",
            errors=[
                FieldError(field="phone", message="external_id, phone or email required", code="required")
            ],
        )
    cipher = await kernel.keys.cipher(session)
    member = Member(
        external_id=external_id, email=email, name=name, tags=tags, source=source, status="active"
    )
    if phone:
        member.phone_digest, member.phone_masked, member.phone_secret = seal_phone(cipher, phone)
    if external_id and await by_external_id(session, external_id) is not None:
        raise _duplicate("external_id")
    if member.phone_digest and await by_phone_digest(session, member.phone_digest) is not None:
        raise _duplicate("phone")
    try:
        async with session.begin_nested():
            session.add(member)
            await session.flush()
    except IntegrityError as exc:  # a concurrent create won the race
        raise _duplicate("phone" if "phone" in str(exc.orig).lower() else "external_id") from None
    record(
        session,
        "member.created",
        "member",
        member.id,
        {"source": source, "external_id": external_id, "phone": member.phone_masked, "tags": tags},
    )
    return member


async def update_member(
    session: AsyncSession, kernel: Kernel, member_id: uuid.UUID, data: MemberUpdate
) -> Member:
    """Change a member's fields; the same uniqueness rules as creation."""
    m = await get_member(session, member_id)
    changed: dict[str, Any] = {}
    if data.external_id is not _UNSET:
        ext = _clean_text(data.external_id, "external_id", 120)
        if ext != m.external_id:
            if ext and (other := await by_external_id(session, ext)) is not None and other.id != m.id:
                raise _duplicate("external_id")
            m.external_id = ext
            changed["external_id"] = ext
    if data.phone is not _UNSET:
        if data.phone and data.phone.strip():
            phone = normalize_phone(data.phone)
            digest, masked, secret = seal_phone(await kernel.keys.cipher(session), phone)
            if digest != m.phone_digest:
                other = await by_phone_digest(session, digest)
                if other is not None and other.id != m.id:
                    raise _duplicate("phone")
                m.phone_digest, m.phone_masked, m.phone_secret = digest, masked, secret
                changed["phone"] = masked
        elif m.phone_digest is not None:
            m.phone_digest = m.phone_masked = m.phone_secret = None
            changed["phone"] = None
    if data.email is not _UNSET:
        email = normalize_email(data.email) if data.email and data.email.strip() else None
        if email != m.email:
            m.email = email
            changed["email"] = "set" if email else None
    if data.name is not _UNSET:
        name = _clean_text(data.name, "name", 120)
        if name != m.name:
            m.name = name
            changed["name"] = "set" if name else None
    if data.tags is not _UNSET:
        tags = _clean_tags(data.tags)
        if tags != list(m.tags or []):
            m.tags = tags
            changed["tags"] = tags
    if data.status is not _UNSET:
        if data.status not in MEMBER_STATUSES:
            raise ValidationFailed(
                "Unknown member status",
                "未知的会员状态",
                errors=[
                    FieldError(field="status", message=f"one of {', '.join(MEMBER_STATUSES)}", code="invalid")
                ],
            )
        if data.status != m.status:
            m.status = data.status
            changed["status"] = data.status
    if not (m.external_id or m.phone_digest or m.email):
        raise ValidationFailed(
            "A member needs an external id, a phone or an e-mail",
            "会员至少需要会员编号、手机号或邮箱之一",
            code="member_identity_required",
        )
    if changed:
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError:
            raise _duplicate("phone" if "phone" in changed else "external_id") from None
        record(session, "member.updated", "member", m.id, changed)
    return m


async def find_or_create_member(
    session: AsyncSession,
    kernel: Kernel,
    *,
    member_id: uuid.UUID | None = None,
    external_id: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    name: str | None = None,
    source: str = "api",
    upsert: bool = False,
) -> Member:
    """The member these identifiers point to, created when unknown; missing contact fields are filled in.

    ``phone`` may be raw (it is normalised). An external id and a phone that belong to two different
    members → 409 ``member_mismatch``. Safe under concurrency: a lost creation race re-reads the winner.

    ``upsert`` (the grant path): a recipient named by an external id alone or by a phone alone (either
    with an optional e-mail and name) is found or created by one ``INSERT … ON CONFLICT … DO UPDATE …
    RETURNING`` (:func:`_upsert_member`), the same rules in one statement instead of a read and an insert.
    That statement locks a found member's row until the transaction ends, so it is for paths that touch
    one member per transaction. Other combinations take the general path.
    """
    if member_id is not None:
        return await get_member(session, member_id)
    external_id = _clean_text(external_id, "external_id", 120)
    name = _clean_text(name, "name", 120)
    e164 = normalize_phone(phone) if phone and phone.strip() else None
    mail = normalize_email(email) if email and email.strip() else None
    if not (external_id or e164 or mail):
        raise ValidationFailed(
            "Say who receives: member_id, external_id, phone or email",
            "请指定接收人：会员、会员编号、手机号或邮箱",
            code="recipient_required",
            errors=[
                FieldError(
                    field="member_id",
                    message="member_id, external_id, phone or email required",
                    code="required",
                )
            ],
        )
    cipher = await kernel.keys.cipher(session)
    sealed = seal_phone(cipher, e164) if e164 else None
    if upsert and (external_id is None) != (sealed is None):
        return await _upsert_member(session, external_id, sealed, mail, name, source)
    for _attempt in range(3):
        by_ext = await by_external_id(session, external_id) if external_id else None
        by_ph = await by_phone_digest(session, sealed[0]) if sealed else None
        if by_ext is not None and by_ph is not None and by_ext.id != by_ph.id:
            raise Conflict(
                "The external id and the phone belong to different members",
                "会员编号与手机号分属不同会员",
                code="member_mismatch",
            )
        m = by_ext or by_ph
        if m is None and mail and not external_id and not sealed:
            m = await by_email(session, mail)
        if m is not None:
            _fill(m, external_id, sealed, mail, name)
            return m
        m = await _insert_member(session, external_id, sealed, mail, name, source)
        if m is None:
            continue  # another transaction created it first: read it
        record(
            session,
            "member.created",
            "member",
            m.id,
            {"source": source, "external_id": external_id, "phone": m.phone_masked, "tags": []},
        )
        return m
    raise Conflict(
        "The member is being changed concurrently; try again", "会员正被并发修改，请重试", code="member_busy"
    )


# What an upsert fills in on a member it finds: the fields it has empty (never overwrites; see _fill).
_UPSERT_FILLS = ("email", "name")


@functools.lru_cache(maxsize=8)
def _member_upsert(dialect: str, key: str) -> Any:
    """Insert a member, or fill the empty fields of the one whose ``key`` (external id or phone digest) is
    taken; returns the row either way. Built once per dialect and key (building costs more than running)."""
    table = Member.__table__
    c = table.c
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(table)
    fill = {f: func.coalesce(c[f], stmt.excluded[f]) for f in _UPSERT_FILLS}
    return stmt.on_conflict_do_update(index_elements=[c.tenant_id, c[key]], set_=fill).returning(*table.c)


async def _upsert_member(
    session: AsyncSession,
    external_id: str | None,
    sealed: tuple[str, str, bytes] | None,
    email: str | None,
    name: str | None,
    source: str,
) -> Member:
    """The member with this external id or this phone (exactly one of them is given), created when unknown,
    its empty e-mail and name filled in: one statement. A concurrent creation of the same member waits on
    the unique index and then finds it. ``member.created`` is audited when the row is new."""
    if any(isinstance(o, Member) for o in session.dirty):
        await session.flush()  # the statement below does not autoflush: this session's member changes first
    values = _new_member_values(external_id, sealed, email, name, source)
    connection = await session.connection()  # Core on the connection: no ORM execution overhead
    key = "external_id" if external_id is not None else "phone_digest"
    row = (await connection.execute(_member_upsert(connection.dialect.name, key), values)).one()
    data = dict(row._mapping)
    member = session.sync_session.identity_map.get(identity_key(Member, (data["tenant_id"], data["id"])))
    if isinstance(member, Member):  # already in this session: take what the statement filled in
        for f in _UPSERT_FILLS:
            set_committed_value(member, f, data[f])
    else:
        member = Member(**data)
        make_transient_to_detached(member)  # the row exists: attach the object without inserting it again
        session.add(member)
    if data["id"] == values["id"]:
        record(
            session,
            "member.created",
            "member",
            member.id,
            {"source": source, "external_id": external_id, "phone": member.phone_masked, "tags": []},
        )
    return member


def _new_member_values(
    external_id: str | None,
    sealed: tuple[str, str, bytes] | None,
    email: str | None,
    name: str | None,
    source: str,
) -> dict[str, Any]:
    """The columns of a new member (its tenant comes from the context, as the column's default)."""
    return {
        "id": new_id(),
        "external_id": external_id,
        "phone_digest": sealed[0] if sealed else None,
        "phone_masked": sealed[1] if sealed else None,
        "phone_secret": sealed[2] if sealed else None,
        "email": email,
        "name": name,
        "tags": [],
        "source": source,
        "status": "active",
        "created_at": utcnow(),
    }


@functools.lru_cache(maxsize=4)
def _member_insert(dialect: str) -> Any:
    table = Member.__table__
    upsert = pg_insert if dialect == "postgresql" else sqlite_insert
    return upsert(table).on_conflict_do_nothing().returning(table.c.tenant_id)


async def _insert_member(
    session: AsyncSession,
    external_id: str | None,
    sealed: tuple[str, str, bytes] | None,
    email: str | None,
    name: str | None,
    source: str,
) -> Member | None:
    """Insert a new member unless its external id or phone is taken (then None: the caller re-reads).

    One ``INSERT … ON CONFLICT DO NOTHING`` instead of a savepoint around a flush (three round trips).
    """
    values = _new_member_values(external_id, sealed, email, name, source)
    connection = await session.connection()  # Core on the connection: no ORM execution overhead
    inserted = await connection.execute(_member_insert(connection.dialect.name), values)
    tenant_id = inserted.scalar_one_or_none()
    if tenant_id is None:
        return None
    member = Member(tenant_id=tenant_id, **values)  # the row's tenant, stamped by the insert from the context
    make_transient_to_detached(member)  # the row exists: attach the object without inserting it again
    session.add(member)
    return member


def _fill(
    m: Member,
    external_id: str | None,
    sealed: tuple[str, str, bytes] | None,
    email: str | None,
    name: str | None,
) -> None:
    """Fill a found member's empty fields (never overwrites what the member already has)."""
    if external_id and not m.external_id:
        m.external_id = external_id
    if sealed and not m.phone_digest:
        m.phone_digest, m.phone_masked, m.phone_secret = sealed
    if email and not m.email:
        m.email = email
    if name and not m.name:
        m.name = name


async def members_select(
    session: AsyncSession, kernel: Kernel, *, q: str | None = None, phone: str | None = None
) -> Select[Member]:
    """The members matching ``phone`` (by digest; ``422`` if not a mobile number) and ``q`` (external id,
    name, e-mail, or the phone digest when ``q`` is a phone number): the list's and the export's filter."""
    stmt = select(Member)
    if phone:
        stmt = stmt.where(Member.phone_digest == await phone_digest(session, kernel, normalize_phone(phone)))
    if q and q.strip():
        term = q.strip()
        conds = [
            Member.external_id == term,
            Member.name.contains(term, autoescape=True),
            Member.email.contains(term.lower(), autoescape=True),
        ]
        with contextlib.suppress(ValidationFailed):
            conds.append(Member.phone_digest == await phone_digest(session, kernel, normalize_phone(term)))
        stmt = stmt.where(or_(*conds))
    return stmt


async def list_members(
    session: AsyncSession,
    kernel: Kernel,
    *,
    after: uuid.UUID | None = None,
    limit: int = 50,
    tag: str | None = None,
    q: str | None = None,
    phone: str | None = None,
) -> MemberPage:
    """Newest first, cursor-paginated. ``phone`` is looked up by digest; ``q`` matches external id, name,
    e-mail, or (when it is a phone number) the phone digest."""
    limit = max(1, min(limit, MAX_PAGE))
    stmt = await members_select(session, kernel, q=q, phone=phone)
    if tag:
        # Tags are a JSON list (portable across SQLite and PostgreSQL): filter in Python, page on.
        return await _tag_page(session, stmt, after, tag.strip(), limit)
    page = await keyset_page(session, stmt, Member.id, cursor=after, limit=limit)
    return MemberPage([member_out(m) for m in page.items], page.next_cursor)


async def _tag_page(
    session: AsyncSession, stmt: Select[Member], after: uuid.UUID | None, tag: str, limit: int
) -> MemberPage:
    """A page of the members carrying ``tag``: scan ``limit + 1`` rows at a time until enough match."""
    found: list[Member] = []
    cursor = after
    while True:
        batch = keyset_select(stmt, Member.id, cursor=cursor, limit=limit)
        rows = list((await session.execute(batch)).scalars())
        found += [m for m in rows if tag in (m.tags or [])]
        if len(found) > limit or len(rows) <= limit:
            break
        cursor = rows[-1].id
    page = Page.cut(found, limit, lambda m: m.id)
    return MemberPage([member_out(m) for m in page.items], page.next_cursor)


# --------------------------------------------------------------------------------------------- CSV import

MAX_IMPORT_ROWS = 50_000
MAX_REPORTED_PROBLEMS = 1_000
_INSERT_CHUNK = 1_000
_LOOKUP_CHUNK = 500
IMPORT_ALIASES: dict[str, frozenset[str]] = {
    "external_id": frozenset(
        {
            "会员编号",
            "会员id",
            "会员号",
            "用户编号",
            "用户id",
            "员工编号",
            "工号",
            "编号",
            "externalid",
            "memberid",
            "member",
            "userid",
            "customerid",
            "id",
        }
    ),
    "phone": frozenset(
        {
            "手机号",
            "手机",
            "手机号码",
            "电话",
            "电话号码",
            "联系电话",
            "phone",
            "mobile",
            "phonenumber",
            "mobilenumber",
            "cellphone",
            "tel",
        }
    ),
    "email": frozenset({"邮箱", "电子邮箱", "电子邮件", "邮件", "email", "mail", "emailaddress"}),
    "name": frozenset({"姓名", "名字", "名称", "会员姓名", "name", "fullname", "membername"}),
    "tags": frozenset({"标签", "tags", "tag", "labels"}),
}
_TAG_SPLIT = re.compile(r"[,，;；|、]")


def _header_key(cell: Any) -> str:
    text = str(cell if cell is not None else "").strip().lower()
    text = re.sub(r"[(（\[【].*?[)）\]】]", "", text)
    return re.sub(r"[\s_\-.:：*#/\\'\"]+", "", text)


def _columns(cells: list[Any]) -> dict[str, int]:
    found: dict[str, int] = {}
    for i, cell in enumerate(cells):
        key = _header_key(cell)
        for name, aliases in IMPORT_ALIASES.items():
            if key in aliases and name not in found:
                found[name] = i
    return found


def _cell(cells: list[Any], idx: int | None) -> str:
    if idx is None or idx >= len(cells) or cells[idx] is None:
        return ""
    value = cells[idx]
    if isinstance(value, float) and value.is_integer():  # spreadsheets turn phone numbers into floats
        value = int(value)
    return str(value).strip()


async def _existing(session: AsyncSession, column: Any, values: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(values), _LOOKUP_CHUNK):
        chunk = values[start : start + _LOOKUP_CHUNK]
        found.update((await session.execute(select(column).where(column.in_(chunk)))).scalars())
    return found


async def import_members(
    session: AsyncSession,
    kernel: Kernel,
    file: Any,
    filename: str = "",
    *,
    max_bytes: int,
    encoding: str | None = None,
    max_rows: int = MAX_IMPORT_ROWS,
) -> MemberImportReport:
    """Validate a CSV/TXT/XLSX of members and insert every row, or none.

    Headers (zh or en): 会员编号/external_id, 手机号/phone, 邮箱/email, 姓名/name, 标签/tags. Encodings as
    the code import (UTF-8, BOM, GBK/GB18030, UTF-16). Synchronous: at most ``max_rows`` rows per file.
    Returns the report; ``inserted`` is 0 when any row has a problem (nothing was written).
    """

    upload = open_upload(file, filename, max_bytes=max_bytes, encoding=encoding)
    rows = upload.rows()
    cols = _member_columns(rows)
    reader = _ImportRows(await kernel.keys.cipher(session))
    total = 0
    for n, cells in rows:
        values = {name: _cell(cells, idx) for name, idx in cols.items()}
        if not any(values.values()):
            continue
        total += 1
        if total > max_rows:
            raise import_error(
                "import_too_many_rows",
                f"At most {max_rows} members can be imported per file; split it",
                f"每个文件最多导入 {max_rows} 个会员，请拆分文件",
                status=413,
                max_rows=max_rows,
            )
        reader.read(n, values)
    if total == 0:
        raise import_error(
            "import_empty", "The file has a header but no members", "文件只有表头，没有会员数据"
        )
    valid = await reader.refuse_existing(session)
    report = MemberImportReport(
        encoding=upload.encoding or upload.file_format,
        total_rows=total,
        valid_rows=valid,
        inserted=0,
        problems=reader.problems,
    )
    if reader.problem_count:
        reader.problems.sort(key=lambda p: p.row)
        return report
    now = utcnow()
    values_list = [
        {
            "id": new_id(),
            "created_at": now,
            "source": "import",
            "status": "active",
            "phone_digest": None,
            "phone_masked": None,
            "phone_secret": None,
            **row,
        }
        for _n, row in reader.candidates
    ]
    for start in range(0, len(values_list), _INSERT_CHUNK):
        await session.execute(insert(Member), values_list[start : start + _INSERT_CHUNK])
    record(
        session,
        "members.imported",
        "members",
        f"{len(values_list)} members",
        {"rows": len(values_list), "filename": filename[:200], "encoding": report.encoding},
    )
    report.inserted = len(values_list)
    return report


def _member_columns(rows: Iterator[tuple[int, list[Any]]]) -> dict[str, int]:
    """The columns of the first non-empty row (the header), consumed from ``rows``; ``import_empty`` when
    there is none, ``import_no_member_columns`` when no column identifies a member."""
    header: list[Any] | None = None
    for _n, cells in rows:
        if any(_cell(cells, i) for i in range(len(cells))):
            header = cells
            break
    if header is None:
        raise import_error("import_empty", "The file is empty", "文件为空")
    cols = _columns(header)
    if not ({"external_id", "phone", "email"} & cols.keys()):
        raise import_error(
            "import_no_member_columns",
            "No column identifies members; name one 会员编号/external_id, 手机号/phone or 邮箱/email",
            "找不到会员标识列，请将表头命名为“会员编号”、“手机号”或“邮箱”（或 external_id / phone / email）",
            columns=[str(c) for c in header],
        )
    return cols


class _ImportRows:
    """The rows of a member import as they are read: the valid ones (``candidates``) and the problems
    (all counted, the first :data:`MAX_REPORTED_PROBLEMS` listed)."""

    def __init__(self, cipher: TenantCipher) -> None:
        self.cipher = cipher
        self.problems: list[ImportProblem] = []
        self.problem_count = 0
        self.seen_ext: dict[str, int] = {}
        self.seen_phone: dict[str, int] = {}
        self.candidates: list[tuple[int, dict[str, Any]]] = []

    def problem(self, row: int, field: str, code: str, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(ImportProblem(row=row, field=field, code=code, message=message))

    def read(self, n: int, values: dict[str, str]) -> None:
        """Check row ``n`` (its cells by column name); a valid row becomes a candidate."""
        ok = True
        row: dict[str, Any] = {
            "external_id": values.get("external_id") or None,
            "name": values.get("name") or None,
            "email": None,
            "tags": [],
        }
        if row["external_id"] and len(row["external_id"]) > 120:
            self.problem(n, "external_id", "too_long", "at most 120 characters")
            ok = False
        if row["name"] and len(row["name"]) > 120:
            self.problem(n, "name", "too_long", "at most 120 characters")
            ok = False
        if values.get("phone"):
            try:
                e164 = normalize_phone(values["phone"])
                row["phone_digest"], row["phone_masked"], row["phone_secret"] = seal_phone(self.cipher, e164)
            except ValidationFailed:
                self.problem(n, "phone", "invalid_phone", "not a mainland China mobile number")
                ok = False
        if values.get("email"):
            try:
                row["email"] = normalize_email(values["email"])
            except ValidationFailed:
                self.problem(n, "email", "invalid_email", "not an e-mail address")
                ok = False
        if values.get("tags"):
            try:
                row["tags"] = _clean_tags(_TAG_SPLIT.split(values["tags"]))
            except ValidationFailed:
                self.problem(n, "tags", "invalid", f"at most {MAX_TAGS} tags of 40 characters")
                ok = False
        if ok and not (row["external_id"] or row.get("phone_digest") or row["email"]):
            self.problem(n, "phone", "required", "a row needs an external id, a phone or an e-mail")
            ok = False
        ok = self._first_in_file(n, "external_id", row["external_id"], self.seen_ext) and ok
        ok = self._first_in_file(n, "phone", row.get("phone_digest"), self.seen_phone) and ok
        if ok:
            self.candidates.append((n, row))

    def _first_in_file(self, n: int, field: str, value: str | None, seen: dict[str, int]) -> bool:
        """False (a ``duplicate_in_file`` problem) when an earlier row has the same ``value``."""
        if not value:
            return True
        if value in seen:
            self.problem(n, field, "duplicate_in_file", f"same as row {seen[value]}")
            return False
        seen[value] = n
        return True

    async def refuse_existing(self, session: AsyncSession) -> int:
        """Count an ``exists`` problem for every candidate whose external id or phone a member has; the
        number of valid rows."""
        taken_ext = await _existing(session, Member.external_id, list(self.seen_ext))
        taken_phone = await _existing(session, Member.phone_digest, list(self.seen_phone))
        valid = 0
        for n, row in self.candidates:
            clash = False
            if row["external_id"] in taken_ext:
                self.problem(n, "external_id", "exists", "a member with this external id exists")
                clash = True
            if row.get("phone_digest") in taken_phone:
                self.problem(n, "phone", "exists", "a member with this phone exists")
                clash = True
            valid += not clash
        return valid
