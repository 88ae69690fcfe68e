"""The console catalogs: every console message has a Chinese translation, placeholders match."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from admin_ui.i18n import LOCALES, catalog_path, translations
from admin_ui.labels import PERMISSION_LABELS, ROLE_LABELS, SCOPE_TEXTS
from tenants.models import ROLES
from tenants.scopes import ROLE_PERMISSIONS, SCOPES

UI = Path(__file__).resolve().parents[3] / "admin_ui"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _extracted() -> set[str]:
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true"}}
    ids: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(str(UI), method_map, options):
        ids.add(message[0] if isinstance(message, tuple) else message)
    return ids


def _catalog(locale: str) -> dict[str, str | tuple[str, ...]]:
    with catalog_path(locale).open("rb") as f:
        catalog = read_po(f)
    out: dict[str, str | tuple[str, ...]] = {}
    for m in catalog:
        if m.id:
            out[m.id[0] if isinstance(m.id, tuple) else m.id] = m.string
    return out


def test_every_console_message_is_in_both_catalogs_and_translated():
    extracted = _extracted()
    assert len(extracted) > 100
    zh, en = _catalog("zh-CN"), _catalog("en")
    assert set(zh) == extracted, f"zh_CN catalog out of date: {sorted(set(zh) ^ extracted)[:10]}"
    assert set(en) == extracted, f"en catalog out of date: {sorted(set(en) ^ extracted)[:10]}"
    untranslated = [k for k, v in zh.items() if not (v if isinstance(v, str) else all(v))]
    assert not untranslated, untranslated


@pytest.mark.parametrize("locale", list(LOCALES))
def test_placeholders_survive_translation(locale):
    for msgid, msgstr in _catalog(locale).items():
        for text in [msgstr] if isinstance(msgstr, str) else list(msgstr):
            if text:
                assert set(PLACEHOLDER.findall(text)) <= set(PLACEHOLDER.findall(msgid)), (msgid, text)


def test_labels_cover_roles_permissions_and_scopes():
    """A new role, permission or scope needs its console label (admin_ui/labels.py) and zh_CN entry."""
    assert set(ROLE_LABELS) == set(ROLES)
    missing = {p for perms in ROLE_PERMISSIONS.values() for p in perms} - set(PERMISSION_LABELS)
    assert not missing, f"add these permissions to admin_ui/labels.py PERMISSION_LABELS: {sorted(missing)}"
    missing = set(SCOPES.values()) - set(SCOPE_TEXTS)
    assert not missing, f"add these scope descriptions to admin_ui/labels.py SCOPE_TEXTS: {sorted(missing)}"
    zh = translations("zh-CN")
    for text in SCOPES.values():
        assert zh.gettext(text) != text


def test_compiled_catalogs_translate():
    assert translations("zh-CN").gettext("Log in") == "登录"
    assert translations("en").gettext("Log in") == "Log in"
    assert translations("zh-CN").ngettext("%(num)s tenant", "%(num)s tenants", 3) == "共 %(num)s 个租户"
