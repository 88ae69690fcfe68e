"""Words the console shows for keys the system stores: event types, audit actions and objects, role names."""

from __future__ import annotations

import re
from pathlib import Path

from admin_ui.i18n import translations
from admin_ui.labels import AUDIT_ACTION_LABELS, AUDIT_OBJECT_LABELS, EVENT_LABELS, ROLE_LABELS
from core.events.services import EVENT_TYPES
from core.notifications.templates import ROLE_NAMES

ROOT = Path(__file__).resolve().parents[2]
# record(session, "product.created", "product", ...) — also when the arguments start on the next line
RECORD = re.compile(r'\brecord\(\s*[\w.]+,\s*(f?"[^"]+"|[A-Z_]+),\s*"([a-z_]+)"', re.S)
CONSTANT = re.compile(r'^([A-Z_]+) = "([a-z_]+\.[a-z_.]+)"', re.M)


def recorded() -> tuple[set[str], set[str]]:
    actions: set[str] = set()
    objects: set[str] = set()
    for path in [*ROOT.glob("core/**/*.py"), *ROOT.glob("tenants/**/*.py")]:
        source = path.read_text()
        constants = dict(CONSTANT.findall(source))
        for action, obj in RECORD.findall(source):
            objects.add(obj)
            if action == 'f"stock.{kind}"':
                actions |= {"stock.low_stock", "stock.near_expiry"}
            elif action.startswith('"'):
                actions.add(action.strip('"'))
            elif action in constants:
                actions.add(constants[action])
    return actions, objects


def test_every_event_type_has_a_chinese_name() -> None:
    zh = translations("zh-CN")
    missing = sorted(set(EVENT_TYPES) - set(EVENT_LABELS))
    assert not missing, f"event types without a label in admin_ui/labels.py EVENT_LABELS: {missing}"
    for label in EVENT_LABELS.values():
        assert zh.gettext(label) != label, f"no Chinese for {label!r}"


def test_every_audit_action_and_object_the_services_record_has_a_name() -> None:
    actions, objects = recorded()
    assert len(actions) > 60, actions  # the scan found the services' record() calls
    assert not sorted(actions - set(AUDIT_ACTION_LABELS)), "add to AUDIT_ACTION_LABELS"
    assert not sorted(objects - set(AUDIT_OBJECT_LABELS)), "add to AUDIT_OBJECT_LABELS"


def test_grant_status_created_is_not_the_created_column() -> None:
    from admin_ui.grants_pages import GRANT_STATUS_LABELS

    zh = translations("zh-CN")
    assert zh.gettext(GRANT_STATUS_LABELS["created"]) == "已创建"
    assert zh.gettext("Created") == "创建时间"  # the column header keeps its word


def test_invitation_role_words_are_the_consoles() -> None:
    zh = translations("zh-CN")
    for role, label in ROLE_LABELS.items():
        assert ROLE_NAMES["zh-CN"][role] == zh.gettext(label), role
    assert ROLE_NAMES["zh-CN"]["operator"] == "运营"
