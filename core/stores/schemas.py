"""Store requests and responses."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec

StoreCode = Annotated[str, msgspec.Meta(min_length=1, max_length=20, pattern=r"^\s*[A-Za-z0-9_-]+\s*$")]
StoreName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Region = Annotated[str, msgspec.Meta(max_length=40)]
Address = Annotated[str, msgspec.Meta(max_length=200)]
Phone = Annotated[str, msgspec.Meta(max_length=30)]


class StoreIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new store: ``code`` is short (letters, digits, ``-``, ``_``; kept upper case) and unique per tenant,
    as is ``name``."""

    code: StoreCode
    name: StoreName
    province: Region = ""
    city: Region = ""
    district: Region = ""
    address: Address = ""
    phone: Phone = ""


class StoreUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields to change; an absent field stays as it is."""

    code: StoreCode | msgspec.UnsetType = msgspec.UNSET
    name: StoreName | msgspec.UnsetType = msgspec.UNSET
    province: Region | msgspec.UnsetType = msgspec.UNSET
    city: Region | msgspec.UnsetType = msgspec.UNSET
    district: Region | msgspec.UnsetType = msgspec.UNSET
    address: Address | msgspec.UnsetType = msgspec.UNSET
    phone: Phone | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


class StoreOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    code: str
    name: str
    province: str
    city: str
    district: str
    address: str
    phone: str
    active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class StoreList(msgspec.Struct):
    items: list[StoreOut]
