"""kaquan's session hooks (tenant filter, insert stamping, RLS settings, audit/event/grant bookkeeping) listen
on :class:`core.db.session.KaquanSession` only: a library's or a test's plain SQLAlchemy session in the same
process is left alone."""

from __future__ import annotations

import inspect
import sys
import uuid
from collections.abc import Callable, Iterator

from sqlalchemy import String, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, SessionEvents, mapped_column

from core.app import create_app  # noqa: F401  (imports every module that may listen)
from core.audit import services as audit
from core.db import session as db
from core.db.context import tenant_context
from core.db.session import KaquanSession
from core.events import services as events
from core.grants import services as grants

# The ten listeners (four modules) that used to sit on SQLAlchemy's global Session class.
KAQUAN_LISTENERS: list[tuple[str, Callable[..., object]]] = [
    ("do_orm_execute", db._tenant_filter),
    ("before_flush", db._stamp_tenant),
    ("after_begin", db._set_rls_context),
    ("after_commit", grants._forget_just_created),
    ("after_soft_rollback", grants._forget_just_created),
    ("after_commit", audit._notify_sealers),
    ("after_rollback", audit._drop_touched),
    ("after_flush", events._queue_fan_out),
    ("after_commit", events._drop_pending_fan_out),
    ("after_soft_rollback", events._drop_pending_fan_out),
]
SESSION_EVENTS = [n for n, v in vars(SessionEvents).items() if inspect.isfunction(v) and not n.startswith("_")]


class _Base(DeclarativeBase):
    """A metadata of this test's own, apart from kaquan's."""


class _Note(_Base):
    """Not a kaquan table, but it has a ``tenant_id`` column: kaquan's filter would refuse it with no tenant."""

    __tablename__ = "library_notes"
    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(40))


def _project_functions() -> Iterator[Callable[..., object]]:
    for name, module in list(sys.modules.items()):
        if module is not None and name.split(".")[0] in ("core", "tenants", "plugins", "admin_ui", "h5"):
            for fn in vars(module).values():
                if inspect.isfunction(fn) and fn.__module__ == name:
                    yield fn


def test_kaquan_listeners_are_on_kaquan_session_only():
    for name, fn in KAQUAN_LISTENERS:
        assert event.contains(KaquanSession, name, fn), (name, fn.__qualname__)
        assert not event.contains(Session, name, fn), (name, fn.__qualname__)


def test_no_project_function_listens_on_the_global_session_class():
    found = [
        f"{fn.__module__}.{fn.__qualname__} ({name})"
        for fn in _project_functions()
        for name in SESSION_EVENTS
        if event.contains(Session, name, fn)
    ]
    assert found == []


def test_a_plain_session_in_the_same_process_is_not_affected():
    engine = create_engine("sqlite://")
    _Base.metadata.create_all(engine)
    other = uuid.uuid4()
    try:
        with Session(engine) as session:  # no tenant in context: kaquan would refuse both statements
            session.add(_Note(tenant_id=other, id=uuid.uuid4(), text="no context"))
            session.commit()
            assert [n.text for n in session.scalars(select(_Note))] == ["no context"]
        with tenant_context(uuid.uuid4()), Session(engine) as session:  # another tenant in context
            session.add(_Note(tenant_id=other, id=uuid.uuid4(), text="other tenant"))
            session.commit()
            assert len(session.scalars(select(_Note)).all()) == 2  # no tenant criteria added
    finally:
        engine.dispose()


async def test_the_database_hands_out_kaquan_sessions(kernel):
    async with kernel.db.sessionmaker() as session:
        assert isinstance(session.sync_session, KaquanSession)
