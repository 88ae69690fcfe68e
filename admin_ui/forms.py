"""Turn submitted forms into the services' input Structs, and errors into messages shown by the form."""

from __future__ import annotations

import gettext
import re
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request
from litestar.datastructures import FormMultiDict

from admin_ui.labels import FIELD_LABELS
from core.errors import DomainError
from tenants.schemas import Role

T = TypeVar("T")

_FIELD = re.compile(r"`\$\.([A-Za-z_]+)")
_MISSING = re.compile(r"missing required field `([A-Za-z_]+)`")

Short = Annotated[str, msgspec.Meta(max_length=254)]
Secret = Annotated[str, msgspec.Meta(max_length=200)]


class OperatorLoginForm(msgspec.Struct, kw_only=True):
    email: Short
    password: Secret


class TenantLoginForm(msgspec.Struct, kw_only=True):
    tenant: Short
    email: Short
    password: Secret


class InviteAcceptForm(msgspec.Struct, kw_only=True):
    password: Secret
    password_confirm: Secret
    name: Annotated[str, msgspec.Meta(max_length=120)] = ""


class RoleForm(msgspec.Struct, kw_only=True):
    role: Role


class FormProblem(msgspec.Struct):
    """A message shown next to a form, with the field it concerns (if known)."""

    message: str
    field: str | None = None


class FormInvalid(Exception):
    """A submitted value does not fit the form's Struct."""

    def __init__(self, field: str | None, message: str | None = None) -> None:
        super().__init__(field or "form")
        self.field = field
        self.message = message
        """A message id (marked with ``N_``) shown instead of the generic "check the field" one."""


async def read_form(request: Request[Any, Any, Any]) -> FormMultiDict:
    return await request.form()


def values(form: FormMultiDict, *names: str, keep: tuple[str, ...] = ()) -> dict[str, str]:
    """Single-valued fields, stripped (except the ``keep`` ones, such as passwords)."""
    out: dict[str, str] = {}
    for name in names:
        raw = form.get(name)
        text = raw if isinstance(raw, str) else ""
        out[name] = text if name in keep else text.strip()
    return out


def convert(data: dict[str, Any], typ: type[T]) -> T:
    """Validate ``data`` against ``typ`` (its msgspec constraints); :class:`FormInvalid` names the field."""
    try:
        return msgspec.convert(data, typ)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _FIELD.search(text) or _MISSING.search(text)
        raise FormInvalid(match.group(1) if match else None) from None


def problem_of(exc: Exception, t: gettext.GNUTranslations, locale: str) -> FormProblem:
    """The message for a service error (in the user's language) or an invalid field."""
    if isinstance(exc, DomainError):
        return FormProblem(exc.detail(locale), exc.errors[0].field if exc.errors else None)
    if isinstance(exc, FormInvalid) and exc.message:
        return FormProblem(t.gettext(exc.message), exc.field)
    if isinstance(exc, FormInvalid) and exc.field:
        label = t.gettext(FIELD_LABELS.get(exc.field, exc.field))
        return FormProblem(t.gettext("Please check the field “%(field)s”.") % {"field": label}, exc.field)
    return FormProblem(t.gettext("Please check the form and try again."))
