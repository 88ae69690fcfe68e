"""Who is acting: set by auth (user, API client, operator) or by jobs and the CLI (system)."""

from __future__ import annotations

from contextvars import ContextVar, Token

import msgspec


class Actor(msgspec.Struct, frozen=True):
    type: str
    id: str


SYSTEM = Actor(type="system", id="kaquan")
_actor: ContextVar[Actor] = ContextVar("kaquan_actor", default=SYSTEM)


def current_actor() -> Actor:
    return _actor.get()


def set_actor(actor: Actor) -> Token[Actor]:
    return _actor.set(actor)


def reset_actor(token: Token[Actor]) -> None:
    _actor.reset(token)
